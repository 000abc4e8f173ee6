//! The contract between a self-supervised method, its data and the trainer.
//!
//! A method owns its networks (in the trainer's `VarStore`) and turns a batch
//! into a loss; it never calls the optimizer. A batch source turns an epoch
//! and an index into a batch; the trainer never looks inside.

use crate::Result;
use tch::Tensor;

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

/// A self-supervised method.
pub trait Method {
    /// The paper's name in kebab case (`simclr`, `moco-v2`, …).
    fn name(&self) -> &'static str;
    /// The training loss for a batch, with extra metrics and features.
    fn loss(&self, batch: &Batch, train: bool) -> Output;
    /// Called after each optimizer step (momentum encoders update here).
    /// `step` is 0-based; `total_steps` is the run's length.
    fn after_step(&mut self, _step: usize, _total_steps: usize) {}
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
