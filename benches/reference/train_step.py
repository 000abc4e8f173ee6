"""Reference for `benches/benches/train_step.rs`, in PyTorch eager:

- SimCLR: torchvision's ResNet-18 with the CIFAR stem (3x3 conv, no
  max-pool), lightly's SimCLRProjectionHead (512-2048-128) and NTXentLoss
  (temperature 0.5), SGD; 128 images, two views of 32 px, as one batch.
- BERT-small (4 layers, width 512, 8 heads, 30,522 tokens): transformers'
  BertForMaskedLM with 15% of positions labelled, AdamW; batch 8 x 128.

A step is forward, loss, backward and optimizer step. Each case also runs
compiled (`ID+compile`): the same step with the model wrapped in
`torch.compile` (default mode, the inductor backend; forward and backward
compiled, the optimizer step eager), the strongest PyTorch peer on the CPU.
Its compilation falls in the warm-up."""

import torch
import torchvision
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from transformers import BertConfig, BertForMaskedLM

from common import median_time, report, setup_torch, wanted


COMPILED = "+compile"


def simclr_step(compiled=False):
    backbone = torchvision.models.resnet18()
    backbone.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    backbone.maxpool = torch.nn.Identity()
    backbone.fc = torch.nn.Identity()
    head = SimCLRProjectionHead(512, 2048, 128)
    loss_fn = NTXentLoss(temperature=0.5)
    params = list(backbone.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-6)
    backbone.train()
    head.train()
    x0, x1 = torch.randn(128, 3, 32, 32), torch.randn(128, 3, 32, 32)
    net = torch.nn.Sequential(backbone, head)
    if compiled:
        net = torch.compile(net)

    def step():
        opt.zero_grad()
        z = net(torch.cat([x0, x1]))
        loss = loss_fn(z[:128], z[128:])
        loss.backward()
        opt.step()
        return loss.item()

    report("cpu/simclr_step/resnet18_cifar/b128" + (COMPILED if compiled else ""),
           median_time(step, warmup=3 if compiled else 2, repeats=10, min_seconds=20))


def bert_step(compiled=False):
    cfg = BertConfig(vocab_size=30522, hidden_size=512, num_hidden_layers=4, num_attention_heads=8,
                     intermediate_size=2048, max_position_embeddings=512)
    model = BertForMaskedLM(cfg)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    ids = torch.randint(1000, 30000, (8, 128))
    labels = torch.where(torch.rand(8, 128) < 0.15, ids, torch.full_like(ids, -100))
    attn = torch.ones_like(ids)
    net = torch.compile(model) if compiled else model

    def step():
        opt.zero_grad()
        loss = net(input_ids=ids, attention_mask=attn, labels=labels).loss
        loss.backward()
        opt.step()
        return loss.item()

    report("cpu/bert_small_mlm_step/b8x128" + (COMPILED if compiled else ""),
           median_time(step, warmup=3 if compiled else 2, repeats=10, min_seconds=10))


def main():
    setup_torch()
    for compiled in (False, True):
        suffix = COMPILED if compiled else ""
        if wanted("cpu/simclr_step/resnet18_cifar/b128" + suffix):
            simclr_step(compiled)
        if wanted("cpu/bert_small_mlm_step/b8x128" + suffix):
            bert_step(compiled)


if __name__ == "__main__":
    main()
