//! The contract between a self-supervised method, its data and the trainer.
//!
//! A method owns its networks (in the trainer's `VarStore`) and turns a batch
//! into a loss; it never calls the optimizer. A batch source turns an epoch
//! and an index into a batch; the trainer never looks inside.
//!
//! With several ranks (see `ssl-dist`), batch `index` is still the global
//! batch of one process's run: each rank asks the source for its [`Part`]
//! of it, and a method's loss combines the ranks through `ssl_dist::world()`
//! (gathered negatives, all-reduced statistics) so that its gradient is the
//! one of the whole batch.

use crate::Result;
use std::ops::Range;
use tch::Tensor;

/// One of `count` equal, consecutive parts of a global batch: what one
/// rank trains on in one accumulation micro-step. The trainer takes part
/// `micro * world_size + rank`, so the micro-steps of an optimizer step
/// cover consecutive slices of the batch in one process's order, and
/// micro-step `m` of a run on `W` ranks sees the samples that micro-step
/// `m` of one process sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    /// Which part, `0..count`.
    pub index: usize,
    /// How many parts the batch is cut into.
    pub count: usize,
}

impl Part {
    /// The whole batch.
    pub const WHOLE: Part = Part { index: 0, count: 1 };

    /// The positions of this part in a batch of `n` samples (`n` must be a
    /// multiple of `count`; the trainer checks it).
    pub fn range(&self, n: usize) -> Range<usize> {
        let size = n / self.count.max(1);
        self.index * size..(self.index + 1) * size
    }

    /// This part of a batch's sample ids.
    pub fn of<'a, T>(&self, ids: &'a [T]) -> &'a [T] {
        &ids[self.range(ids.len())]
    }
}

/// One batch of views. For vision, each view is `[B, C, H, W]`.
pub struct Batch {
    /// The augmented views of the same `B` samples, in the same order.
    pub views: Vec<Tensor>,
    /// Class labels `[B]` where the source has them (for online probes).
    pub labels: Option<Tensor>,
}

impl Batch {
    /// Number of samples (the first dimension of the first view).
    pub fn len(&self) -> usize {
        self.views.first().map_or(0, |v| v.size()[0] as usize)
    }
    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The same batch on `device`. Copies are asynchronous: from pinned
    /// memory (see [`Batch::pinned`]) the host does not wait for the
    /// device's queued work, so the next step's kernels can be queued while
    /// the current ones run.
    pub fn to_device(&self, device: tch::Device) -> Batch {
        let move_ = |t: &Tensor| t.to_device_(device, t.kind(), true, false);
        Batch { views: self.views.iter().map(move_).collect(), labels: self.labels.as_ref().map(move_) }
    }

    /// A [`Part`] of the batch: every view and the labels cut along
    /// dimension 0.
    pub fn part(&self, part: Part) -> Batch {
        if part == Part::WHOLE {
            return Batch {
                views: self.views.iter().map(Tensor::shallow_clone).collect(),
                labels: self.labels.as_ref().map(Tensor::shallow_clone),
            };
        }
        let cut = |t: &Tensor| {
            let r = part.range(t.size()[0] as usize);
            t.narrow(0, r.start as i64, r.len() as i64)
        };
        Batch { views: self.views.iter().map(cut).collect(), labels: self.labels.as_ref().map(cut) }
    }

    /// The batch with its CPU tensors copied into page-locked memory, for
    /// asynchronous copies to a CUDA `device` (a no-op for other devices
    /// and for tensors already on a device).
    pub fn pinned(self, device: tch::Device) -> Batch {
        if !device.is_cuda() {
            return self;
        }
        let pin = |t: Tensor| if t.device() == tch::Device::Cpu { t.pin_memory(device) } else { t };
        Batch { views: self.views.into_iter().map(pin).collect(), labels: self.labels.map(pin) }
    }
}

/// Scalars a method reports besides the loss (e.g. VICReg's terms), as
/// 0-d tensors: the trainer reads them only on logging steps, so a GPU is
/// not synchronised every step.
pub type Metrics = Vec<(&'static str, Tensor)>;

/// What a method computes for one batch.
pub struct Output {
    /// The loss to minimise.
    pub loss: Tensor,
    /// Extra scalars to log.
    pub metrics: Metrics,
    /// Backbone features of the first view, `[B, F]`, when the method has
    /// them at no extra cost: the trainer's online linear probe trains on
    /// them (detached).
    pub features: Option<Tensor>,
}

impl Output {
    /// Just a loss.
    pub fn new(loss: Tensor) -> Self {
        Self { loss, metrics: Vec::new(), features: None }
    }
    /// Adds metrics.
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        Self { metrics, ..self }
    }
    /// Adds the first view's backbone features.
    pub fn with_features(self, features: Tensor) -> Self {
        Self { features: Some(features), ..self }
    }
}

/// Where a run stands at an optimizer step ([`Method::before_step`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// The step, 0-based.
    pub step: usize,
    /// Steps in the run.
    pub total_steps: usize,
    /// The epoch of the step, 0-based.
    pub epoch: usize,
    /// Epochs in the run.
    pub epochs: usize,
}

/// A self-supervised method.
pub trait Method {
    /// The paper's name in kebab case (`simclr`, `moco-v2`, …).
    fn name(&self) -> &'static str;
    /// The training loss for a batch, with extra metrics and features. With
    /// several ranks the batch is this rank's part of the global batch, and
    /// the loss is this rank's share (see the module docs); an error is a
    /// failed collective. A training-mode call may run collectives, so every
    /// rank must make it.
    fn loss(&self, batch: &Batch, train: bool) -> Result<Output>;
    /// How many items the loss of `batch` averages over, when that number
    /// varies from batch to batch (the masked tokens of MLM), as a 0-d
    /// tensor. The trainer then weights each micro-batch of each rank by
    /// its count over the step's total, so that the step's loss is the mean
    /// over every item of the global batch however the items fall across
    /// ranks and micro-steps (`num_items_in_batch` in the HF Trainer).
    /// `None` (the default): every batch weighs the same.
    fn loss_items(&self, _batch: &Batch) -> Option<Tensor> {
        None
    }
    /// Called before each optimizer step's losses (and again at the first
    /// step after a resume), for losses that follow a schedule (DINO's
    /// teacher temperature).
    fn before_step(&mut self, _progress: Progress) {}
    /// Called after each optimizer step (momentum encoders update here).
    /// `step` is 0-based; `total_steps` is the run's length.
    fn after_step(&mut self, _step: usize, _total_steps: usize) {}
    /// The fewest samples a micro-batch (a rank's part of a step, or of
    /// one accumulated part of it) may hold: 2, the default, where the loss
    /// needs batch statistics (BatchNorm) or in-batch negatives; 1 where
    /// each sample's loss stands alone (MAE, masked or causal language
    /// modelling). The trainer refuses a batch that would go below it.
    fn min_micro_batch(&self) -> usize {
        2
    }
    /// The representation used for evaluation: backbone features, eval mode.
    ///
    /// # Shapes
    /// one input batch → `[B, F]`
    fn features(&self, x: &Tensor) -> Tensor;
}

/// Where batches come from; called from a producer thread, so it must be
/// `Sync`. Batch `index` of `epoch` must be the same every time it is asked
/// for (seeded), so that a resumed run sees the same data.
pub trait BatchSource: Sync {
    /// Batches per epoch.
    fn batches_per_epoch(&self) -> usize;
    /// Samples per batch (for throughput).
    fn batch_size(&self) -> usize;
    /// Builds batch `index` of `epoch` (on the CPU, or already on the
    /// training device).
    fn batch(&self, epoch: usize, index: usize) -> Result<Batch>;
    /// A [`Part`] of batch `index` of `epoch`: what one rank trains on.
    /// The default builds the whole batch and cuts it; sources whose
    /// samples are made independently (seeded per sample) build only the
    /// part's samples, giving the same tensors.
    fn part(&self, epoch: usize, index: usize, part: Part) -> Result<Batch> {
        Ok(self.batch(epoch, index)?.part(part))
    }
    /// What one sample is, for throughput displays (`images/s`).
    fn sample_unit(&self) -> &'static str {
        "samples"
    }
    /// How many of [`BatchSource::sample_unit`] a batch holds, for
    /// throughput (text sources count non-padding tokens). Called on the
    /// CPU batch, before it moves to the device.
    fn units(&self, batch: &Batch) -> usize {
        batch.len()
    }
}
