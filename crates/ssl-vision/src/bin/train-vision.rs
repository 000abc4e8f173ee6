//! `train-vision`: self-supervised pretraining of an image encoder, then
//! kNN and linear-probe evaluation of the pretrained encoder and of the
//! same architecture at random initialisation, on the same split.
//!
//! Run through `cargo xtask train-vision [ARGS]`. With no arguments it
//! pretrains SimCLR on the bundled MNIST-5k set on the CPU. Methods:
//! simclr, moco-v2, moco-v3, byol, simsiam, barlow-twins, vicreg, mae.

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::json;
use ssl_core::device::{device_name, seed_everything};
use ssl_core::eval::{evaluate_encoder, extract_features_from, Evaluated, InputChunks, KnnMonitor};
use ssl_core::metrics::write_json_atomic;
use ssl_core::trainer::{TrainConfig, Trainer};
use ssl_core::BatchSource;
use ssl_vision::augment::ViewAugment;
use ssl_vision::backbone::{channels_last_, Backbone, BackboneConfig};
use ssl_vision::data::{self, DataSpec, ImageData};
use ssl_vision::finetune::{copy_backbone, fine_tune, FineTuneConfig};
use ssl_vision::gpu_augment::GpuViewSource;
use ssl_vision::methods;
use ssl_vision::resnet::{ResNetConfig, Stem};
use ssl_vision::source::{eval_tensor, ViewSource};
use ssl_vision::stream::{index_folder, FolderIndex, StreamedEval, StreamingViewSource};
use ssl_vision::vit::VitConfig;
use std::path::PathBuf;
use std::time::Instant;
use tch::nn::{self, ModuleT};

#[derive(Parser, Debug, Clone, serde::Serialize)]
#[command(
    version,
    about = "Self-supervised pretraining and evaluation of an image encoder",
    // A later flag replaces an earlier one: `--recipe` expands into flags
    // that the command line's own then override.
    args_override_self = true,
    mut_arg("out", |a| a.help("Run folder (config.json, metrics.jsonl, checkpoints/, report.json). Default: runs/<method>-<dataset>")),
    mut_arg("resume", |a| a.help("Continue from the run folder's latest checkpoint (weights, optimizer, momentum targets, MoCo's queue)")),
    mut_arg("checkpoint_every", |a| a.help("Checkpoint every N epochs (the last one always) [default: 5]"))
)]
struct Args {
    /// Method: simclr, moco-v2, moco-v3, byol, simsiam, barlow-twins, vicreg, mae or dino.
    #[arg(long, default_value = "simclr")]
    method: String,
    /// Data: bundled | mnist-idx:DIR | cifar10:DIR | cifar100:DIR | stl10:DIR | folder:DIR.
    #[arg(long, default_value = "bundled")]
    data: String,
    /// A published recipe by name (solo-learn's and lightly's CIFAR and
    /// ImageNet-100 settings, `--recipe list` for all): it sets the method,
    /// backbone, epochs, batch, optimizer, augmentation and method config,
    /// and the flags given beside it override them. Pass the data with
    /// --data. See docs/recipes.md.
    #[arg(long)]
    recipe: Option<String>,
    /// Pretrain on the data set's unlabelled split too (STL-10's 100,000
    /// unlabelled images), beside its training split; the evaluations use
    /// the labelled splits only. Turns the online probe off.
    #[arg(long)]
    unlabeled: bool,
    /// Pretraining epochs (default: the method's recipe; 15 for simclr).
    #[arg(long)]
    epochs: Option<usize>,
    /// Batch size: the samples of one optimizer step, over all ranks (at
    /// least 2: BatchNorm needs two samples). Default: the method's recipe
    /// (256; dino and mae 64).
    #[arg(long, value_parser = clap::value_parser!(u64).range(2..))]
    batch_size: Option<u64>,
    /// Backbone: small (ResNet-18 layout, width 16), resnet18, resnet34,
    /// resnet50, vit-mini, vit-tiny, vit-small (default: small, or vit-mini
    /// for mae).
    #[arg(long)]
    backbone: Option<String>,
    /// ViT patch size.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i64).range(1..))]
    patch_size: i64,
    /// Stem: cifar (3x3, no pool) or imagenet (7x7 and max-pool).
    #[arg(long, default_value = "cifar")]
    stem: String,
    /// Start the backbone (every copy: the online branch and its momentum
    /// target) from a safetensors file: torchvision's ResNet or timm's ViT
    /// state dict as published (their classifier `fc.*`/`head.*` is left
    /// out), or an ssl-rs run's `model.safetensors` or
    /// `backbone.safetensors`. The backbone flags must describe the file's
    /// architecture (e.g. `--backbone resnet18 --stem imagenet`); missing,
    /// mis-shaped and unexpected tensors are named.
    #[arg(long, value_name = "FILE")]
    init: Option<PathBuf>,
    /// With `--init`: the prefix of the backbone's tensors in the file
    /// (`target.backbone.`: BYOL's or MoCo's momentum copy,
    /// `student.backbone.`: DINO's student, in a run's `model.safetensors`).
    /// Default: found by matching the backbone's names (in an ssl-rs run
    /// the copy it evaluated: the online one, or DINO's teacher).
    #[arg(long, value_name = "PREFIX", requires = "init")]
    init_prefix: Option<String>,
    /// Optimizer: lars (lightly's) | lars-clip (solo-learn's) | sgd | adamw
    /// (default: the method's recipe).
    #[arg(long)]
    optimizer: Option<String>,
    /// Peak learning rate (default: the method's recipe, scaled by batch/256).
    #[arg(long, value_parser = ssl_cli::positive)]
    lr: Option<f64>,
    /// Weight decay (default: the method's recipe).
    #[arg(long, value_parser = ssl_cli::non_negative)]
    weight_decay: Option<f64>,
    /// Temperature of simclr and moco-v2 (default 0.2: the MoCo v2 value;
    /// for SimCLR it learns faster in short runs than the paper's 0.5).
    #[arg(long, value_parser = ssl_cli::positive)]
    temperature: Option<f64>,
    /// Where views are made: cpu (image ops + rayon), device (batched
    /// tensor ops on device-resident data), or auto (cpu for now: on the
    /// bundled 28-px digits with 16 cores both paths feed an H100 equally;
    /// see docs/results.md).
    #[arg(long, default_value = "auto")]
    augment_on: String,
    /// Augmentation preset: auto (digits for 1-channel data, else the method's paper preset: simclr,
    /// moco-v2 for moco-v2 and simsiam, byol's asymmetric views for byol, moco-v3, barlow-twins and
    /// vicreg, mae for mae), simclr, moco-v2, byol, mae, digits.
    #[arg(long, default_value = "auto")]
    augment: String,
    /// Multi-crop: local crops per image besides the two global views
    /// (DINO: 6 by default for views of 64 pixels or more, none for smaller
    /// ones, as solo-learn's and lightly's CIFAR recipes; the other methods
    /// take none).
    #[arg(long)]
    local_crops: Option<usize>,
    /// Side of the local crops (default: 96/224 of --image-size, a
    /// multiple of the ViT patch size).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    local_size: Option<u64>,
    /// Hold out this fraction of each class's training images and evaluate
    /// on it instead of the test split (the data set's name gains `-val`):
    /// for choosing recipes without looking at the test split.
    #[arg(long)]
    val_fraction: Option<f64>,
    /// Clip the global gradient norm.
    #[arg(long, value_parser = ssl_cli::positive)]
    grad_clip: Option<f64>,
    /// Channels-last memory layout for convolutions: on, off, or auto (on:
    /// 1.24x faster on 2 CPU cores for the default run; see docs/results.md).
    #[arg(long, default_value = "auto")]
    channels_last: String,
    /// Accept images smaller than the views (they are upsampled, as
    /// torchvision's RandomResizedCrop does); by default they are an error.
    #[arg(long)]
    allow_upscale: bool,
    /// Fine-tune the pretrained encoder and the random-init one with labels
    /// for N epochs after the frozen evaluations (0: skip).
    #[arg(long, default_value_t = 0)]
    finetune_epochs: usize,
    /// Peak learning rate of fine-tuning (AdamW).
    #[arg(long, default_value_t = 1e-3, value_parser = ssl_cli::positive)]
    finetune_lr: f64,
    /// How a ViT's tokens become the fine-tuned features: cls (the class
    /// token) or mean (the mean of the patch tokens, MAE's fine-tuning
    /// choice: its pretraining never trains the class token's output).
    /// Default: mean for mae, the backbone's pooling otherwise.
    #[arg(long)]
    finetune_pool: Option<String>,
    /// Batch size of fine-tuning (default: pretraining's).
    #[arg(long)]
    finetune_batch_size: Option<usize>,
    /// Fractions of the training labels to fine-tune on (class-balanced,
    /// fixed by the seed, the linear probes' subsets); each trains for as
    /// many steps as the run on all labels.
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1,1")]
    finetune_fractions: Vec<f64>,
    /// Layer-wise learning-rate decay of ViT fine-tuning (MAE's recipe;
    /// 1 disables it; ResNets ignore it).
    #[arg(long, default_value_t = 0.75)]
    layer_decay: f64,
    /// Mixup's alpha in fine-tuning (MAE's recipe: 0.8). Default 0 (off):
    /// MAE's regularisers cost both encoders 6 points on the bundled
    /// digits' validation split (docs/results.md).
    #[arg(long)]
    finetune_mixup: Option<f64>,
    /// CutMix's alpha in fine-tuning (MAE's: 1.0; with Mixup on too, each
    /// batch takes one of the two). Default 0 (off).
    #[arg(long)]
    finetune_cutmix: Option<f64>,
    /// Label smoothing in fine-tuning (MAE's: 0.1). Default 0.
    #[arg(long)]
    finetune_label_smoothing: Option<f64>,
    /// Stochastic depth of a ViT in fine-tuning: the last block's drop-path
    /// rate (MAE's: 0.1; ResNets refuse it). Default 0.
    #[arg(long)]
    finetune_drop_path: Option<f64>,
    /// Run the kNN monitor every N epochs (and after the last); 0 disables it.
    #[arg(long, default_value_t = 5)]
    knn_every: usize,
    /// Stream a `folder:DIR` data set instead of loading it: files are
    /// decoded batch by batch on worker threads, for sets larger than memory.
    #[arg(long)]
    stream: bool,
    /// Side of the square views and evaluation images (default: the first
    /// training image's height; for a streamed folder, its shorter side).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    image_size: Option<u64>,
    /// Shared run options.
    #[command(flatten)]
    #[serde(flatten)]
    run: ssl_cli::RunArgs,
}

fn backbone_config(args: &Args, in_channels: i64, image_size: i64) -> Result<BackboneConfig> {
    let stem = match args.stem.as_str() {
        "cifar" => Stem::Cifar,
        "imagenet" => Stem::ImageNet,
        s => bail!("unknown stem `{s}`; expected cifar or imagenet"),
    };
    let name = args.backbone.as_deref().unwrap_or(methods::default_backbone(&args.method));
    if let Some(vit) = name.strip_prefix("vit-") {
        if image_size % args.patch_size != 0 {
            bail!("image size {image_size} is not a multiple of --patch-size {}", args.patch_size);
        }
        let cfg = match vit {
            "mini" => VitConfig::mini(image_size, args.patch_size),
            "tiny" => VitConfig::tiny(image_size, args.patch_size),
            "small" => VitConfig::small(image_size, args.patch_size),
            _ => bail!("unknown backbone `{name}`; expected {BACKBONES}"),
        };
        return Ok(cfg.with_in_channels(in_channels).into());
    }
    let cfg = match name {
        "small" => ResNetConfig::resnet18_cifar().with_width(16),
        name => ResNetConfig::by_name(name, stem)
            .with_context(|| format!("unknown backbone `{name}`; expected {BACKBONES}"))?,
    };
    Ok(ResNetConfig { stem, in_channels, ..cfg }.into())
}

/// Backbone names for error messages.
const BACKBONES: &str = "small, resnet18, resnet34, resnet50, vit-mini, vit-tiny or vit-small";

/// The data: decoded into memory, or a folder index streamed batch by batch.
enum Loaded {
    Memory(ImageData),
    Streamed(FolderIndex),
}

impl Loaded {
    fn name(&self) -> &str {
        match self {
            Loaded::Memory(d) => &d.name,
            Loaded::Streamed(f) => &f.name,
        }
    }
    fn classes(&self) -> &[String] {
        match self {
            Loaded::Memory(d) => &d.classes,
            Loaded::Streamed(f) => &f.classes,
        }
    }
    /// Image `i` of the training or test split, as stored or decoded.
    fn image(&self, test: bool, i: usize) -> Result<ssl_vision::transforms::ImageU8> {
        Ok(match self {
            Loaded::Memory(d) => (if test { &d.test } else { &d.train }).images[i].clone(),
            Loaded::Streamed(f) => (if test { &f.test } else { &f.train }).decode(&[i])?.remove(0),
        })
    }
    /// Train and test labels.
    fn labels(&self) -> (&[i64], &[i64]) {
        match self {
            Loaded::Memory(d) => (&d.train.labels, &d.test.labels),
            Loaded::Streamed(f) => (&f.train.labels, &f.test.labels),
        }
    }
    /// Channels and the default view size.
    fn channels_and_size(&self) -> Result<(usize, usize)> {
        match self {
            Loaded::Memory(d) => Ok((d.channels(), d.image_size())),
            Loaded::Streamed(f) => {
                let first = f.train.decode(&[0])?.remove(0);
                Ok((3, first.h.min(first.w)))
            }
        }
    }
}

/// Refuses images smaller than the `size`-px views (in memory: every image;
/// streamed: the first of each split here, the rest as batches decode them),
/// naming the file for image folders.
/// Fine-tuning's Mixup, CutMix and label smoothing: the flags, else none
/// (MAE's values, 0.8 / 1.0 / 0.1, cost 6 points for both encoders on a
/// validation split at 1000 steps: docs/results.md).
fn finetune_mixup(args: &Args) -> ssl_core::mixup::MixupConfig {
    ssl_core::mixup::MixupConfig {
        mixup_alpha: args.finetune_mixup.unwrap_or(0.0),
        cutmix_alpha: args.finetune_cutmix.unwrap_or(0.0),
        label_smoothing: args.finetune_label_smoothing.unwrap_or(0.0),
        ..ssl_core::mixup::MixupConfig::mae()
    }
}

/// Fine-tuning's pooling of a ViT's tokens: the flag, else the mean for
/// MAE and `pool` (the backbone's) otherwise.
fn finetune_pool(args: &Args, pool: ssl_core::vit::Pool) -> Result<ssl_core::vit::Pool> {
    use ssl_core::vit::Pool;
    Ok(match args.finetune_pool.as_deref() {
        None if args.method == "mae" => Pool::Mean,
        None => pool,
        Some("cls") => Pool::Cls,
        Some("mean") => Pool::Mean,
        Some(o) => bail!("--finetune-pool {o}: expected cls or mean"),
    })
}

/// Fine-tuning's drop-path rate: the flag, else 0 (off, as the other
/// regularisers); a ResNet has none to set.
fn finetune_drop_path(args: &Args, backbone: &BackboneConfig) -> Result<f64> {
    match (backbone, args.finetune_drop_path) {
        (BackboneConfig::Vit(_), rate) => {
            let rate = rate.unwrap_or(0.0);
            if !(0.0..1.0).contains(&rate) {
                bail!("--finetune-drop-path must be in [0, 1), got {rate}");
            }
            Ok(rate)
        }
        (BackboneConfig::ResNet(_), Some(r)) if r != 0.0 => {
            bail!("--finetune-drop-path {r}: stochastic depth is implemented for ViT backbones only")
        }
        (BackboneConfig::ResNet(_), _) => Ok(0.0),
    }
}

/// `test`: whether the test split is used (not with `--val-fraction`,
/// which evaluates on part of the training split instead).
fn check_image_sizes(data: &Loaded, spec: &DataSpec, size: usize, test: bool) -> Result<()> {
    let too_small = |what: String, h: usize, w: usize| -> Result<()> {
        bail!(
            "{what} is {h}x{w}, smaller than the {size}x{size} views; pass --image-size {} or less, or --allow-upscale to upsample it",
            h.min(w)
        )
    };
    match data {
        Loaded::Memory(d) => {
            let splits =
                if test { vec![("train", &d.train), ("test", &d.test)] } else { vec![("train", &d.train)] };
            for (split, set) in splits {
                if let Some(i) = set.images.iter().position(|im| im.h.min(im.w) < size) {
                    let im = &set.images[i];
                    let what = match spec {
                        DataSpec::Folder(dir) => {
                            let index = index_folder(dir)?;
                            let files = if split == "train" { &index.train.files } else { &index.test.files };
                            files[i].display().to_string()
                        }
                        _ => format!("{split} image {i}"),
                    };
                    too_small(what, im.h, im.w)?;
                }
            }
        }
        Loaded::Streamed(f) => {
            for set in [&f.train, &f.test] {
                let im = set.decode(&[0])?.remove(0);
                if im.h.min(im.w) < size {
                    too_small(set.files[0].display().to_string(), im.h, im.w)?;
                }
            }
        }
    }
    Ok(())
}

/// The flags a recipe stands for.
fn recipe_flags(r: &ssl_vision::anchors::AnchorRecipe) -> Vec<String> {
    let mut f: Vec<String> = [
        ("--method", r.method.to_string()),
        ("--backbone", r.backbone.to_string()),
        ("--stem", r.stem.to_string()),
        ("--image-size", r.image_size.to_string()),
        ("--epochs", r.epochs.to_string()),
        ("--batch-size", r.batch_size.to_string()),
        ("--optimizer", r.optimizer.to_string()),
        ("--weight-decay", r.weight_decay.to_string()),
        ("--warmup-epochs", r.warmup_epochs.to_string()),
        ("--augment", r.augment.to_string()),
        ("--local-crops", r.local_crops.to_string()),
    ]
    .into_iter()
    .flat_map(|(k, v)| [k.to_string(), v])
    .collect();
    if let Some(p) = r.patch_size {
        f.extend(["--patch-size".into(), p.to_string()]);
    }
    if let Some(t) = r.temperature {
        f.extend(["--temperature".into(), t.to_string()]);
    }
    for s in r.sets.iter().chain(r.more_sets) {
        f.extend(["--set".into(), s.to_string()]);
    }
    f
}

/// kNN and linear probe of an encoder, and a PCA plot of its test
/// embeddings (titled `title`) written to `plot`.
#[allow(clippy::too_many_arguments)]
fn evaluate(
    features: &dyn Fn(&tch::Tensor) -> tch::Tensor,
    data: &Loaded,
    train_x: &dyn InputChunks,
    test_x: &dyn InputChunks,
    device: tch::Device,
    plot: &std::path::Path,
    title: &str,
    seed: u64,
) -> Result<Evaluated> {
    let tr = extract_features_from(features, train_x, 512, device)?;
    let te = extract_features_from(features, test_x, 512, device)?;
    let (train_labels, test_labels) = data.labels();
    let ty = tch::Tensor::from_slice(train_labels);
    let ey = tch::Tensor::from_slice(test_labels);
    Ok(evaluate_encoder(tr, &ty, te, &ey, data.classes(), seed, title, plot)?)
}

/// Test images (the first of each class, up to 10) beside their 6 nearest
/// training images under the features of `e`.
fn neighbours_picture(e: &Evaluated, data: &Loaded, encoder: &str) -> Result<ssl_core::html_report::Picture> {
    use ssl_vision::neighbours::{grid_png, nearest, one_per_class, Row};
    let (train_labels, test_labels) = data.labels();
    let queries = one_per_class(test_labels, 10);
    let ids: Vec<i64> = queries.iter().map(|&i| i as i64).collect();
    let near = nearest(&e.test.index_select(0, &tch::Tensor::from_slice(&ids)), &e.train, 6)?;
    let mut rows = Vec::with_capacity(queries.len());
    for (&q, found) in queries.iter().zip(&near) {
        let neighbours = found
            .iter()
            .map(|&j| Ok((data.image(false, j)?, train_labels[j])))
            .collect::<Result<Vec<_>>>()?;
        rows.push(Row { query: (data.image(true, q)?, test_labels[q]), neighbours });
    }
    Ok(ssl_core::html_report::Picture {
        title: format!("Nearest training images ({encoder})"),
        caption:
            "Left: a test image of each class; right: its 6 nearest training images by cosine similarity of \
                  the features, framed green when of the same class, red otherwise."
                .into(),
        png: grid_png(&rows, 56)?,
    })
}

/// What `--seeds` summarises.
const SEED_SPEC: ssl_core::seeds::SeedSpec =
    ssl_core::seeds::SeedSpec { figures: &["ssl", "random_init", "wall_s"], paired: ("ssl", "random_init") };

fn main() -> Result<()> {
    // The command line, with --config FILE read first.
    // Activations are freed and allocated again every step: keep their
    // pages unless $SSL_RS_CPU_ALLOCATOR says otherwise.
    ssl_core::device::tune_cpu_allocator()?;
    let argv = ssl_cli::argv::<Args>();
    let mut args = Args::parse_from(&argv);
    // What config.json records: the options as given, before a recipe's
    // flags and its batch-scaled learning rate are merged in, so that
    // `--config` of it expands the recipe again for the batch it is given.
    let as_given = args.clone();
    if let Some(name) = &args.recipe {
        if name == "list" {
            for r in ssl_vision::anchors::recipes() {
                println!("{:<36} {} ({})", r.name, r.method, r.data);
            }
            return Ok(());
        }
        let recipe = ssl_vision::anchors::recipe(name)?;
        // The recipe's flags first: a --config file's and the command
        // line's own come after them and override them.
        let mut full: Vec<std::ffi::OsString> = argv[..1].to_vec();
        full.extend(recipe_flags(&recipe).into_iter().map(Into::into));
        full.extend(argv[1..].iter().cloned());
        args = Args::parse_from(full);
        // The learning rate follows the batch (the command line's, if given).
        let batch = args.batch_size.map_or(recipe.batch_size, |b| b as usize);
        let lr = *args.lr.get_or_insert(recipe.lr_per_256 * batch as f64 / 256.0);
        if std::env::var("RANK").map_or(true, |r| r == "0") {
            let flags = recipe_flags(&recipe).join(" ");
            eprintln!("recipe {} ({}): {flags}, lr {lr} at batch {batch}", recipe.name, recipe.source);
            let common = recipe
                .name
                .starts_with("solo-learn/")
                .then(ssl_vision::anchors::solo_learn_common_differences);
            let differs: Vec<&str> =
                [Some(recipe.differences), common].into_iter().flatten().filter(|d| !d.is_empty()).collect();
            if !differs.is_empty() {
                eprintln!("  where ssl-rs differs: {}", differs.join("; "));
            }
        }
    }
    let result = ssl_cli::over_seeds(&args.run, &SEED_SPEC, |run| {
        let given =
            Args { run: ssl_cli::RunArgs { seed: run.seed, ..as_given.run.clone() }, ..as_given.clone() };
        train(&Args { run: run.clone(), ..args.clone() }, &given)
    });
    if let Err(e) = &result {
        // A SIGTERM or SIGINT: the checkpoint is written; say how to resume.
        ssl_cli::exit_if_interrupted(e);
    }
    result
}

/// One run (one seed) of `args`; `given` is what config.json records (see
/// `main`).
fn train(args: &Args, given: &Args) -> Result<Option<ssl_cli::Finished>> {
    let started = Instant::now();
    let recipe = methods::recipe(&args.method)?;
    let batch_size = args.batch_size.map_or(recipe.batch_size, |b| b as usize);
    if args.method == "moco-v2" && !batch_size.is_multiple_of(8) {
        bail!("moco-v2 splits each batch into 8 for its split BatchNorm: --batch-size {batch_size} is not a multiple of 8");
    }
    let run = args.run.start()?;
    let device = run.device;
    let seed = run.seed;
    let spec: DataSpec = args.data.parse()?;
    let data = match (&spec, args.stream) {
        (DataSpec::Folder(dir), true) => {
            Loaded::Streamed(index_folder(dir).with_context(|| format!("indexing --data {}", args.data))?)
        }
        (_, true) => bail!("--stream reads image folders (folder:DIR); {} is loaded into memory", args.data),
        _ => Loaded::Memory(data::load(&spec).with_context(|| format!("loading --data {}", args.data))?),
    };
    if let (DataSpec::Folder(dir), true) = (&spec, run.is_main()) {
        let unread = ssl_cli::unread_files(dir, data::reads_file);
        ssl_cli::note_unread(&unread, &dir.display().to_string(), "not PNG or JPEG images of a class");
    }
    let (channels, default_size) = data.channels_and_size()?;
    let channels = channels as i64;
    let size = args.image_size.map_or(default_size, |s| s as usize);
    // Before --val-fraction re-splits the images, so that a too-small
    // image is named by its file.
    if !args.allow_upscale {
        check_image_sizes(&data, &spec, size, args.val_fraction.is_none())?;
    }
    let data = match (data, args.val_fraction) {
        (Loaded::Memory(d), Some(f)) => Loaded::Memory(d.validation_split(f, seed)?),
        (Loaded::Streamed(_), Some(_)) => bail!("--val-fraction needs the data in memory; drop --stream"),
        (d, None) => d,
    };
    // The pretraining images: the training split, and the unlabelled one
    // when asked.
    let pretrain = match (&data, args.unlabeled) {
        (Loaded::Memory(d), true) => {
            let extra =
                data::unlabeled(&spec).with_context(|| format!("--unlabeled with --data {}", args.data))?;
            let mut set = d.train.clone();
            set.images.extend(extra.images);
            set.labels.extend(extra.labels);
            Some(set)
        }
        (Loaded::Streamed(_), true) => {
            bail!("--unlabeled reads STL-10's unlabelled split into memory; drop --stream")
        }
        (_, false) => None,
    };
    let (train_n, test_n) = (data.labels().0.len(), data.labels().1.len());
    let pretrain_n = pretrain.as_ref().map_or(train_n, |p| p.len());
    let what = if pretrain.is_some() { "pretraining" } else { "training" };
    ssl_cli::check_batch_size(batch_size, pretrain_n, &format!("{what} images of {}", data.name()))?;
    ssl_cli::check_fractions(&args.finetune_fractions)?;
    ssl_cli::refuse_set(
        &args.run.set,
        &["backbone", "encoder"],
        "the encoder is chosen with --backbone, --patch-size and --stem (its random-init baseline must match)",
    )?;
    if args.stream && args.finetune_epochs > 0 {
        bail!("--finetune-epochs needs the data in memory; drop --stream or --finetune-epochs");
    }
    let preset = match (args.augment.as_str(), channels) {
        ("auto", 1) => "digits",
        ("auto", _) => methods::default_augment(&args.method),
        (a, _) => a,
    };
    let views = ViewAugment::preset(preset, size).with_context(|| {
        format!("unknown augmentation `{preset}`; expected auto, simclr, moco-v2, byol, mae or digits")
    })?;
    let views: Vec<ViewAugment> = views
        .into_iter()
        .map(|a| match (channels, a.mean.len()) {
            (3, 1) => ViewAugment { mean: vec![a.mean[0]; 3], std: vec![a.std[0]; 3], ..a },
            // Grey images under a colour preset: the channel-averaged statistics.
            (1, 3) => {
                let avg = |v: &[f32]| vec![v.iter().sum::<f32>() / 3.0];
                ViewAugment { mean: avg(&a.mean), std: avg(&a.std), ..a }
            }
            _ => a,
        })
        .collect();
    // The evaluation transform (resize and normalise) is shared by the views.
    let aug = views[0].clone();
    if run.is_main() {
        eprintln!(
            "{}: {} train / {} test images{}, {}x{}x{}, {} classes; device {}",
            data.name(),
            train_n,
            test_n,
            if args.stream { " (streamed)" } else { "" },
            channels,
            size,
            size,
            data.classes().len(),
            run.describe()
        );
    }

    let backbone = backbone_config(args, channels, size as i64)?;
    // Fine-tuning's flags fail now, not after pretraining.
    finetune_drop_path(args, &backbone)?;
    if let BackboneConfig::Vit(v) = &backbone {
        finetune_pool(args, v.pool)?;
    } else if args.finetune_pool.is_some() {
        bail!("--finetune-pool: only ViT backbones pool tokens");
    }
    if args.finetune_batch_size.is_some_and(|b| b < 2) {
        bail!("--finetune-batch-size must be at least 2 (BatchNorm needs two samples)");
    }
    finetune_mixup(args).check()?;
    let local_crops = args.local_crops.unwrap_or(methods::default_local_crops(&args.method, size));
    if local_crops > 0 && !methods::takes_local_crops(&args.method) {
        bail!("--local-crops {local_crops}: {} trains on two views; multi-crop is for dino", args.method);
    }
    let mut views = views;
    if local_crops > 0 {
        let patch = match &backbone {
            BackboneConfig::Vit(v) => v.patch_size as usize,
            BackboneConfig::ResNet(_) => 1,
        };
        let local = args.local_size.map_or_else(|| ViewAugment::local_size(size, patch), |s| s as usize);
        if !local.is_multiple_of(patch) {
            bail!("--local-size {local} is not a multiple of the ViT's patch size {patch}");
        }
        views.extend(ViewAugment::local_crops(&views[0], local_crops, local));
    }
    let optimizer =
        methods::optimizer(&recipe, batch_size, args.optimizer.as_deref(), args.lr, args.weight_decay)?;
    let epochs = args.epochs.unwrap_or(recipe.epochs);
    let mut train_cfg = TrainConfig {
        epochs,
        optimizer,
        final_lr: 0.0,
        grad_clip: args.grad_clip,
        keep_checkpoints: 2,
        online_probe_classes: (!args.unlabeled).then_some(data.classes().len()),
        monitor_every: args.knn_every.max(1),
        ..TrainConfig::default()
    };
    // Checkpoints every 5 epochs; the recipe's warmup.
    args.run.apply_to(&mut train_cfg, 5, recipe.warmup_epochs);
    let out = args.run.run_dir(|| PathBuf::from("runs").join(format!("{}-{}", args.method, data.name())));
    if let ssl_cli::EarlierSeed::Finished(kept) = run.earlier_seed(&args.run, &out)? {
        return Ok(kept);
    }
    if run.is_main() && !args.run.print_config {
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    }
    let mut config = json!({
        "recipe": args.recipe, "method": args.method, "data": args.data, "dataset": data.name(), "stream": args.stream,
        "pretrain_images": pretrain_n,
        "image_size": size, "device": device_name(device),
        "world_size": run.group.world_size(), "sync_bn": args.run.sync_bn,
        "seed": seed, "batch_size": batch_size, "train": train_cfg,
        "augment": {"preset": preset, "views": views}, "torch_threads": tch::get_num_threads(),
    });
    let mut vs = nn::VarStore::new(device);
    let (mut method, model_cfg) =
        methods::build(&args.method, &vs, &backbone, args.temperature, &args.run.set)?;
    if let Some(file) = &args.init {
        let r = ssl_vision::weights::init_backbone_under(file, args.init_prefix.as_deref(), &vs, &backbone)?;
        if run.is_main() {
            eprintln!("{}", r.summary());
        }
        config["init"] = json!(r);
    }
    let channels_last = match args.channels_last.as_str() {
        "auto" | "on" => true,
        "off" => false,
        o => bail!("unknown --channels-last `{o}`; expected auto, on or off"),
    };
    if channels_last {
        channels_last_(&vs);
    }
    let on_device = match args.augment_on.as_str() {
        "auto" => false,
        "device" => true,
        "cpu" => false,
        o => bail!("unknown --augment-on `{o}`; expected auto, cpu or device"),
    };
    config["model"] = model_cfg;
    config["channels_last"] = json!(channels_last);
    config["augment_on_device"] = json!(on_device);
    ssl_cli::record_args(&mut config, given, &out)?;
    // --resume refuses settings that would change the run; a longer
    // --epochs is allowed and said.
    if let Some(note) = ssl_cli::check_resume_in(&out, &config, args.run.resume)? {
        if run.is_main() {
            eprintln!("{note}");
        }
    }
    if ssl_cli::print_config(&args.run, &config) {
        return Ok(None);
    }
    if run.is_main() {
        write_json_atomic(&out.join("config.json"), &config)?;
    }
    let (source, train_x, test_x): (
        Box<dyn BatchSource + '_>,
        Box<dyn InputChunks + '_>,
        Box<dyn InputChunks + '_>,
    ) = match &data {
        Loaded::Memory(d) => {
            if on_device && local_crops > 0 {
                bail!(
                    "--augment-on device makes views of one size; multi-crop (--local-crops) runs on the CPU"
                );
            }
            let set = pretrain.as_ref().unwrap_or(&d.train);
            let source: Box<dyn BatchSource> = if on_device {
                Box::new(GpuViewSource::with_views(set, views.clone(), batch_size, seed, device)?)
            } else {
                Box::new(ViewSource::with_views(set, views.clone(), batch_size, seed))
            };
            (source, Box::new(eval_tensor(&d.train, &aug)), Box::new(eval_tensor(&d.test, &aug)))
        }
        Loaded::Streamed(f) => {
            if on_device {
                bail!("--augment-on device keeps the data on the device; a streamed folder is augmented on the CPU");
            }
            (
                Box::new(
                    StreamingViewSource::new(&f.train, views.clone(), batch_size, seed)
                        .with_min_side(if args.allow_upscale { 0 } else { size }),
                ),
                Box::new(StreamedEval { set: &f.train, aug: &aug }),
                Box::new(StreamedEval { set: &f.test, aug: &aug }),
            )
        }
    };
    let (train_labels, test_labels) = data.labels();
    let monitor = KnnMonitor {
        train_x: train_x.as_ref(),
        train_y: tch::Tensor::from_slice(train_labels),
        test_x: test_x.as_ref(),
        test_y: tch::Tensor::from_slice(test_labels),
        num_classes: data.classes().len(),
        device,
    };
    let trainer = Trainer::new(train_cfg, device, &out, config).with_stop(ssl_cli::stop_flag()?);
    let monitor = (args.knn_every > 0).then_some(&monitor as &dyn ssl_core::trainer::EpochMonitor);
    let summary =
        trainer.fit_with_monitor(method.as_mut(), &mut vs, source.as_ref(), args.run.resume, monitor)?;
    if !run.is_main() {
        // Rank 0 evaluates and reports; the other ranks are done.
        return Ok(None);
    }
    ssl_core::checkpoint::save_weights(&vs, &out.join("model.safetensors"))?;
    // The backbone alone under torchvision's or timm's names, with a
    // TorchScript trace and features on four test images to check both.
    let sample = test_x.chunk(0, test_x.len().min(4))?;
    ssl_vision::weights::export_backbone(&vs, &backbone, &aug, &sample, &out)?;

    eprintln!("evaluating (kNN k=200 T=0.1, linear probe) ...");
    let ssl = evaluate(
        &|x| method.features(x),
        &data,
        train_x.as_ref(),
        test_x.as_ref(),
        device,
        &out.join("pca_ssl.png"),
        &format!("Test embeddings, {} encoder", args.method),
        seed,
    )?;
    // The same architecture, freshly initialised with the same seed.
    seed_everything(seed);
    let random_vs = nn::VarStore::new(device);
    let random = Backbone::new(&(random_vs.root() / "backbone"), &backbone);
    if channels_last {
        channels_last_(&random_vs);
    }
    let rnd = evaluate(
        &|x| random.forward_t(x, false),
        &data,
        train_x.as_ref(),
        test_x.as_ref(),
        device,
        &out.join("pca_random_init.png"),
        "Test embeddings, random init",
        seed,
    )?;
    // The pictures are for the page only: a failure is a warning.
    let mut pictures = Vec::new();
    for (e, encoder) in [(&ssl, format!("{} encoder", args.method)), (&rnd, "random init".into())] {
        match neighbours_picture(e, &data, &encoder) {
            Ok(p) => pictures.push(p),
            Err(err) => {
                eprintln!("warning: no nearest-neighbour picture for report.html ({encoder}): {err:#}")
            }
        }
    }
    // The features go here (they can be large); the probes and plots stay.
    let (ssl, ssl_scatter) = ssl.into_parts();
    let (rnd, rnd_scatter) = rnd.into_parts();
    let extras = ssl_core::html_report::Extras { scatters: vec![ssl_scatter, rnd_scatter], pictures };

    let finetune = if let (Loaded::Memory(data), true) = (&data, args.finetune_epochs > 0) {
        let cfg = FineTuneConfig {
            epochs: args.finetune_epochs,
            batch_size: args.finetune_batch_size.unwrap_or(batch_size),
            lr: args.finetune_lr,
            weight_decay: 0.05,
            seed,
            layer_decay: Some(args.layer_decay),
            mixup: finetune_mixup(args),
            drop_path: finetune_drop_path(args, &backbone)?,
            pool: match &backbone {
                BackboneConfig::Vit(v) => Some(finetune_pool(args, v.pool)?),
                BackboneConfig::ResNet(_) => None,
            },
        };
        // Stochastic depth and pooling change the forward pass only, not
        // the weights.
        let ft_backbone = match &backbone {
            BackboneConfig::Vit(v) => BackboneConfig::Vit(
                v.clone().with_drop_path(cfg.drop_path).with_pool(cfg.pool.unwrap_or(v.pool)),
            ),
            other => other.clone(),
        };
        let test_y = tch::Tensor::from_slice(&data.test.labels);
        let classes = data.classes.len();
        let test_x = eval_tensor(&data.test, &aug);
        let rows = ssl_core::finetune::over_fractions(
            &args.finetune_fractions,
            &data.train.labels,
            cfg.batch_size,
            cfg.epochs,
            seed,
            |plan, subset| -> Result<_> {
                let part;
                let set = match subset {
                    Some(ids) => {
                        part = data.train.subset(ids);
                        &part
                    }
                    None => &data.train,
                };
                let cfg = FineTuneConfig { epochs: plan.epochs, batch_size: plan.batch_size, ..cfg.clone() };
                // Fresh copies each time: fine-tuning changes the weights.
                let ssl_vs = nn::VarStore::new(device);
                let ssl_backbone = Backbone::new(&ssl_vs.root(), &ft_backbone);
                copy_backbone(&vs, &ssl_vs)?;
                seed_everything(seed);
                let rnd_vs = nn::VarStore::new(device);
                let rnd_backbone = Backbone::new(&(rnd_vs.root() / "backbone"), &ft_backbone);
                if channels_last {
                    channels_last_(&ssl_vs);
                    channels_last_(&rnd_vs);
                }
                let ft_ssl = fine_tune(&ssl_backbone, &ssl_vs, set, &aug, classes, &test_x, &test_y, &cfg)?;
                let ft_rnd = fine_tune(&rnd_backbone, &rnd_vs, set, &aug, classes, &test_x, &test_y, &cfg)?;
                Ok((ft_ssl, ft_rnd))
            },
        )?;
        Some((rows, cfg))
    } else {
        None
    };

    let wall = started.elapsed().as_secs_f64();
    let report = json!({
        "recipe": args.recipe,
        "method": args.method,
        "dataset": data.name(),
        "epochs": summary.epochs,
        "wall_s": wall,
        "device": device_name(device),
        "train": summary,
        "train_images": train_n,
        "pretrain_images": pretrain_n,
        "test_images": test_n,
    });
    let headline = format!(
        "{} on {} ({} epochs, {:.0} s, {})",
        args.method,
        data.name(),
        summary.epochs,
        wall,
        device_name(device)
    );
    let finetune = finetune.as_ref().map(|(rows, cfg)| (rows.as_slice(), json!(cfg)));
    Ok(Some(ssl_cli::finish_run(out, report, &headline, (&ssl, &rnd), finetune, &extras)?))
}
