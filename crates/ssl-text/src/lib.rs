//! ssl-text: self-supervised text on ssl-core. This first slice holds
//! BERT's masking rule (Devlin et al., "BERT: Pre-training of Deep
//! Bidirectional Transformers for Language Understanding",
//! <https://arxiv.org/abs/1810.04805>, section 3.1), with the conventions of
//! HF transformers' `DataCollatorForLanguageModeling`: 15% of the
//! non-special tokens are selected; of those, 80% become `[MASK]`, 10% a
//! random token and 10% stay; labels are `-100` where nothing was selected.
//! Tokenisation, the BERT encoder and `train-text` come with the text issue.

use tch::{Device, Kind, Tensor};

/// The label value cross entropy ignores (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// Errors of ssl-text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor had the wrong shape or type.
    #[error("shape mismatch: {0}")]
    Shape(String),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// The masking rule's parameters.
#[derive(Clone, Debug)]
pub struct MaskingConfig {
    /// Fraction of non-special tokens selected for prediction (0.15).
    pub mlm_probability: f64,
    /// Id of `[MASK]`.
    pub mask_token_id: i64,
    /// Vocabulary size (random replacements are drawn below it).
    pub vocab_size: i64,
}

/// Applies BERT's masking to a batch of token ids. Uses libtorch's RNG
/// (seed it with `tch::manual_seed`).
///
/// # Shapes
/// `input_ids: [B, T]` (int64), `special: [B, T]` (bool, true for `[CLS]`,
/// `[SEP]`, padding) → `(masked_ids [B, T], labels [B, T])`
pub fn mask_tokens(input_ids: &Tensor, special: &Tensor, cfg: &MaskingConfig) -> Result<(Tensor, Tensor)> {
    if input_ids.size() != special.size() || input_ids.dim() != 2 {
        return Err(Error::Shape(format!(
            "input_ids {:?} and special-token mask {:?} must both be [B, T]",
            input_ids.size(),
            special.size()
        )));
    }
    if input_ids.kind() != Kind::Int64 || special.kind() != Kind::Bool {
        return Err(Error::Shape(format!(
            "input_ids must be int64 and the special mask bool, got {:?} and {:?}",
            input_ids.kind(),
            special.kind()
        )));
    }
    let dev: Device = input_ids.device();
    let bernoulli =
        |p: f64| Tensor::full(input_ids.size(), p, (Kind::Float, dev)).bernoulli().to_kind(Kind::Bool);
    let selected = bernoulli(cfg.mlm_probability).logical_and(&special.logical_not());
    let labels = input_ids.where_self(&selected, &Tensor::full_like(input_ids, IGNORE_INDEX));
    let to_mask = bernoulli(0.8).logical_and(&selected);
    let masked = Tensor::full_like(input_ids, cfg.mask_token_id).where_self(&to_mask, input_ids);
    // Half of the remaining 20%: a random token.
    let to_random = bernoulli(0.5).logical_and(&selected).logical_and(&to_mask.logical_not());
    let random = Tensor::randint(cfg.vocab_size, input_ids.size(), (Kind::Int64, dev));
    Ok((random.where_self(&to_random, &masked), labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportions_follow_bert() {
        tch::manual_seed(0);
        let (b, t) = (64, 512);
        let ids = Tensor::randint_low(1000, 2000, [b, t], (Kind::Int64, Device::Cpu));
        let special = Tensor::zeros([b, t], (Kind::Bool, Device::Cpu));
        let _ = special.narrow(1, 0, 1).fill_(1); // [CLS] column
        let cfg = MaskingConfig { mlm_probability: 0.15, mask_token_id: 3, vocab_size: 1000 };
        let (masked, labels) = mask_tokens(&ids, &special, &cfg).unwrap();
        let selected = labels.ne(IGNORE_INDEX);
        let n = (b * (t - 1)) as f64;
        let frac = |m: &Tensor| m.sum(Kind::Float).double_value(&[]);
        let sel = frac(&selected);
        assert!((sel / n - 0.15).abs() < 0.01, "{}", sel / n);
        // Special tokens are never selected.
        assert_eq!(frac(&selected.narrow(1, 0, 1)), 0.0);
        // Labels hold the original ids where selected.
        assert!(labels.masked_select(&selected).equal(&ids.masked_select(&selected)));
        let is_mask = masked.eq(3).logical_and(&selected);
        let unchanged = masked.eq_tensor(&ids).logical_and(&selected);
        // Random ids are drawn below 1000, so they never equal the originals.
        let random = selected.logical_and(&is_mask.logical_not()).logical_and(&unchanged.logical_not());
        assert!((frac(&is_mask) / sel - 0.8).abs() < 0.02);
        assert!((frac(&unchanged) / sel - 0.1).abs() < 0.02);
        assert!((frac(&random) / sel - 0.1).abs() < 0.02);
        // Unselected tokens are untouched.
        assert!(masked
            .masked_select(&selected.logical_not())
            .equal(&ids.masked_select(&selected.logical_not())));
    }

    #[test]
    fn shapes_are_checked() {
        let ids = Tensor::zeros([2, 3], (Kind::Int64, Device::Cpu));
        let special = Tensor::zeros([2, 4], (Kind::Bool, Device::Cpu));
        let cfg = MaskingConfig { mlm_probability: 0.15, mask_token_id: 3, vocab_size: 10 };
        assert!(mask_tokens(&ids, &special, &cfg).unwrap_err().to_string().contains("[2, 4]"));
    }
}
