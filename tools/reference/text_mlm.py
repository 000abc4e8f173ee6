"""The PyTorch reference for `train-text`: the same masked-token pre-training
with HF transformers, to compare learning (held-out masked-token accuracy per
epoch) and speed (tokens/s) with the Rust run on the same machine.

Run:  /root/.cache/ssl-rs/golden-venv/bin/python tools/reference/text_mlm.py \
          --tokenizer RUN/tokenizer.json --corpus RUN/data/fortunes/corpus.txt [--epochs 2]
(torch 2.11.0, transformers 5.24.0; the tokenizer of a train-text run, so
both see the same ids.)

Same recipe as `train-text`'s defaults unless told otherwise: documents
joined with [SEP], cut into [CLS] piece [SEP] sequences of --seq-len, every
20th document held out; BertForMaskedLM with the --model shape, dropout 0.1;
transformers' DataCollatorForLanguageModeling (15%, 80/10/10, redrawn each
batch); AdamW (weight decay 0.01 except biases and LayerNorm), one warmup
epoch then cosine to 0, gradient clipping at 1; held-out accuracy with fixed
masks after every epoch.
"""

import argparse
import math
import time

import torch
from tokenizers import Tokenizer
from transformers import BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling, PreTrainedTokenizerFast

SHAPES = {"tiny": (2, 128, 2), "mini": (4, 256, 4), "small": (4, 512, 8), "base": (12, 768, 12)}


def pack(tok, lines, seq_len, holdout_every=20):
    cls, sep, pad = (tok.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
    streams = {False: [], True: []}
    encs = tok.encode_batch(lines, add_special_tokens=False)
    for i, e in enumerate(encs):
        if not e.ids:
            continue
        s = streams[i % holdout_every == holdout_every - 1]
        if s:
            s.append(sep)
        s.extend(e.ids)
    out = {}
    body = seq_len - 2
    for held, ids in streams.items():
        seqs = []
        i = 0
        while i < len(ids):
            piece = ids[i:i + body]
            i += body
            if i < len(ids) and ids[i] == sep:
                i += 1
            seqs.append([cls] + piece + [sep] + [pad] * (body - len(piece)))
        out[held] = torch.tensor(seqs, dtype=torch.long)
    return out[False], out[True]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    tok = Tokenizer.from_file(a.tokenizer)
    lines = [l.strip() for l in open(a.corpus, encoding="utf-8") if l.strip()]
    t0 = time.time()
    train, held = pack(tok, lines, a.seq_len)
    print(f"{len(lines)} documents, {len(train)} training / {len(held)} held-out sequences, tokenized in {time.time() - t0:.1f} s")
    layers, hidden, heads = SHAPES[a.model]
    cfg = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=heads, intermediate_size=4 * hidden, max_position_embeddings=a.seq_len)
    model = BertForMaskedLM(cfg)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, mask_token="[MASK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", unk_token="[UNK]")
    collate = DataCollatorForLanguageModeling(fast, mlm_probability=0.15)
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=a.lr)
    per_epoch = len(train) // a.batch_size
    total, warm = per_epoch * a.epochs, per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total - warm)))))
    g = torch.Generator().manual_seed(12345)
    torch.manual_seed(12345)
    held_batch = collate([{"input_ids": x} for x in held])
    for epoch in range(a.epochs):
        model.train()
        order = torch.randperm(len(train))
        tokens, t0 = 0, time.time()
        for i in range(per_epoch):
            x = train[order[i * a.batch_size:(i + 1) * a.batch_size]]
            b = collate([{"input_ids": r} for r in x])
            mask = (x != fast.pad_token_id).long()
            out = model(input_ids=b["input_ids"], attention_mask=mask, labels=b["labels"])
            opt.zero_grad()
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            tokens += int(mask.sum())
        rate = tokens / (time.time() - t0)
        model.eval()
        with torch.no_grad():
            correct = n = 0
            for s in range(0, len(held), 64):
                ids, labels = held_batch["input_ids"][s:s + 64], held_batch["labels"][s:s + 64]
                logits = model(input_ids=ids, attention_mask=(held[s:s + 64] != fast.pad_token_id).long()).logits
                sel = labels != -100
                correct += int((logits.argmax(-1)[sel] == labels[sel]).sum())
                n += int(sel.sum())
        print(f"epoch {epoch + 1}/{a.epochs}  loss {out.loss.item():.4f}  {rate:.0f} tokens/s  heldout_top1 {100 * correct / n:.1f}%")


if __name__ == "__main__":
    main()
