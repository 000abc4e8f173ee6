//! BERT's masking rule (Devlin et al., "BERT: Pre-training of Deep
//! Bidirectional Transformers for Language Understanding",
//! <https://arxiv.org/abs/1810.04805>, section 3.1), with the conventions of
//! HF transformers' `DataCollatorForLanguageModeling`: each non-special
//! token is selected with probability 15%; of those, 80% become `[MASK]`,
//! 10% a random token and 10% stay; labels are `-100` where nothing was
//! selected. [`mask_sequence`] draws from a per-sequence generator (seeded
//! by seed, epoch and sequence, so masks are redrawn every epoch and a
//! resumed run sees the same ones) and can select whole words, as
//! `DataCollatorForWholeWordMask`; [`mask_tokens`] is the batched tensor
//! version on libtorch's generator.

use crate::error::{Error, Result};
use tch::{Device, Kind, Tensor};

/// The label value cross entropy ignores (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// The masking rule's parameters.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct MaskingConfig {
    /// Fraction of non-special tokens selected for prediction (0.15).
    pub mlm_probability: f64,
    /// Id of `[MASK]`.
    pub mask_token_id: i64,
    /// Vocabulary size (random replacements are drawn below it).
    pub vocab_size: i64,
    /// Select whole words (every piece of a selected word) rather than
    /// single tokens; only [`mask_sequence`] honours it.
    pub whole_word: bool,
}

/// Masks one sequence. `special[i]` marks tokens never selected (`[CLS]`,
/// `[SEP]`, padding); `word_start[i]` marks the first piece of each word
/// (used when `cfg.whole_word`). Returns `(masked ids, labels)`.
pub fn mask_sequence(
    ids: &[i64],
    special: &[bool],
    word_start: &[bool],
    cfg: &MaskingConfig,
    rng: &mut impl rand::Rng,
) -> (Vec<i64>, Vec<i64>) {
    let n = ids.len();
    let mut selected = vec![false; n];
    if cfg.whole_word {
        let mut i = 0;
        while i < n {
            if special[i] {
                i += 1;
                continue;
            }
            let mut end = i + 1;
            while end < n && !special[end] && !word_start[end] {
                end += 1;
            }
            if rng.gen_bool(cfg.mlm_probability) {
                selected[i..end].iter_mut().for_each(|s| *s = true);
            }
            i = end;
        }
    } else {
        for i in 0..n {
            selected[i] = !special[i] && rng.gen_bool(cfg.mlm_probability);
        }
    }
    let mut masked = ids.to_vec();
    let mut labels = vec![IGNORE_INDEX; n];
    for i in (0..n).filter(|&i| selected[i]) {
        labels[i] = ids[i];
        let u: f64 = rng.gen();
        if u < 0.8 {
            masked[i] = cfg.mask_token_id;
        } else if u < 0.9 {
            masked[i] = rng.gen_range(0..cfg.vocab_size);
        }
    }
    (masked, labels)
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
        let cfg =
            MaskingConfig { mlm_probability: 0.15, mask_token_id: 3, vocab_size: 1000, whole_word: false };
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
    fn sequence_masking_follows_bert_and_skips_special_tokens() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let cfg =
            MaskingConfig { mlm_probability: 0.15, mask_token_id: 3, vocab_size: 1000, whole_word: false };
        let t = 128usize;
        let ids: Vec<i64> = (0..t as i64).map(|i| 1000 + i).collect();
        let special: Vec<bool> = (0..t).map(|i| i == 0 || i == t - 1 || i % 10 == 5).collect();
        let starts = vec![true; t];
        let (mut sel, mut mask, mut random, mut same, mut non_special) =
            (0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for _ in 0..400 {
            let (m, l) = mask_sequence(&ids, &special, &starts, &cfg, &mut rng);
            for i in 0..t {
                if special[i] {
                    assert_eq!((m[i], l[i]), (ids[i], IGNORE_INDEX), "special token {i} selected");
                    continue;
                }
                non_special += 1.0;
                if l[i] == IGNORE_INDEX {
                    assert_eq!(m[i], ids[i]);
                    continue;
                }
                assert_eq!(l[i], ids[i]);
                sel += 1.0;
                match m[i] {
                    3 => mask += 1.0,
                    x if x == ids[i] => same += 1.0,
                    x => {
                        assert!((0..1000).contains(&x));
                        random += 1.0
                    }
                }
            }
        }
        assert!((sel / non_special - 0.15).abs() < 0.01, "{}", sel / non_special);
        assert!((mask / sel - 0.8).abs() < 0.02, "{}", mask / sel);
        assert!((random / sel - 0.1).abs() < 0.015, "{}", random / sel);
        assert!((same / sel - 0.1).abs() < 0.015, "{}", same / sel);
    }

    #[test]
    fn whole_word_masking_takes_every_piece_of_a_word() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
        let cfg =
            MaskingConfig { mlm_probability: 0.15, mask_token_id: 3, vocab_size: 1000, whole_word: true };
        // [CLS] then words of 1, 2 and 3 pieces, repeated; [SEP] at the end.
        let mut starts = vec![true];
        for _ in 0..20 {
            starts.extend([true, true, false, true, false, false]);
        }
        starts.push(true);
        let n = starts.len();
        let special: Vec<bool> = (0..n).map(|i| i == 0 || i == n - 1).collect();
        let ids: Vec<i64> = (0..n as i64).map(|i| 2000 + i).collect();
        let (mut words, mut picked) = (0.0, 0.0);
        for _ in 0..500 {
            let (_, l) = mask_sequence(&ids, &special, &starts, &cfg, &mut rng);
            let mut i = 1;
            while i < n - 1 {
                let mut end = i + 1;
                while end < n - 1 && !starts[end] {
                    end += 1;
                }
                let chosen: Vec<bool> = (i..end).map(|k| l[k] != IGNORE_INDEX).collect();
                assert!(chosen.iter().all(|&c| c == chosen[0]), "word {i}..{end} partly selected");
                words += 1.0;
                picked += f64::from(u8::from(chosen[0]));
                i = end;
            }
            assert_eq!((l[0], l[n - 1]), (IGNORE_INDEX, IGNORE_INDEX));
        }
        assert!((picked / words - 0.15).abs() < 0.015, "{}", picked / words);
    }

    #[test]
    fn shapes_are_checked() {
        let ids = Tensor::zeros([2, 3], (Kind::Int64, Device::Cpu));
        let special = Tensor::zeros([2, 4], (Kind::Bool, Device::Cpu));
        let cfg =
            MaskingConfig { mlm_probability: 0.15, mask_token_id: 3, vocab_size: 10, whole_word: false };
        assert!(mask_tokens(&ids, &special, &cfg).unwrap_err().to_string().contains("[2, 4]"));
    }
}
