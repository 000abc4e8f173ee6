"""GPU reference for issue 6's device comparison (run by
`tools/device/bench_gpu.sh`): SimCLR with a CIFAR-stem ResNet-18 in PyTorch
eager on CUDA, bf16 autocast, SGD, batch --batch-size, fed the way PyTorch
scripts usually are: torchvision.transforms.v2 in a DataLoader with one
worker per core, pinned memory. Prints images/s over the timed steps and
the fraction of wall time spent waiting for the next batch (time blocked in
the loader's `next`), measured as ssl-rs's trainer measures it: no
synchronisation per step (kernels queue asynchronously), one at the start
and the end of the timed steps. `--channels-last` converts the model and
the inputs to channels-last, as ssl-rs does on CUDA by default.

  python gpu_simclr.py --data DIR [--batch-size 512] [--steps 60] [--channels-last]
"""

import argparse
import os
import time

import numpy as np
import torch
import torchvision
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2


def cifar_images(folder):
    parts = [np.fromfile(os.path.join(folder, f"data_batch_{i}.bin"), dtype=np.uint8).reshape(-1, 3073)
             for i in range(1, 6)]
    return torch.from_numpy(np.concatenate(parts)[:, 1:].reshape(-1, 3, 32, 32).copy())


class TwoViews(Dataset):
    def __init__(self, images):
        self.images = images
        self.t = v2.Compose([
            v2.RandomResizedCrop(32, scale=(0.08, 1.0), antialias=False),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.t(self.images[i]), self.t(self.images[i])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke test")
    ap.add_argument("--channels-last", action="store_true")
    args = ap.parse_args()
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    dev = torch.device(args.device)
    backbone = torchvision.models.resnet18()
    backbone.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    backbone.maxpool = torch.nn.Identity()
    backbone.fc = torch.nn.Identity()
    head = SimCLRProjectionHead(512, 2048, 128)
    model = torch.nn.Sequential(backbone, head).to(dev, memory_format=fmt)
    loss_fn = NTXentLoss(temperature=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-6)
    loader = DataLoader(TwoViews(cifar_images(args.data)), batch_size=args.batch_size, shuffle=True,
                        drop_last=True, num_workers=len(os.sched_getaffinity(0)), pin_memory=True,
                        persistent_workers=True)
    it = iter(loader)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    wait = 0.0
    images = 0
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            sync()
            started = time.perf_counter()
        t0 = time.perf_counter()
        try:
            x0, x1 = next(it)
        except StopIteration:
            it = iter(loader)
            x0, x1 = next(it)
        if step >= args.warmup:
            wait += time.perf_counter() - t0
            images += x0.shape[0]
        # Each view straight from the loader's pinned memory (a cat on the
        # CPU would copy into pageable memory and make the copy blocking).
        x = torch.cat([x0.to(dev, non_blocking=True), x1.to(dev, non_blocking=True)])
        x = x.contiguous(memory_format=fmt)
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            z = model(x)
        n = x0.shape[0]
        loss = loss_fn(z[:n].float(), z[n:].float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync()
    total = time.perf_counter() - started
    layout = "channels_last" if args.channels_last else "nchw"
    print(f"RESULT {dev.type}/simclr_train/resnet18_cifar/b{args.batch_size}/{layout} images_per_s {images / total:.1f} "
          f"data_wait_fraction {wait / total:.3f}")


if __name__ == "__main__":
    main()
