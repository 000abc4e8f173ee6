//! Pre-training on packed sequences: the batch source (dynamic masking,
//! redrawn every epoch from a per-sequence generator), the method (masked-
//! or next-token loss through [`BertForMaskedLm`]) and a held-out monitor.

use crate::bert::BertForMaskedLm;
use crate::masking::{mask_sequence, MaskingConfig};
use crate::pack::Packed;
use crate::tokenizer::SpecialIds;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use ssl_core::augment::{epoch_order, sample_rng};
use ssl_core::method::{Batch, BatchSource, Method, Output, Part};
use ssl_core::trainer::EpochMonitor;
use tch::{Kind, Tensor};

/// The pre-training objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// BERT's masked-token prediction.
    Mlm,
    /// GPT-style next-token prediction with a causal mask.
    Clm,
}

impl std::str::FromStr for Objective {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "mlm" => Ok(Objective::Mlm),
            "clm" => Ok(Objective::Clm),
            o => Err(crate::Error::Config(format!("unknown objective `{o}`; expected mlm or clm"))),
        }
    }
}

/// Batches of packed sequences. For MLM the views are
/// `[masked ids, labels, attention mask]`; for CLM `[ids, attention mask]`;
/// all `[B, T]` int64. The last partial batch is dropped.
pub struct TextSource<'a> {
    data: &'a Packed,
    special: SpecialIds,
    masking: MaskingConfig,
    objective: Objective,
    batch_size: usize,
    seed: u64,
}

impl<'a> TextSource<'a> {
    /// A source over `data`.
    pub fn new(
        data: &'a Packed,
        special: SpecialIds,
        masking: MaskingConfig,
        objective: Objective,
        batch_size: usize,
        seed: u64,
    ) -> Self {
        Self { data, special, masking, objective, batch_size: batch_size.max(1), seed }
    }

    /// Sequences `ids` as a batch, masked with generators seeded from
    /// (`seed`, `epoch`, sequence).
    pub fn batch_of(&self, ids: &[usize], epoch: usize) -> Batch {
        let t = self.data.seq_len;
        let sp = self.special;
        // Per sequence: the model's input ids, labels (MLM only), attention mask.
        let rows: Vec<[Vec<i64>; 3]> = ids
            .par_iter()
            .map(|&i| {
                let (tok, starts) = self.data.sequence(i);
                let ids: Vec<i64> = tok.iter().map(|&x| i64::from(x)).collect();
                let attn: Vec<i64> = ids.iter().map(|&x| i64::from(x != sp.pad)).collect();
                match self.objective {
                    Objective::Mlm => {
                        let special: Vec<bool> =
                            ids.iter().map(|&x| x == sp.pad || x == sp.cls || x == sp.sep).collect();
                        let mut rng = sample_rng(self.seed, epoch, i);
                        let (masked, labels) = mask_sequence(&ids, &special, starts, &self.masking, &mut rng);
                        [masked, labels, attn]
                    }
                    Objective::Clm => [ids, Vec::new(), attn],
                }
            })
            .collect();
        let b = ids.len() as i64;
        let stack = |k: usize| {
            let flat: Vec<i64> = rows.iter().flat_map(|r| r[k].iter().copied()).collect();
            Tensor::from_slice(&flat).view([b, t as i64])
        };
        let views = match self.objective {
            Objective::Mlm => vec![stack(0), stack(1), stack(2)],
            Objective::Clm => vec![stack(0), stack(2)],
        };
        Batch { views, labels: None }
    }
}

impl BatchSource for TextSource<'_> {
    fn batches_per_epoch(&self) -> usize {
        self.data.len() / self.batch_size
    }
    fn batch_size(&self) -> usize {
        self.batch_size
    }
    fn batch(&self, epoch: usize, index: usize) -> ssl_core::Result<Batch> {
        self.part(epoch, index, Part::WHOLE)
    }
    /// Only the part's sequences are masked (each from its own generator).
    fn part(&self, epoch: usize, index: usize, part: Part) -> ssl_core::Result<Batch> {
        let order = epoch_order(self.data.len(), self.seed, epoch);
        Ok(self.batch_of(part.of(&order[index * self.batch_size..(index + 1) * self.batch_size]), epoch))
    }
    fn sample_unit(&self) -> &'static str {
        "tokens"
    }
    fn units(&self, batch: &Batch) -> usize {
        // Non-padding tokens: the attention mask is the last view.
        batch.views.last().map_or(0, |m| m.sum(Kind::Int64).int64_value(&[]) as usize)
    }
}

/// Masked- or next-token pre-training of a BERT; see the module docs.
pub struct TextPretrainer {
    /// The model.
    pub model: BertForMaskedLm,
    /// The objective.
    pub objective: Objective,
    /// Padding id (for pooled features).
    pub pad: i64,
}

impl Method for TextPretrainer {
    fn name(&self) -> &'static str {
        match self.objective {
            Objective::Mlm => "bert-mlm",
            Objective::Clm => "bert-clm",
        }
    }

    /// Each sample's loss stands alone: no batch statistics or negatives.
    fn min_micro_batch(&self) -> usize {
        1
    }
    fn loss(&self, batch: &Batch, train: bool) -> ssl_core::Result<Output> {
        let v = &batch.views;
        let (r, mask) = match self.objective {
            Objective::Mlm => (self.model.mlm_loss_and_hidden(&v[0], Some(&v[2]), &v[1], train), &v[2]),
            Objective::Clm => (self.model.clm_loss_and_hidden(&v[0], Some(&v[1]), train), &v[1]),
        };
        let (loss, correct, n, hidden) = r?;
        let acc = tch::no_grad(|| &correct / n.clamp_min(1.0));
        // The mean-pooled hidden states (of the masked input for MLM): the
        // training features of the collapse figures.
        let features = tch::no_grad(|| mean_pool(&hidden, &mask.ne(0)));
        Ok(Output::new(loss)
            .with_metrics(vec![("token_acc", acc), ("token_correct", correct), ("token_predicted", n)])
            .with_features(features))
    }

    /// The predicted tokens (masked for MLM, non-padding targets for CLM):
    /// the trainer normalises the loss by their count over every rank and
    /// micro-batch, so where the masks fall does not change the loss.
    fn loss_items(&self, batch: &Batch) -> Option<Tensor> {
        let v = &batch.views;
        Some(match self.objective {
            Objective::Mlm => v[1].ne(crate::IGNORE_INDEX).sum(Kind::Int64),
            Objective::Clm => {
                let t = v[1].size()[1];
                v[1].narrow(1, 1, t - 1).ne(0).sum(Kind::Int64)
            }
        })
    }

    fn features(&self, x: &Tensor) -> Tensor {
        let mask = x.ne(self.pad);
        let h = self.model.bert.forward(x, None, Some(&mask), false, false).expect("ids are [B, T]");
        mean_pool(&h, &mask)
    }
}

/// Mean of the hidden states over the tokens where `mask` is set.
///
/// # Shapes
/// `hidden: [B, T, H]`, `mask: [B, T]` → `[B, H]`
pub fn mean_pool(hidden: &Tensor, mask: &Tensor) -> Tensor {
    let m = mask.to_kind(hidden.kind()).unsqueeze(-1);
    (hidden * &m).sum_dim_intlist([1i64].as_slice(), false, hidden.kind())
        / m.sum_dim_intlist([1i64].as_slice(), false, hidden.kind()).clamp_min(1.0)
}

/// Held-out token accuracy between epochs: every held-out sequence, masked
/// with a fixed seed (the same masks each time), scored without dropout.
pub struct HeldoutMonitor<'a> {
    /// The held-out batches' source (its seed fixes the masks).
    pub source: TextSource<'a>,
    /// Where to compute.
    pub device: tch::Device,
}

impl HeldoutMonitor<'_> {
    /// `(token accuracy, mean loss)` on the held-out sequences.
    pub fn measure(&self, method: &dyn Method) -> ssl_core::Result<(f64, f64)> {
        let n = self.source.data.len();
        if n == 0 {
            return Ok((f64::NAN, f64::NAN));
        }
        let bs = self.source.batch_size;
        let (mut correct, mut predicted, mut loss_sum) = (0.0, 0.0, 0.0);
        tch::no_grad(|| -> ssl_core::Result<()> {
            for start in (0..n).step_by(bs) {
                let ids: Vec<usize> = (start..(start + bs).min(n)).collect();
                let batch = self.source.batch_of(&ids, 0).to_device(self.device);
                let out = method.loss(&batch, false)?;
                let get = |name: &str| {
                    out.metrics.iter().find(|(k, _)| *k == name).map_or(0.0, |(_, v)| v.double_value(&[]))
                };
                let p = get("token_predicted");
                correct += get("token_correct");
                predicted += p;
                loss_sum += out.loss.double_value(&[]) * p;
            }
            Ok(())
        })?;
        Ok((correct / predicted.max(1.0), loss_sum / predicted.max(1.0)))
    }
}

impl EpochMonitor for HeldoutMonitor<'_> {
    fn evaluate(&self, method: &dyn Method) -> ssl_core::Result<Vec<(&'static str, f64)>> {
        let (acc, loss) = self.measure(method)?;
        Ok(vec![("heldout_top1", acc), ("heldout_loss", loss)])
    }
}
