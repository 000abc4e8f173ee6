//! Image folders larger than memory. [`index_folder`] lists the files and
//! labels once, decoding nothing; [`StreamingViewSource`] decodes a batch's
//! files when the trainer's producer thread asks for it, on rayon's worker
//! threads, and makes the views there, so at most the batches in flight (the
//! trainer keeps two ready) are held decoded. [`StreamedEval`] does the same
//! for feature extraction. Every image comes out RGB, as torchvision's
//! `ImageFolder` loader does, so a folder may mix gray and colour files.

use crate::augment::ViewAugment;
use crate::data::{decode_image, folder_classes, folder_files, to_rgb};
use crate::source::{epoch_order, stack, view_batch};
use crate::transforms::ImageU8;
use crate::Result;
use ssl_core::augment::par_map;
use ssl_core::eval::InputChunks;
use ssl_core::{Batch, BatchSource};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The files of one split and their labels.
#[derive(Clone, Debug)]
pub struct FileSet {
    /// Image files (PNG or JPEG).
    pub files: Vec<PathBuf>,
    /// Class index per file.
    pub labels: Vec<i64>,
}

impl FileSet {
    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }
    /// Whether there is no file.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
    /// Decodes files `ids` in parallel, each to RGB; an error names the file.
    pub fn decode(&self, ids: &[usize]) -> Result<Vec<ImageU8>> {
        par_map(ids, |&i| decode_image(&self.files[i]).map(to_rgb))
    }
}

/// An image folder's index: `DIR/train/<class>/*` and `DIR/test/<class>/*`.
#[derive(Clone, Debug)]
pub struct FolderIndex {
    /// The folder's name, for reports.
    pub name: String,
    /// Class names (the sub-folders of `train`, sorted).
    pub classes: Vec<String>,
    /// Training files.
    pub train: FileSet,
    /// Test files.
    pub test: FileSet,
}

/// Indexes an image folder without decoding it. The same checks as
/// [`crate::data::folder`] apply: missing folders, empty class folders and
/// a test split without one of the classes are errors naming the path.
pub fn index_folder(dir: &Path) -> Result<FolderIndex> {
    let classes = folder_classes(dir)?;
    let split = |name: &str| -> Result<FileSet> {
        let (files, labels) = folder_files(&dir.join(name), &classes)?.into_iter().unzip();
        Ok(FileSet { files, labels })
    };
    let (train, test) = (split("train")?, split("test")?);
    let name = dir.file_name().map_or("folder".into(), |n| n.to_string_lossy().into_owned());
    Ok(FolderIndex { name, classes, train, test })
}

/// Augmented views of a [`FileSet`], decoded batch by batch; see the module
/// docs. Same order, per-sample RNG and views as
/// [`crate::source::ViewSource`] over the decoded set.
pub struct StreamingViewSource<'a> {
    set: &'a FileSet,
    augs: Vec<ViewAugment>,
    batch_size: usize,
    seed: u64,
    min_side: usize,
}

impl<'a> StreamingViewSource<'a> {
    /// One view per entry of `augs`.
    pub fn new(set: &'a FileSet, augs: Vec<ViewAugment>, batch_size: usize, seed: u64) -> Self {
        Self { set, augs, batch_size: batch_size.max(1), seed, min_side: 0 }
    }

    /// Refuse (naming the file) any image whose shorter side is below
    /// `min_side`, rather than upsampling it.
    pub fn with_min_side(self, min_side: usize) -> Self {
        Self { min_side, ..self }
    }
}

impl BatchSource for StreamingViewSource<'_> {
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
        self.part(epoch, index, ssl_core::method::Part::WHOLE)
    }

    /// Only the part's files are decoded.
    fn part(&self, epoch: usize, index: usize, part: ssl_core::method::Part) -> ssl_core::Result<Batch> {
        let order = epoch_order(self.set.len(), self.seed, epoch);
        let ids = part.of(&order[index * self.batch_size..(index + 1) * self.batch_size]);
        view_batch(&self.augs, self.seed, epoch, ids, &self.set.labels, 3, |i| {
            let path = &self.set.files[i];
            let img = decode_image(path).map(to_rgb).map_err(ssl_core::Error::from)?;
            if img.h.min(img.w) < self.min_side {
                return Err(ssl_core::Error::Data(format!(
                    "{}: the image is {}x{}, smaller than the {} px views (--allow-upscale accepts it)",
                    path.display(),
                    img.h,
                    img.w,
                    self.min_side
                )));
            }
            Ok(Cow::Owned(img))
        })
    }
}

/// Evaluation inputs of a [`FileSet`]: each chunk decoded on demand and put
/// through `aug.eval_view` (resize and normalise).
pub struct StreamedEval<'a> {
    /// The files.
    pub set: &'a FileSet,
    /// Gives the evaluation transform.
    pub aug: &'a ViewAugment,
}

impl InputChunks for StreamedEval<'_> {
    fn len(&self) -> usize {
        self.set.len()
    }

    fn chunk(&self, start: usize, n: usize) -> ssl_core::Result<Tensor> {
        let ids: Vec<usize> = (start..start + n).collect();
        let views: Vec<Vec<f32>> =
            par_map(&ids, |&i| decode_image(&self.set.files[i]).map(|img| self.aug.eval_view(&to_rgb(img))))
                .map_err(ssl_core::Error::from)?;
        let refs: Vec<&[f32]> = views.iter().map(Vec::as_slice).collect();
        Ok(stack(&refs, 3, self.aug.size))
    }
}
