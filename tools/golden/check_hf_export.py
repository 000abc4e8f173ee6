"""Checks that a `train-text` export loads in transformers and agrees with Rust.

Run:  /root/.cache/ssl-rs/golden-venv/bin/python tools/golden/check_hf_export.py RUN_DIR
(RUN_DIR is a train-text run folder; needs torch 2.11.0, transformers 5.24.0.)

It loads RUN_DIR/hf with `AutoModelForMaskedLM.from_pretrained` (BertForMaskedLM,
or MegatronBertForMaskedLM for --pre-ln runs) and asserts that no weight is
missing or unexpected, loads the tokenizer with `PreTrainedTokenizerFast`,
and prints a fill-mask example. It then compares transformers' logits with
Rust's on the sequences `train-text` saved in RUN_DIR/check_logits.safetensors
(`input_ids` and `logits`; or the file given by --rust-logits): max |diff|
must stay below 1e-4.
"""

import argparse
import json
import pathlib

import torch
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM, PreTrainedTokenizerFast


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=pathlib.Path)
    ap.add_argument("--rust-logits", type=pathlib.Path)
    a = ap.parse_args()
    hf = a.run / "hf"
    model, info = AutoModelForMaskedLM.from_pretrained(hf, output_loading_info=True)
    model.eval()
    missing = [k for k in info["missing_keys"] if "decoder" not in k]
    assert not missing, f"missing weights: {missing}"
    assert not info["unexpected_keys"], f"unexpected weights: {info['unexpected_keys']}"
    print(f"{type(model).__name__} loaded from {hf}: {sum(p.numel() for p in model.parameters())} parameters; "
          f"tied decoder: {model.cls.predictions.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr()}")
    tok = PreTrainedTokenizerFast(tokenizer_file=str(hf / "tokenizer.json"), mask_token="[MASK]",
                                  pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", unk_token="[UNK]")
    text = "the computer crashed and i lost all my [MASK] ."
    enc = tok(text, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    pos = (enc["input_ids"][0] == tok.mask_token_id).nonzero()[0].item()
    top = logits[0, pos].topk(5).indices.tolist()
    print(f"fill-mask: {text!r} -> {tok.convert_ids_to_tokens(top)}")
    rust = a.rust_logits or a.run / "check_logits.safetensors"
    if rust.exists():
        ref = load_file(rust)
        with torch.no_grad():
            out = model(input_ids=ref["input_ids"], attention_mask=(ref["input_ids"] != tok.pad_token_id).long()).logits
        d = (out - ref["logits"]).abs().max().item()
        print(f"max |logits(transformers) - logits(Rust)| = {d:.2e}")
        assert d < 1e-4, d


if __name__ == "__main__":
    main()
