//! ssl-text: self-supervised text on ssl-core.
//!
//! - [`corpus`]: streamed corpora (plain text, paragraphs, JSONL, folders)
//!   and labelled sets (JSONL, CSV), with errors naming file and line.
//! - [`bert`]: BERT with transformers' parameter names (post-LN
//!   `BertForMaskedLM`, pre-LN `MegatronBertForMaskedLM`), SDPA attention,
//!   sparse MLM head, causal objective.
//! - [`tokenizer`]: WordPiece training and any HF `tokenizer.json`, with
//!   the `tokenizers` crate.
//! - [`masking`]: BERT's 80/10/10 rule, token- or whole-word, redrawn
//!   every epoch.

pub mod bert;
pub mod corpus;
pub mod error;
pub mod masking;
pub mod tokenizer;

pub use error::{Error, Result};
pub use masking::{mask_sequence, mask_tokens, MaskingConfig, IGNORE_INDEX};
