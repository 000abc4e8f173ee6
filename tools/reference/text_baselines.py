"""Bag-of-words baselines for the text downstream task, and how much the
unlabelled corpus can add to them: a ceiling check for what masked-token
pre-training on the corpus could contribute to `train-text`'s comparison.

Run:  /root/.cache/ssl-rs/golden-venv/bin/python tools/reference/text_baselines.py \
          [--data datasets/fortunes] [--seeds 5]
(scikit-learn 1.9; a few minutes on 2 cores.)

It prints test top-1 of logistic regression on
- TF-IDF of the labelled texts (word unigrams, sublinear tf),
- LSA: 128 dimensions of a TF-IDF SVD fitted on the unlabelled corpus
  (`corpus.txt`, which holds no test text), a classic corpus-only
  representation,
- both concatenated,
with all the training labels and with stratified fractions of them (the
fraction's subsets are seeded; the mean over --seeds is printed).

If corpus statistics carried label information that the labelled texts do
not, the LSA features would lift the TF-IDF classifier, most of all with few
labels. On the bundled fortunes they do not (docs/results.md).
"""

import argparse
import json
import pathlib

import numpy as np
from scipy.sparse import csr_matrix, hstack
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score


def load(path):
    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    return [r["text"] for r in rows], np.array([r["label"] for r in rows])


def stratified(y, fraction, seed):
    rng = np.random.RandomState(seed)
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        keep.extend(idx[: max(1, round(len(idx) * fraction))])
    return np.sort(np.array(keep))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="datasets/fortunes")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--C", type=float, default=10.0)
    a = ap.parse_args()
    d = pathlib.Path(a.data)
    xtr, ytr = load(d / "train.jsonl")
    xte, yte = load(d / "test.jsonl")
    corpus = [line.strip() for line in open(d / "corpus.txt", encoding="utf-8") if line.strip()]

    tfidf = TfidfVectorizer(sublinear_tf=True).fit(corpus + xtr)
    lsa_tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2).fit(corpus)
    svd = TruncatedSVD(128, random_state=0).fit(lsa_tfidf.transform(corpus))

    def features(texts):
        t = tfidf.transform(texts)
        lsa = svd.transform(lsa_tfidf.transform(texts))
        lsa /= np.linalg.norm(lsa, axis=1, keepdims=True) + 1e-9
        return {"tfidf": t, "lsa": lsa, "tfidf+lsa": hstack([t, csr_matrix(lsa)]).tocsr()}

    ftr, fte = features(xtr), features(xte)
    print(f"{len(xtr)} training and {len(xte)} test texts, {len(corpus)} corpus documents")
    print(f"{'labels':>10} " + " ".join(f"{k:>10}" for k in ftr))
    for fraction in [1.0, 0.25, 0.1]:
        seeds = range(1 if fraction == 1.0 else a.seeds)
        acc = {k: [] for k in ftr}
        for s in seeds:
            idx = stratified(ytr, fraction, s) if fraction < 1.0 else np.arange(len(ytr))
            for k in ftr:
                clf = LogisticRegression(C=a.C, max_iter=5000).fit(ftr[k][idx], ytr[idx])
                acc[k].append(accuracy_score(yte, clf.predict(fte[k])))
        n = len(idx)
        print(f"{n:>10} " + " ".join(f"{100 * np.mean(v):>9.1f}%" for v in acc.values()))


if __name__ == "__main__":
    main()
