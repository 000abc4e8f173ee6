//! The batch source for view-based methods: shuffles the training split
//! each epoch (seeded), and makes `n_views` augmented views of every sample
//! in parallel (rayon), each from the sample's own RNG.

use crate::augment::ViewAugment;
use crate::data::ImageSet;
use crate::transforms::ImageU8;
use rayon::prelude::*;
use ssl_core::augment::{par_map, sample_rng};
use ssl_core::method::Part;
use ssl_core::{Batch, BatchSource};
use std::borrow::Cow;
use tch::Tensor;

/// Augmented views of an image set; see the module docs. The last partial
/// batch is dropped (BatchNorm dislikes tiny batches).
pub struct ViewSource<'a> {
    set: &'a ImageSet,
    augs: Vec<ViewAugment>,
    batch_size: usize,
    seed: u64,
}

impl<'a> ViewSource<'a> {
    /// Two views per sample, both from `aug`.
    pub fn new(set: &'a ImageSet, aug: ViewAugment, batch_size: usize, seed: u64) -> Self {
        Self::with_views(set, vec![aug.clone(), aug], batch_size, seed)
    }
    /// One view per entry of `augs` (asymmetric views, e.g. BYOL's).
    pub fn with_views(set: &'a ImageSet, augs: Vec<ViewAugment>, batch_size: usize, seed: u64) -> Self {
        Self { set, augs, batch_size: batch_size.max(1), seed }
    }
}

/// The sample order of an epoch (ssl-core's, shared by every batch source).
pub use ssl_core::augment::epoch_order;

/// A batch of samples `ids`: each sample's image from `image` (borrowed or
/// decoded), one view per entry of `augs` drawn from the sample's own RNG,
/// the views stacked per augmentation (`channels` each), and the labels.
/// The in-memory and streaming sources share it, so their batches agree.
pub(crate) fn view_batch<'a>(
    augs: &[ViewAugment],
    seed: u64,
    epoch: usize,
    ids: &[usize],
    labels: &[i64],
    channels: usize,
    image: impl Fn(usize) -> ssl_core::Result<Cow<'a, ImageU8>> + Sync + Send,
) -> ssl_core::Result<Batch> {
    let per_sample: Vec<Vec<Vec<f32>>> = par_map(ids, |&i| {
        let img = image(i)?;
        let mut rng = sample_rng(seed, epoch, i);
        Ok::<_, ssl_core::Error>(augs.iter().map(|a| a.view(&img, &mut rng)).collect())
    })?;
    let views = (0..augs.len())
        .map(|v| {
            let imgs: Vec<&[f32]> = per_sample.iter().map(|s| s[v].as_slice()).collect();
            stack(&imgs, channels, augs[v].size)
        })
        .collect();
    let labels = Tensor::from_slice(&ids.iter().map(|&i| labels[i]).collect::<Vec<_>>());
    Ok(Batch { views, labels: Some(labels) })
}

/// Stacks equally-sized CHW float images into `[B, C, H, W]`.
pub fn stack(images: &[&[f32]], c: usize, size: usize) -> Tensor {
    let flat: Vec<f32> = images.concat();
    Tensor::from_slice(&flat).reshape([images.len() as i64, c as i64, size as i64, size as i64])
}

/// The evaluation tensor of a split: every image through `aug.eval_view`,
/// `[N, C, size, size]`.
pub fn eval_tensor(set: &ImageSet, aug: &ViewAugment) -> Tensor {
    let views: Vec<Vec<f32>> = set.images.par_iter().map(|img| aug.eval_view(img)).collect();
    let refs: Vec<&[f32]> = views.iter().map(Vec::as_slice).collect();
    let c = set.images.first().map_or(3, |i| i.c);
    stack(&refs, c, aug.size)
}

impl BatchSource for ViewSource<'_> {
    fn batches_per_epoch(&self) -> usize {
        self.set.len() / self.batch_size
    }

    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn sample_unit(&self) -> &'static str {
        "images"
    }

    fn batch(&self, epoch: usize, index: usize) -> ssl_core::Result<Batch> {
        self.part(epoch, index, Part::WHOLE)
    }

    /// Only the part's images (each sample's views come from its own
    /// generator, so they equal the whole batch's rows).
    fn part(&self, epoch: usize, index: usize, part: Part) -> ssl_core::Result<Batch> {
        let order = epoch_order(self.set.len(), self.seed, epoch);
        let ids = part.of(&order[index * self.batch_size..(index + 1) * self.batch_size]);
        let c = self.set.images[ids[0]].c;
        view_batch(&self.augs, self.seed, epoch, ids, &self.set.labels, c, |i| {
            Ok(Cow::Borrowed(&self.set.images[i]))
        })
    }
}
