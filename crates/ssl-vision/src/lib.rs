//! ssl-vision: self-supervised learning for images on ssl-core.
//!
//! - [`resnet`]: ResNet-18/34/50 with CIFAR or ImageNet stems, torchvision
//!   parameter names; [`vit`]: ViT-Tiny/Small with timm names;
//!   [`backbone`]: either, by configuration.
//! - [`transforms`]: image operations with torchvision's semantics, and
//!   [`augment`]: the per-view pipelines (SimCLR's, MoCo v2's, BYOL's
//!   asymmetric pair, MAE's, a digits preset);
//!   [`gpu_augment`]: the same pipelines as batched tensor operations on
//!   device-resident data.
//! - [`data`]: MNIST IDX, CIFAR-10 binary and image-folder loaders, and the
//!   bundled MNIST-5k set; [`source`]: the batch source feeding the trainer;
//!   [`stream`]: image folders larger than memory, decoded batch by batch.
//! - [`simclr`], [`moco`] (MoCo v2, v3), [`byol`] (BYOL, SimSiam),
//!   [`redundancy`] (Barlow Twins, VICReg), [`mae`] and [`dino`];
//!   [`methods`] finds them by name, and [`anchors`] holds solo-learn's and
//!   lightly's published recipes by name.
//! - [`weights`]: `--init` from torchvision, timm or ssl-rs files, and the
//!   trained backbone out under the reference library's names.
//!
//! ```no_run
//! use ssl_core::trainer::{TrainConfig, Trainer};
//! use ssl_vision::{augment::ViewAugment, data, simclr::{SimClr, SimClrConfig}, source::ViewSource};
//!
//! fn main() -> anyhow::Result<()> {
//!     let data = data::load(&"bundled".parse()?)?;
//!     let mut vs = tch::nn::VarStore::new(tch::Device::cuda_if_available());
//!     let mut method = SimClr::new(&vs.root(), &SimClrConfig::small(1));
//!     let source = ViewSource::new(&data.train, ViewAugment::digits(28), 256, 0);
//!     let trainer = Trainer::new(TrainConfig::default(), vs.device(), "runs/mine".as_ref(), serde_json::json!({}));
//!     let summary = trainer.fit(&mut method, &mut vs, &source, false)?;
//!     println!("loss {:.3} after {} steps", summary.final_loss, summary.steps);
//!     Ok(())
//! }
//! ```

pub mod anchors;
pub mod augment;
pub mod backbone;
pub mod branch;
pub mod byol;
pub mod data;
pub mod dino;
pub mod error;
pub mod finetune;
pub mod gpu_augment;
pub mod methods;
pub mod moco;
pub mod neighbours;
pub mod redundancy;
pub mod resnet;
pub mod simclr;
pub mod source;
pub mod stream;
pub mod transforms;
pub mod weights;

pub use error::{Error, Result};
/// The patch transformer and MAE live in ssl-core, shared with audio.
pub use ssl_core::{mae, vit};

/// Compiles the README's examples as doctests, so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
