//! Corpus → fixed-length training sequences. Documents are streamed from
//! the corpus a chunk at a time, tokenised in parallel, joined with `[SEP]`
//! between documents, cut into pieces of `seq_len - 2` tokens and wrapped
//! as `[CLS] piece [SEP]` (the last piece padded), as BERT packs its
//! pre-training text. Only token ids (4 bytes each) and word starts are
//! kept, never the raw text. Every `holdout_every`-th document goes to a
//! held-out stream instead, for measuring masked-token accuracy on text the
//! model never trained on.

use crate::corpus::Corpus;
use crate::error::{Error, Result};
use crate::tokenizer::{SpecialIds, TextTokenizer};

/// How to pack.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PackConfig {
    /// Tokens per sequence, `[CLS]` and `[SEP]` included (128 by default).
    pub seq_len: usize,
    /// Every n-th document is held out (0: none).
    pub holdout_every: usize,
    /// Documents tokenised per parallel batch.
    pub chunk_docs: usize,
    /// Stop after this many documents (0: all).
    pub max_docs: usize,
}

impl Default for PackConfig {
    fn default() -> Self {
        Self { seq_len: 128, holdout_every: 20, chunk_docs: 2048, max_docs: 0 }
    }
}

/// Packed sequences, `seq_len` tokens each, stored flat.
#[derive(Clone, Debug, Default)]
pub struct Packed {
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Token ids, `len() * seq_len`.
    pub ids: Vec<u32>,
    /// Whether each token starts a word.
    pub word_start: Vec<bool>,
    /// Non-padding tokens.
    pub tokens: usize,
}

impl Packed {
    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.ids.len().checked_div(self.seq_len).unwrap_or(0)
    }
    /// Whether there is no sequence.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Ids and word starts of sequence `i`.
    pub fn sequence(&self, i: usize) -> (&[u32], &[bool]) {
        let r = i * self.seq_len..(i + 1) * self.seq_len;
        (&self.ids[r.clone()], &self.word_start[r])
    }
}

/// The training and held-out sequences of a corpus.
#[derive(Clone, Debug)]
pub struct PackedCorpus {
    /// Training sequences.
    pub train: Packed,
    /// Held-out sequences (from different documents).
    pub heldout: Packed,
    /// Documents read.
    pub documents: usize,
}

/// Accumulates one stream of documents into sequences.
struct Packer {
    out: Packed,
    buf: Vec<u32>,
    starts: Vec<bool>,
    special: SpecialIds,
}

impl Packer {
    fn new(seq_len: usize, special: SpecialIds) -> Self {
        Self { out: Packed { seq_len, ..Packed::default() }, buf: Vec::new(), starts: Vec::new(), special }
    }

    fn body(&self) -> usize {
        self.out.seq_len - 2
    }

    fn push(&mut self, ids: &[u32], starts: &[bool]) {
        if !self.buf.is_empty() {
            self.buf.push(self.special.sep as u32);
            self.starts.push(true);
        }
        self.buf.extend_from_slice(ids);
        self.starts.extend_from_slice(starts);
        while self.buf.len() >= self.body() {
            let rest_ids = self.buf.split_off(self.body());
            let rest_starts = self.starts.split_off(self.body());
            self.emit();
            // A piece never starts with the separator it was cut at.
            let skip = usize::from(rest_ids.first() == Some(&(self.special.sep as u32)));
            self.buf = rest_ids[skip..].to_vec();
            self.starts = rest_starts[skip..].to_vec();
        }
    }

    fn emit(&mut self) {
        let n = self.buf.len();
        let (cls, sep, pad) = (self.special.cls as u32, self.special.sep as u32, self.special.pad as u32);
        self.out.ids.push(cls);
        self.out.ids.extend_from_slice(&self.buf);
        self.out.ids.push(sep);
        self.out.word_start.push(true);
        self.out.word_start.extend_from_slice(&self.starts);
        self.out.word_start.push(true);
        let padding = self.out.seq_len - n - 2;
        self.out.ids.extend(std::iter::repeat_n(pad, padding));
        self.out.word_start.extend(std::iter::repeat_n(true, padding));
        self.out.tokens += n + 2;
        self.buf.clear();
        self.starts.clear();
    }

    fn finish(mut self) -> Packed {
        if !self.buf.is_empty() {
            self.emit();
        }
        self.out
    }
}

/// Packs a corpus; see the module docs. Fails on the corpus's first bad
/// line, on an empty corpus, and when `seq_len < 8`.
pub fn pack_corpus(corpus: &Corpus, tok: &TextTokenizer, cfg: &PackConfig) -> Result<PackedCorpus> {
    if cfg.seq_len < 8 {
        return Err(Error::Config(format!("sequence length {} is too short (at least 8)", cfg.seq_len)));
    }
    let mut train = Packer::new(cfg.seq_len, tok.special);
    let mut heldout = Packer::new(cfg.seq_len, tok.special);
    let mut docs = corpus.documents();
    let mut n = 0usize;
    loop {
        let mut chunk = Vec::with_capacity(cfg.chunk_docs);
        for d in docs.by_ref() {
            chunk.push(d?.text);
            if chunk.len() == cfg.chunk_docs.max(1) || (cfg.max_docs > 0 && n + chunk.len() >= cfg.max_docs) {
                break;
            }
        }
        if chunk.is_empty() {
            break;
        }
        let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
        for e in tok.encode_batch(&texts)? {
            let held = cfg.holdout_every > 0 && n % cfg.holdout_every == cfg.holdout_every - 1;
            if !e.ids.is_empty() {
                (if held { &mut heldout } else { &mut train }).push(&e.ids, &e.word_start);
            }
            n += 1;
        }
        if cfg.max_docs > 0 && n >= cfg.max_docs {
            break;
        }
    }
    let (train, heldout) = (train.finish(), heldout.finish());
    if train.is_empty() {
        return Err(Error::file(corpus.root(), "the corpus has no tokens to train on"));
    }
    Ok(PackedCorpus { train, heldout, documents: n })
}
