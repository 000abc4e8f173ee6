//! ssl-core: what every ssl-rs modality shares.
//!
//! - [`losses`]: NT-Xent, InfoNCE against a queue, negative cosine, Barlow
//!   Twins, VICReg, with parity tests against lightly.
//! - [`optim`], [`schedule`], [`ema`]: SGD, AdamW, LARS; warmup + cosine;
//!   momentum encoders.
//! - [`method`], [`trainer`], [`checkpoint`], [`metrics`]: the training loop
//!   that knows nothing of images, tokens or waveforms.
//! - [`eval`]: feature extraction, weighted kNN and a linear probe;
//!   [`finetune`]: end-to-end fine-tuning with a new head, with
//!   [`mixup`]: Mixup, CutMix and label smoothing.
//! - [`modules`]: MLP projection and prediction heads, transformer blocks;
//!   [`vit`]: the patch transformer and [`mae`]: masked autoencoding, shared
//!   by images and spectrograms.
//! - [`seeds`]: a run's figures over several seeds (mean, sd, paired
//!   differences).
//! - [`config`]: `--set key=value` overrides of a config's fields.
//! - [`augment`]: seeded per-sample randomness and batch parallelism;
//!   [`signal`]: 1-D signal operations (centring, speed, noise at an SNR).

pub mod amp;
pub mod augment;
pub mod checkpoint;
pub mod collapse;
pub mod config;
pub mod device;
pub mod dist_check;
pub mod ema;
pub mod embed;
pub mod error;
pub mod eval;
pub mod finetune;
mod fused;
pub mod html_report;
pub mod losses;
pub mod mae;
pub mod method;
pub mod metrics;
pub mod mixup;
pub mod modules;
pub mod optim;
pub mod plots;
pub mod schedule;
pub mod seeds;
pub mod signal;
pub mod trainer;
pub mod vit;
pub mod weights;

pub use error::{Error, Result};
pub use method::{Batch, BatchSource, Method, Output};
