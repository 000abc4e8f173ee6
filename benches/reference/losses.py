"""Reference for `benches/benches/losses.rs`: lightly's NTXentLoss
(temperature 0.5) forward plus backward on two [512, 128] batches."""

import torch
from lightly.loss import NTXentLoss

from common import median_time, report, setup_torch


def main():
    setup_torch()
    z0 = torch.randn(512, 128, requires_grad=True)
    z1 = torch.randn(512, 128, requires_grad=True)
    loss_fn = NTXentLoss(temperature=0.5)

    def step():
        loss = loss_fn(z0, z1)
        loss.backward()
        return loss.item()

    report("cpu/ntxent/512x128", median_time(step, repeats=50))


if __name__ == "__main__":
    main()
