"""Reference for `benches/benches/augment.rs`: SimCLR's two views with
torchvision.transforms.v2 (the same parameters as ssl-vision's
`ViewAugment::simclr`: RandomResizedCrop scale 0.08-1, flip, colour jitter
0.8/0.8/0.8/0.2 with p 0.8, grayscale p 0.2, blur p 0.5 above 32 px,
ImageNet normalisation; bilinear resizing without antialiasing, as ours) on
uint8 images, batched by a DataLoader with one
worker per core, as a PyTorch training script feeds its model. The time is
the median time per batch over an epoch's batches after warm-up.

The JPEG-folder case reads the folder the Rust bench writes
(`ssl_benches::jpeg_folder`: 2,000 files of 500x375 at quality 90 under
target/bench-data/jpeg-folder) with torchvision's `ImageFolder` (PIL's
decoder, RGB) and makes the same two 224 px views of each file, after
`v2.ToImage`, in a DataLoader with one worker per core."""

import os
import statistics
import sys
import time

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from common import report, setup_torch, threads, wanted


def simclr(size):
    t = [
        v2.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=False),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
        v2.RandomGrayscale(p=0.2),
    ]
    if size > 32:
        k = (size // 10) | 1
        t.append(v2.RandomApply([v2.GaussianBlur(k, sigma=(0.1, 2.0))], p=0.5))
    t += [v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    return v2.Compose(t)


def median_batch_time(loader):
    """The median time per batch over the second epoch (the first starts
    the workers)."""
    times = []
    for epoch in range(2):
        it = iter(loader)
        t = time.perf_counter()
        for _ in it:
            now = time.perf_counter()
            if epoch == 1:
                times.append(now - t)
            t = now
    return statistics.median(times)


class TwoViews(Dataset):
    def __init__(self, images, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i]
        return self.transform(x), self.transform(x)


def bench(side, crop, batch, batches=24):
    if not wanted(f"cpu/simclr_views/{crop}px/b{batch}"):
        return
    images = torch.randint(0, 256, (batch * batches, 3, side, side), dtype=torch.uint8)
    loader = DataLoader(TwoViews(images, simclr(crop)), batch_size=batch, shuffle=True,
                        num_workers=threads(), persistent_workers=True, prefetch_factor=2)
    report(f"cpu/simclr_views/{crop}px/b{batch}", median_batch_time(loader))


class PairOfViews:
    """Two views of one decoded image."""

    def __init__(self, transform):
        self.transform = v2.Compose([v2.ToImage(), transform])

    def __call__(self, img):
        return self.transform(img), self.transform(img)


def bench_jpeg_folder(crop=224, batch=64):
    bench_id = f"cpu/jpeg_folder_views/{crop}px/b{batch}"
    if not wanted(bench_id):
        return
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../target/bench-data/jpeg-folder")
    if not os.path.isfile(os.path.join(root, ".complete")):
        sys.exit(f"{root} is missing: the Rust bench writes it "
                 f"(`BENCH_ONLY={bench_id} cargo bench -p ssl-benches --bench augment`, or cargo xtask bench-compare)")
    data = ImageFolder(os.path.join(root, "train"), transform=PairOfViews(simclr(crop)))
    loader = DataLoader(data, batch_size=batch, shuffle=True, num_workers=threads(),
                        persistent_workers=True, prefetch_factor=2, drop_last=True)
    report(bench_id, median_batch_time(loader))


def main():
    setup_torch()
    # The workers do the work; the main process only collates.
    torch.set_num_threads(1)
    bench(32, 32, 256)
    bench(256, 224, 64)
    bench_jpeg_folder()


if __name__ == "__main__":
    main()
