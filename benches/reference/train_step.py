"""Reference for `benches/benches/train_step.rs`, in PyTorch eager:

- SimCLR: torchvision's ResNet-18 with the CIFAR stem (3x3 conv, no
  max-pool), lightly's SimCLRProjectionHead (512-2048-128) and NTXentLoss
  (temperature 0.5), SGD; 128 images, two views of 32 px, as one batch.
- BERT-small (4 layers, width 512, 8 heads, 30,522 tokens): transformers'
  BertForMaskedLM with 15% of positions labelled, AdamW; batch 8 x 128.

A step is forward, loss, backward and optimizer step."""

import torch
import torchvision
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from transformers import BertConfig, BertForMaskedLM

from common import median_time, report, setup_torch, wanted


def simclr_step():
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

    def step():
        opt.zero_grad()
        z = head(backbone(torch.cat([x0, x1])))
        loss = loss_fn(z[:128], z[128:])
        loss.backward()
        opt.step()
        return loss.item()

    report("cpu/simclr_step/resnet18_cifar/b128", median_time(step, warmup=2, repeats=10, min_seconds=20))


def bert_step():
    cfg = BertConfig(vocab_size=30522, hidden_size=512, num_hidden_layers=4, num_attention_heads=8,
                     intermediate_size=2048, max_position_embeddings=512)
    model = BertForMaskedLM(cfg)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    ids = torch.randint(1000, 30000, (8, 128))
    labels = torch.where(torch.rand(8, 128) < 0.15, ids, torch.full_like(ids, -100))
    attn = torch.ones_like(ids)

    def step():
        opt.zero_grad()
        loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
        loss.backward()
        opt.step()
        return loss.item()

    report("cpu/bert_small_mlm_step/b8x128", median_time(step, warmup=2, repeats=10, min_seconds=10))


def main():
    setup_torch()
    if wanted("cpu/simclr_step/resnet18_cifar/b128"):
        simclr_step()
    if wanted("cpu/bert_small_mlm_step/b8x128"):
        bert_step()


if __name__ == "__main__":
    main()
