"""Reference for `benches/benches/text.rs`: transformers'
DataCollatorForLanguageModeling (15%, 80/10/10) on 32 sequences of 128
token ids ([CLS], random ids, [SEP]), returning input_ids, labels and the
attention mask as tensors; the tokenizer is a WordPiece vocabulary of
30,522 entries with BERT's special tokens."""

import random

from tokenizers import Tokenizer
from tokenizers.models import WordPiece
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast

from common import median_time, report, setup_torch


def tokenizer():
    vocab = {f"[unused{i}]": i for i in range(30522)}
    for i, t in [(0, "[PAD]"), (100, "[UNK]"), (101, "[CLS]"), (102, "[SEP]"), (103, "[MASK]")]:
        del vocab[f"[unused{i}]"]
        vocab[t] = i
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def main():
    setup_torch()
    rng = random.Random(0)
    batch, seq = 32, 128
    examples = [
        [{"input_ids": [101] + [rng.randrange(1000, 30000) for _ in range(seq - 2)] + [102]} for _ in range(batch)]
        for _ in range(16)
    ]
    collator = DataCollatorForLanguageModeling(tokenizer(), mlm_probability=0.15, return_tensors="pt")
    state = {"i": 0}

    def collate():
        state["i"] += 1
        return collator(examples[state["i"] % 16])

    report(f"cpu/mlm_collate/b{batch}x{seq}", median_time(collate, repeats=100))


if __name__ == "__main__":
    main()
