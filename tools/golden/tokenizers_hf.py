"""Golden fixtures for loading HF `tokenizer.json` files in Rust.

Run:  /root/.cache/ssl-rs/golden-venv/bin/python tools/golden/tokenizers_hf.py
Needs, in that venv: tokenizers 0.23.3 (comes with transformers 5.24.0).

Trains two tokenizers with HF's Python `tokenizers` on a small generated
text, then writes into crates/ssl-text/tests/fixtures/:
  hf_wordpiece.json   a BERT-style WordPiece tokenizer (BertNormalizer
                      lower-casing, BertPreTokenizer, [CLS] ... [SEP]
                      post-processor), as `BertWordPieceTokenizer` makes it;
  hf_bpe.json         a RoBERTa-style byte-level BPE tokenizer with
                      <s> </s> <pad> <unk> <mask> (its pre-tokenizer is a
                      regex, which exercises the crate's fancy-regex build);
  hf_tokenizers_expected.json   for each file, texts and the ids (with
                      special tokens) and word ids that Python produces.
The Rust test loads both files with ssl_text::tokenizer and must give the
same ids.
"""

import json
import pathlib
import random

from tokenizers import ByteLevelBPETokenizer, BertWordPieceTokenizer

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/ssl-text/tests/fixtures"

WORDS = (
    "the a self supervised learning encoder masked token prediction vision text audio "
    "model training batch epoch tensor gradient loss accuracy language corpus word piece "
    "Rust libtorch BERT transformer attention layer norm embedding vocabulary"
).split()


def corpus(n=400, seed=0):
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        k = rng.randint(4, 14)
        words = [rng.choice(WORDS) for _ in range(k)]
        if rng.random() < 0.3:
            words[rng.randrange(k)] += rng.choice([",", ".", "!", "'s"])
        if rng.random() < 0.2:
            words[0] = words[0].capitalize()
        lines.append(" ".join(words))
    return lines


TEXTS = [
    "Self-supervised learning of a BERT encoder, in Rust!",
    "Masked token prediction: the MODEL's loss.",
    "unseenword zyx attention",
    "Café naïve über",  # accents: stripped by the BERT normaliser
]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    lines = corpus()
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(lines, vocab_size=120, min_frequency=2,
                           special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    wp.save(str(OUT / "hf_wordpiece.json"))
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(lines, vocab_size=300, min_frequency=2,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save(str(OUT / "hf_bpe.json"))
    expected = {}
    for name, tok in [("hf_wordpiece.json", wp), ("hf_bpe.json", bpe)]:
        rows = []
        for t in TEXTS:
            e = tok.encode(t)
            rows.append({"text": t, "ids": e.ids, "tokens": e.tokens})
        expected[name] = rows
    (OUT / "hf_tokenizers_expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    for name, rows in expected.items():
        print(name, rows[0]["tokens"])


if __name__ == "__main__":
    main()
