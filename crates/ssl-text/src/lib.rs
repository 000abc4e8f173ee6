//! ssl-text: self-supervised text on ssl-core.
//!
//! - [`bundled`]: the fortunes corpus and labelled split, compiled in.
//! - [`corpus`]: streamed corpora (plain text, paragraphs, JSONL, folders)
//!   and labelled sets (JSONL, CSV), with errors naming file and line.
//! - [`bert`]: BERT with transformers' parameter names (post-LN
//!   `BertForMaskedLM`, pre-LN `MegatronBertForMaskedLM`), SDPA attention,
//!   sparse MLM head, causal objective.
//! - [`tokenizer`]: WordPiece training and any HF `tokenizer.json`, with
//!   the `tokenizers` crate.
//! - [`pack`]: corpus → fixed-length `[CLS] … [SEP]` sequences, with a
//!   held-out stream; [`pretrain`]: the batch source, the MLM/CLM method
//!   and the held-out monitor.
//! - [`finetune`]: sequence classification, as a linear probe on frozen
//!   pooled features and as full fine-tuning (top-1 and macro-F1).
//! - [`hf`]: loading a transformers-style folder (config, safetensors,
//!   tokenizer).
//! - [`masking`]: BERT's 80/10/10 rule, token- or whole-word, redrawn
//!   every epoch.
//! - [`topics`]: a generated task whose corpus holds what a small labelled
//!   set lacks (`cargo xtask gen-topics`).

pub mod bert;
pub mod bundled;
pub mod corpus;
pub mod error;
pub mod finetune;
pub mod hf;
pub mod masking;
pub mod pack;
pub mod pretrain;
pub mod tokenizer;
pub mod topics;

pub use error::{Error, Result};
pub use masking::{mask_sequence, mask_tokens, MaskingConfig, IGNORE_INDEX};
