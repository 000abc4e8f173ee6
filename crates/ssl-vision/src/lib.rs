//! ssl-vision: self-supervised learning for images on ssl-core.
//!
//! - [`resnet`]: ResNet-18/34/50 with CIFAR or ImageNet stems, torchvision
//!   parameter names.
//! - [`transforms`]: image operations with torchvision's semantics, and
//!   [`augment`]: the per-view pipelines (SimCLR's, a digits preset).
//! - [`data`]: MNIST IDX, CIFAR-10 binary and image-folder loaders, and the
//!   bundled MNIST-5k set; [`source`]: the batch source feeding the trainer.
//! - [`simclr`]: SimCLR.
//!
//! ```no_run
//! use ssl_core::trainer::{TrainConfig, Trainer};
//! use ssl_vision::{data, simclr::{SimClr, SimClrConfig}, augment::ViewAugment, source::ViewSource};
//!
//! # fn main() -> anyhow::Result<()> {
//! let data = data::load(&"bundled".parse()?)?;
//! let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let cfg = SimClrConfig::small(1);
//! let mut method = SimClr::new(&vs.root(), &cfg);
//! let source = ViewSource::new(&data.train, ViewAugment::digits(28), 256, 0);
//! let trainer = Trainer::new(TrainConfig::default(), tch::Device::Cpu, "runs/example".as_ref(), serde_json::json!({}));
//! let summary = trainer.fit(&mut method, &mut vs, &source, false)?;
//! println!("final loss {}", summary.final_loss);
//! # Ok(()) }
//! ```

pub mod augment;
pub mod data;
pub mod error;
pub mod resnet;
pub mod simclr;
pub mod source;
pub mod transforms;

pub use error::{Error, Result};
