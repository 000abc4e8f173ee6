//! Tokenisation with HF's `tokenizers` crate: train a BERT-style WordPiece
//! tokenizer on a corpus (lower-casing BERT normaliser, whitespace and
//! punctuation pre-tokenizer, `[PAD] [UNK] [CLS] [SEP] [MASK]`, BERT's
//! `[CLS] … [SEP]` post-processor), save it as `tokenizer.json`, or load any
//! HF `tokenizer.json`. Batches are encoded in parallel (the crate's rayon
//! pool).

use crate::corpus::Corpus;
use crate::error::{Error, Result};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainer};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{
    AddedToken, NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString,
    PreTokenizer, Tokenizer,
};

/// BERT's special tokens, in the order they get ids 0–4 when training.
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// The characters that occur inside a word (not first) in the corpus, as
/// `tok`'s normaliser and pre-tokenizer cut it into words: those WordPiece
/// training gives a `##` piece. Sorted.
fn continuation_pieces(corpus: &Corpus, tok: &Tokenizer) -> Result<BTreeSet<char>> {
    let mut chars = BTreeSet::new();
    let fail = |e: tokenizers::Error| Error::file(corpus.root(), format!("training the tokenizer: {e}"));
    for doc in corpus.documents() {
        let mut text = NormalizedString::from(doc?.text.as_str());
        if let Some(n) = tok.get_normalizer() {
            n.normalize(&mut text).map_err(fail)?;
        }
        let mut words = PreTokenizedString::from(text);
        if let Some(p) = tok.get_pre_tokenizer() {
            p.pre_tokenize(&mut words).map_err(fail)?;
        }
        for (word, _, _) in words.get_splits(OffsetReferential::Original, OffsetType::None) {
            chars.extend(word.chars().skip(1));
        }
    }
    Ok(chars)
}

/// Ids of the special tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SpecialIds {
    /// Padding.
    pub pad: i64,
    /// Unknown token.
    pub unk: i64,
    /// Start of sequence (`[CLS]`, or `<s>`).
    pub cls: i64,
    /// Separator / end of sequence (`[SEP]`, or `</s>`).
    pub sep: i64,
    /// Mask (`[MASK]`, or `<mask>`).
    pub mask: i64,
}

/// The pieces of one text, without special tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Whether each token starts a word (for whole-word masking).
    pub word_start: Vec<bool>,
}

/// A tokenizer and its special ids.
pub struct TextTokenizer {
    inner: Tokenizer,
    /// Ids of the special tokens.
    pub special: SpecialIds,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("special", &self.special)
            .finish()
    }
}

fn find(tok: &Tokenizer, names: &[&str]) -> Option<i64> {
    names.iter().find_map(|n| tok.token_to_id(n)).map(i64::from)
}

impl TextTokenizer {
    fn wrap(inner: Tokenizer, origin: &Path) -> Result<Self> {
        let slots: [(&str, &[&str]); 5] = [
            ("pad", &["[PAD]", "<pad>"]),
            ("unk", &["[UNK]", "<unk>"]),
            ("cls", &["[CLS]", "<s>"]),
            ("sep", &["[SEP]", "</s>"]),
            ("mask", &["[MASK]", "<mask>"]),
        ];
        let ids: Vec<Option<i64>> = slots.iter().map(|(_, names)| find(&inner, names)).collect();
        let missing: Vec<String> = slots
            .iter()
            .zip(&ids)
            .filter(|(_, id)| id.is_none())
            .map(|((_, names), _)| names.join(" or "))
            .collect();
        if !missing.is_empty() {
            return Err(Error::file(
                origin,
                format!(
                    "the tokenizer has no {} token (BERT-style special tokens are needed)",
                    missing.join(", ")
                ),
            ));
        }
        let id = |i: usize| ids[i].expect("checked above");
        let special = SpecialIds { pad: id(0), unk: id(1), cls: id(2), sep: id(3), mask: id(4) };
        Ok(Self { inner, special })
    }

    /// Trains a BERT-style WordPiece tokenizer on the corpus's documents
    /// (streamed) with at most `vocab_size` tokens, keeping pieces seen at
    /// least `min_frequency` times. A corpus error (bad line, empty corpus)
    /// is returned as is. The corpus is read twice (the first pass collects
    /// the characters that need a `##` piece), and the result depends only
    /// on the corpus: the same corpus gives the same ids.
    pub fn train_wordpiece(corpus: &Corpus, vocab_size: usize, min_frequency: u64) -> Result<Self> {
        let bert = |model: WordPiece| {
            let mut tok = Tokenizer::new(model);
            tok.with_normalizer(Some(BertNormalizer::new(true, true, None, true)))
                .with_pre_tokenizer(Some(BertPreTokenizer))
                .with_decoder(Some(WordPieceDecoder::default()));
            tok
        };
        let mut tok = bert(WordPiece::default());
        // The crate's trainer numbers the `##c` pieces (a character inside a
        // word) in hash-map order, and breaks ties between merges by those
        // numbers, so two runs on one corpus give different vocabularies
        // (huggingface/tokenizers#1794). Registered up front, in sorted
        // order, as tokens the trainer must keep, they get fixed ids, and
        // training becomes deterministic. They count towards `vocab_size`
        // as they would anyway.
        let inner = continuation_pieces(corpus, &tok)?;
        let keep: Vec<AddedToken> = SPECIAL_TOKENS
            .iter()
            .map(|t| t.to_string())
            .chain(inner.iter().map(|c| format!("##{c}")))
            .map(|t| AddedToken::from(t, true))
            .collect();
        let trainer = WordPieceTrainer::builder()
            .vocab_size(vocab_size.max(keep.len()))
            .min_frequency(min_frequency)
            .show_progress(false)
            .special_tokens(keep)
            .build();
        let mut trainer: TrainerWrapper = trainer.into();
        let failed: Mutex<Option<Error>> = Mutex::new(None);
        let docs = corpus.documents().map_while(|d| match d {
            Ok(d) => Some(d.text),
            Err(e) => {
                *failed.lock().expect("not poisoned") = Some(e);
                None
            }
        });
        tok.train(&mut trainer, docs)
            .map_err(|e| Error::file(corpus.root(), format!("training the tokenizer: {e}")))?;
        if let Some(e) = failed.into_inner().expect("not poisoned") {
            return Err(e);
        }
        // A fresh tokenizer on the trained pieces, whose only special tokens
        // are BERT's five (the `##c` pieces stay ordinary pieces).
        let ModelWrapper::WordPiece(model) = tok.get_model().clone() else {
            return Err(Error::file(corpus.root(), "training the tokenizer: no WordPiece model came out"));
        };
        let mut tok = bert(model);
        tok.add_special_tokens(&SPECIAL_TOKENS.map(|t| AddedToken::from(t, true)));
        let id = |t: &str| tok.token_to_id(t).expect("special tokens are in the vocabulary");
        let (sep, cls) = (id("[SEP]"), id("[CLS]"));
        tok.with_post_processor(Some(BertProcessing::new(("[SEP]".into(), sep), ("[CLS]".into(), cls))));
        Self::wrap(tok, corpus.root())
    }

    /// Loads a HF `tokenizer.json`; the error names the file when it is
    /// missing, corrupt, or lacks the special tokens.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let bad = |why: String| Error::file(path, format!("not a valid tokenizer.json: {why}"));
        // tokenizers 0.22.2 panics on some malformed files (bytes that are
        // not UTF-8 inside its `decoder` section, found by fuzzing), so the
        // text and its JSON are checked first, and a panic that still comes
        // is this file's error.
        let text = std::str::from_utf8(&bytes).map_err(|e| bad(format!("not UTF-8 text ({e})")))?;
        serde_json::from_str::<serde_json::Value>(text).map_err(|e| bad(format!("not JSON ({e})")))?;
        let inner = std::panic::catch_unwind(|| text.parse::<Tokenizer>())
            .map_err(|p| {
                bad(format!(
                    "the tokenizers crate failed reading it: {}",
                    ssl_core::error::panic_message(p.as_ref())
                ))
            })?
            .map_err(|e| bad(e.to_string()))?;
        Self::wrap(inner, path)
    }

    /// Saves as `tokenizer.json` (written to a temporary file, then renamed).
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        self.inner.save(&tmp, false).map_err(|e| Error::file(&tmp, format!("saving the tokenizer: {e}")))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> i64 {
        self.inner.get_vocab_size(true) as i64
    }

    /// The string of a token id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of a token string.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Encodes texts in parallel, without special tokens.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Encoded>> {
        let encs = self
            .inner
            .encode_batch(texts.to_vec(), false)
            .map_err(|e| Error::Config(format!("tokenizing: {e}")))?;
        Ok(encs
            .into_iter()
            .map(|e| {
                let words = e.get_word_ids();
                let word_start = (0..words.len())
                    .map(|i| i == 0 || words[i].is_none() || words[i] != words[i - 1])
                    .collect();
                Encoded { ids: e.get_ids().to_vec(), word_start }
            })
            .collect())
    }

    /// Encodes one text with the special tokens of the post-processor
    /// (`[CLS] … [SEP]` for BERT), as transformers' tokenizers do.
    pub fn encode_with_special(&self, text: &str) -> Result<Vec<u32>> {
        let e = self.inner.encode(text, true).map_err(|e| Error::Config(format!("tokenizing: {e}")))?;
        Ok(e.get_ids().to_vec())
    }

    /// Decodes ids back to text, skipping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| Error::Config(format!("decoding: {e}")))
    }
}
