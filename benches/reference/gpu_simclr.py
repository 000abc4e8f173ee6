"""GPU reference for issue 6's device comparison (run by
`tools/device/bench_gpu.sh`): SimCLR with a CIFAR-stem ResNet-18 in PyTorch
eager on CUDA, bf16 autocast, SGD, batch --batch-size, fed the way PyTorch
scripts usually are: torchvision.transforms.v2 in a DataLoader with one
worker per core, pinned memory. Prints images/s over the timed steps and
the fraction of step time spent waiting for the next batch (time blocked
in the loader's `next`, the GPU synchronised each step so it is not hidden
by asynchronous kernels).

  python gpu_simclr.py --data DIR/cifar-10-batches-bin [--batch-size 512] [--steps 60]
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
    args = ap.parse_args()
    dev = torch.device("cuda")
    backbone = torchvision.models.resnet18()
    backbone.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    backbone.maxpool = torch.nn.Identity()
    backbone.fc = torch.nn.Identity()
    head = SimCLRProjectionHead(512, 2048, 128)
    model = torch.nn.Sequential(backbone, head).to(dev)
    loss_fn = NTXentLoss(temperature=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-6)
    loader = DataLoader(TwoViews(cifar_images(args.data)), batch_size=args.batch_size, shuffle=True,
                        drop_last=True, num_workers=len(os.sched_getaffinity(0)), pin_memory=True,
                        persistent_workers=True)
    it = iter(loader)
    wait = total = 0.0
    images = 0
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        try:
            x0, x1 = next(it)
        except StopIteration:
            it = iter(loader)
            x0, x1 = next(it)
        t1 = time.perf_counter()
        x = torch.cat([x0, x1]).to(dev, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            z = model(x)
        n = x0.shape[0]
        loss = loss_fn(z[:n].float(), z[n:].float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        if step >= args.warmup:
            wait += t1 - t0
            total += t2 - t0
            images += n
    print(f"RESULT cuda/simclr_train/resnet18_cifar/b{args.batch_size} images_per_s {images / total:.1f} "
          f"data_wait_fraction {wait / total:.3f}")


if __name__ == "__main__":
    main()
