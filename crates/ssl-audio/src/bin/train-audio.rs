//! `train-audio`: self-supervised pretraining of an audio encoder (COLA,
//! BYOL-A or masked spectrogram modelling), then kNN and linear-probe
//! evaluation of the pretrained encoder and of the same architecture at
//! random initialisation, on the same split; optionally fine-tuning of
//! both.
//!
//! Run through `cargo xtask train-audio [ARGS]`. With no arguments it
//! pretrains COLA on the bundled spoken keywords (in background noise) on
//! the CPU.

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::json;
use ssl_audio::augment::RandomEq;
use ssl_audio::data;
use ssl_audio::encoder::{AudioEncoder, AudioEncoderConfig};
use ssl_audio::frontend::LogMelConfig;
use ssl_audio::methods::{self, ENCODER_PREFIXES};
use ssl_audio::views::{AudioInput, AudioViewSource, ViewRecipe};
use ssl_core::device::{device_name, seed_everything};
use ssl_core::eval::{evaluate_encoder, extract_features, Evaluated, KnnMonitor};
use ssl_core::finetune::{copy_encoder, fine_tune, FineTuneRecipe};
use ssl_core::metrics::write_json_atomic;
use ssl_core::optim::OptimizerConfig;
use ssl_core::trainer::{TrainConfig, Trainer};
use ssl_core::vit::Pool;
use std::path::PathBuf;
use std::time::Instant;
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Parser, Debug, Clone, serde::Serialize)]
#[command(
    version,
    about = "Self-supervised pretraining and evaluation of an audio encoder",
    args_override_self = true,
    mut_arg("out", |a| a.help("Run folder (config.json, metrics.jsonl, checkpoints/, report.json). Default: runs/<method>-<dataset>")),
    mut_arg("resume", |a| a.help("Continue from the run folder's latest checkpoint (weights, optimizer, BYOL-A's target)")),
    mut_arg("checkpoint_every", |a| a.help("Checkpoint every N epochs (the last one always) [default: 5]"))
)]
struct Args {
    /// Method: cola, byol-a or msm (masked spectrogram modelling).
    #[arg(long, default_value = "cola")]
    method: String,
    /// Data: bundled (the spoken keywords in white noise at 0-20 dB SNR;
    /// compiled into the binary and written to OUT/data/keywords, or
    /// runs/data/keywords without --out) | bundled-clean | folder:DIR (DIR/{train,test}/<class>/*.wav) |
    /// manifest:TRAIN,TEST (files of `path<TAB or ,>label` lines).
    #[arg(long, default_value = "bundled")]
    data: String,
    /// WAV files under DIR (found recursively) added to the pretraining set
    /// only.
    #[arg(long)]
    unlabeled: Option<PathBuf>,
    /// Hold out this fraction of each class's training clips and evaluate
    /// on them instead of the test split (for choosing recipes; the
    /// bundled set's validation clips share the training voices).
    #[arg(long, conflicts_with = "val_speakers")]
    val_fraction: Option<f64>,
    /// Hold out the training clips whose file name contains one of these
    /// comma-separated patterns (speaker IDs, e.g. `_f3_,_klatt2_` for two
    /// of the bundled set's training voices) and evaluate on them instead
    /// of the test split: a validation split of unseen voices.
    #[arg(long, value_delimiter = ',')]
    val_speakers: Option<Vec<String>>,
    /// Pretraining epochs (default: the method's recipe).
    #[arg(long)]
    epochs: Option<usize>,
    /// Batch size: the clips of one optimizer step, over all ranks (at
    /// least 2: BatchNorm and the contrastive losses need two clips).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(2..))]
    batch_size: u64,
    /// Encoder: cnn (BYOL-A's), cnn-v2 (BYOL-A v2's: two blocks, their
    /// features stacked beside the MLP's, 3,072 wide for 64 bands) or
    /// transformer (8x8 patches; needed by msm). Default: the method's.
    #[arg(long)]
    encoder: Option<String>,
    /// How the transformer pools its patch tokens: `mean` (Audio-MAE's) or
    /// `stacked` (each time step's tokens concatenated over frequency, then
    /// the mean over time: MSM-MAE's, the default).
    #[arg(long, value_parser = ["mean", "stacked"])]
    pool: Option<String>,
    /// Start the encoder (every copy: BYOL-A's online branch and its
    /// target) from a safetensors file: an ssl-rs run's `model.safetensors`
    /// or `backbone.safetensors`, or a timm ViT state dict for the
    /// transformer. The encoder flags must describe the file's
    /// architecture; missing, mis-shaped and unexpected tensors are named.
    #[arg(long, value_name = "FILE")]
    init: Option<std::path::PathBuf>,
    /// With `--init`: the prefix of the encoder's tensors in the file
    /// (`target.encoder.`: BYOL-A's momentum copy in a run's
    /// `model.safetensors`). Default: found by matching the encoder's
    /// names (the online copy in an ssl-rs run).
    #[arg(long, value_name = "PREFIX", requires = "init")]
    init_prefix: Option<String>,
    /// Peak learning rate (default: the method's recipe).
    #[arg(long, value_parser = ssl_cli::positive)]
    lr: Option<f64>,
    /// BYOL-A's largest mixup ratio (the paper's: 0.4; ssl-rs's recipe: 0,
    /// no mixup, chosen on the keywords). Each view's partner is another
    /// clip of the batch.
    #[arg(long, value_parser = ssl_cli::non_negative)]
    mixup: Option<f64>,
    /// BYOL-A's waveform views: `paper` (one lightly augmented waveform,
    /// both spectrogram views made from it) or `cola` (each spectrogram
    /// view from its own waveform view with COLA's speed, shift, gain and
    /// noise draws; the recipe's since 2026-12-06).
    #[arg(long, value_parser = ["paper", "cola"])]
    byol_a_waves: Option<String>,
    /// BYOL-A's random resized crop of the log-mel: the box's size relative
    /// to the spectrogram, `LO,HI` in each axis (the recipe's: 0.6,1.5, on
    /// a canvas 1.5 times as long; `1,1` keeps every band and only shifts
    /// the frames).
    #[arg(long, value_delimiter = ',', num_args = 1)]
    spec_crop: Option<Vec<f64>>,
    /// Add white noise to every pretraining view at a signal-to-noise ratio
    /// drawn in `LO,HI` dB (the recipes': COLA's and BYOL-A's 0,20 on every
    /// view; MSM's none), so that two views of a clip differ in their noise
    /// level.
    #[arg(long, value_delimiter = ',', num_args = 1)]
    view_snr: Option<Vec<f64>>,
    /// Speed perturbation of the pretraining views' waveforms, `LO,HI`
    /// (COLA's recipe: 0.85,1.15; pitch and tempo change together).
    #[arg(long, value_delimiter = ',', num_args = 1)]
    view_speed: Option<Vec<f64>>,
    /// A random equaliser on the pretraining views' waveforms, `BANDS,DB`:
    /// BANDS peaking filters per view, centres 100 Hz-6 kHz (below 0.45 ×
    /// the sample rate), gains within ±DB, Q 0.5-4, to change the spectral
    /// envelope as another voice or microphone would (default: none; `0,0`
    /// turns a recipe's off).
    #[arg(long, value_delimiter = ',', num_args = 1)]
    view_eq: Option<Vec<f64>>,
    /// Standardise each window's log-mel by its own mean and standard
    /// deviation too (after the training set's), for pretraining and every
    /// evaluation alike: removes each clip's level and most of its
    /// background noise floor. Recorded in backbone.json, so `embed` does
    /// the same. Default: the method's (on for byol-a, off for cola and
    /// msm); `--per-clip-norm false` turns it off.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    per_clip_norm: Option<bool>,
    /// Model sample rate: clips are resampled to it.
    #[arg(long, default_value_t = 16_000)]
    sample_rate: u32,
    /// Mel bands (a multiple of 8).
    #[arg(long, default_value_t = 64)]
    n_mels: i64,
    /// Frames per window (10 ms hop; 96 frames = 0.95 s).
    #[arg(long, default_value_t = 96)]
    frames: i64,
    /// Run the kNN monitor every N epochs (and after the last); 0 disables it.
    #[arg(long, default_value_t = 5)]
    knn_every: usize,
    /// Fine-tune the pretrained encoder and the random-init one with labels
    /// for N epochs after the frozen evaluations (0: skip).
    #[arg(long, default_value_t = 10)]
    finetune_epochs: usize,
    /// Peak learning rate of fine-tuning (AdamW).
    #[arg(long, default_value_t = 1e-3, value_parser = ssl_cli::positive)]
    finetune_lr: f64,
    /// Fractions of the training labels to fine-tune on (class-balanced,
    /// fixed by the seed, the linear probes' subsets); each trains for as
    /// many steps as the run on all labels.
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1,1")]
    finetune_fractions: Vec<f64>,
    /// Fine-tune both encoders in evaluation mode (BatchNorm on its
    /// running statistics, which stay put; dropout off). Default: when the
    /// method kept its encoder in evaluation mode in pretraining (BYOL-A's
    /// recipe), else not; the random-init encoder always fine-tunes as the
    /// pretrained one does. `--finetune-eval-mode false` turns it off.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    finetune_eval_mode: Option<bool>,
    /// Shared run options.
    #[command(flatten)]
    #[serde(flatten)]
    run: ssl_cli::RunArgs,
}

/// kNN and linear probe of an encoder, and the plot of its test
/// embeddings (`title`, written to `plot` too).
#[allow(clippy::too_many_arguments)]
fn evaluate(
    features: &dyn Fn(&Tensor) -> Tensor,
    (train_x, train_y): (&Tensor, &Tensor),
    (test_x, test_y): (&Tensor, &Tensor),
    classes: &[String],
    device: tch::Device,
    seed: u64,
    title: &str,
    plot: &std::path::Path,
) -> Result<Evaluated> {
    let tr = extract_features(features, train_x, 256, device);
    let te = extract_features(features, test_x, 256, device);
    Ok(evaluate_encoder(tr, train_y, te, test_y, classes, seed, title, plot)?)
}

/// What `--seeds` summarises.
const SEED_SPEC: ssl_core::seeds::SeedSpec =
    ssl_core::seeds::SeedSpec { figures: &["ssl", "random_init", "wall_s"], paired: ("ssl", "random_init") };

fn main() -> Result<()> {
    // Activations are freed and allocated again every step: keep their
    // pages unless $SSL_RS_CPU_ALLOCATOR says otherwise.
    ssl_core::device::tune_cpu_allocator()?;
    let args: Args = ssl_cli::parse();
    let result =
        ssl_cli::over_seeds(&args.run, &SEED_SPEC, |run| train(&Args { run: run.clone(), ..args.clone() }));
    if let Err(e) = &result {
        // A SIGTERM or SIGINT: the checkpoint is written; say how to resume.
        ssl_cli::exit_if_interrupted(e);
    }
    result
}

/// One run (one seed); its folder and report on rank 0.
fn train(args: &Args) -> Result<Option<ssl_cli::Finished>> {
    let started = Instant::now();
    let run = args.run.start()?;
    let device = run.device;
    let seed = run.seed;
    if !methods::METHODS.contains(&args.method.as_str()) {
        bail!("unknown --method `{}` (expected one of {})", args.method, methods::METHODS.join(", "));
    }
    if args.n_mels <= 0 || args.n_mels % 8 != 0 {
        bail!("--n-mels {} must be a positive multiple of 8", args.n_mels);
    }
    ssl_cli::check_fractions(&args.finetune_fractions)?;
    ssl_cli::refuse_set(
        &args.run.set,
        &["encoder"],
        "the encoder is chosen with --encoder and its flags (its random-init baseline must match)",
    )?;
    if args.frames < 16 {
        bail!("--frames {} is too short (at least 16)", args.frames);
    }

    // The bundled clips are compiled in and written out beside the runs
    // (OUT/data/, or runs/data/), once for all seeds: rank 0 writes them,
    // the others read them once it has.
    let bundled_dir = args.run.out.clone().unwrap_or_else(|| PathBuf::from("runs")).join("data");
    if matches!(args.data.as_str(), "bundled" | "bundled-clean") {
        if run.is_main() {
            data::write_keywords(&bundled_dir)?;
        }
        run.group.barrier()?;
    }
    let (data, dataset) = data::load_spec(&args.data, &bundled_dir)?;
    if let (Some(dir), true) = (args.data.strip_prefix("folder:"), run.is_main()) {
        ssl_cli::note_unread(
            &ssl_cli::unread_files(dir.as_ref(), data::reads_file),
            dir,
            "not .wav clips of a class",
        );
    }
    let (data, dataset) = match (args.val_fraction, &args.val_speakers) {
        (Some(f), _) => (data.validation_split(f, seed)?, format!("{dataset}-val")),
        (None, Some(p)) => (data.validation_by_name(p)?, format!("{dataset}-val-speakers")),
        (None, None) => (data, dataset),
    };
    let classes = data.classes.len();
    if classes < 2 {
        bail!("{}: need at least two classes, found {classes}", args.data);
    }
    if run.is_main() {
        eprintln!(
            "decoding {} training and {} test clips ...",
            data.train.files.len(),
            data.test.files.len()
        );
    }
    let train_clips = data::decode_spec(&args.data, &data.train, args.sample_rate, false)
        .context("reading the training clips")?;
    let test_clips = data::decode_spec(&args.data, &data.test, args.sample_rate, true)
        .context("reading the test clips")?;
    let unlabeled_files = match &args.unlabeled {
        Some(dir) => data::unlabeled(dir)?,
        None => Vec::new(),
    };
    let unlabeled_clips =
        data::load_clips(&unlabeled_files, args.sample_rate).context("reading --unlabeled clips")?;

    let frontend =
        LogMelConfig { sample_rate: args.sample_rate, n_mels: args.n_mels, ..LogMelConfig::default() };
    let per_clip = args.per_clip_norm.unwrap_or_else(|| methods::default_per_clip_norm(&args.method));
    let input = AudioInput { per_clip, ..AudioInput::fit(frontend, args.frames, &train_clips) };
    let encoder: AudioEncoderConfig = match args.encoder.as_deref() {
        None => methods::default_encoder(&args.method, &input),
        Some("cnn") => methods::cnn(&input),
        Some("cnn-v2") => methods::cnn_v2(&input),
        Some("transformer") => methods::transformer(&input),
        Some(other) => bail!("unknown --encoder `{other}` (expected cnn, cnn-v2 or transformer)"),
    };
    let encoder = match (encoder, args.pool.as_deref()) {
        (e, None) => e,
        (AudioEncoderConfig::Transformer(v), Some(p)) => {
            // clap lets through only `mean` and `stacked`.
            let pool = if p == "stacked" { Pool::Stacked } else { Pool::Mean };
            AudioEncoderConfig::Transformer(v.with_pool(pool))
        }
        (AudioEncoderConfig::Cnn(_), Some(_)) => {
            bail!("--pool is the transformer's (--encoder transformer); the CNN pools max + mean over time")
        }
    };
    encoder.check()?;
    let mut recipe = methods::recipe(&args.method, &input)?;
    if let Some(w) = &args.byol_a_waves {
        if args.method != "byol-a" {
            bail!("--byol-a-waves is BYOL-A's (--method byol-a), not {}'s", args.method);
        }
        // The recipe's mixup ratio stays.
        let mixup = match recipe.views {
            ViewRecipe::ByolA { mixup, .. } => mixup,
            _ => 0.0,
        };
        recipe.views = match w.as_str() {
            "cola" => ViewRecipe::byol_a_on_cola_waves(input.clip_len),
            _ => ViewRecipe::byol_a(input.clip_len),
        }
        .with_mixup(mixup);
    }
    if let Some(m) = args.mixup {
        match &mut recipe.views {
            ViewRecipe::ByolA { mixup, .. } if (0.0..=1.0).contains(&m) => *mixup = m,
            ViewRecipe::ByolA { .. } => bail!("--mixup {m}: expected a ratio in [0, 1]"),
            _ => bail!("--mixup is BYOL-A's (--method byol-a), not {}'s", args.method),
        }
    }
    if let Some(v) = &args.spec_crop {
        match (&mut recipe.views, &v[..]) {
            (ViewRecipe::ByolA { crop, .. }, &[lo, hi]) if lo > 0.0 && lo <= hi && hi <= 10.0 => {
                crop.scale = (lo, hi)
            }
            (ViewRecipe::ByolA { .. }, _) => {
                bail!("--spec-crop expects LO,HI with 0 < LO <= HI <= 10, got {v:?}")
            }
            _ => bail!("--spec-crop is BYOL-A's (--method byol-a), not {}'s", args.method),
        }
    }
    if let Some(v) = &args.view_snr {
        match v[..] {
            [lo, hi] if lo.is_finite() && hi.is_finite() && lo <= hi => {
                let wave = recipe.views.wave_mut();
                (wave.noise_p, wave.snr_db) = (1.0, (lo, hi));
            }
            _ => bail!("--view-snr expects LO,HI in dB with LO <= HI, got {v:?}"),
        }
    }
    if let Some(v) = &args.view_speed {
        match v[..] {
            [lo, hi] if lo >= 0.1 && lo <= hi && hi <= 10.0 => recipe.views.wave_mut().speed = (lo, hi),
            _ => bail!("--view-speed expects LO,HI with 0.1 <= LO <= HI <= 10, got {v:?}"),
        }
    }
    if let Some(v) = &args.view_eq {
        let rate = f64::from(args.sample_rate);
        recipe.views.wave_mut().eq = match v[..] {
            [bands, db]
                if bands.fract() == 0.0 && (0.0..=64.0).contains(&bands) && (0.0..=40.0).contains(&db) =>
            {
                (bands > 0.0 && db > 0.0).then(|| RandomEq::new(rate, bands as usize, db))
            }
            _ => bail!(
                "--view-eq expects BANDS,DB with BANDS a whole number in 0..=64 and 0 <= DB <= 40, got {v:?}"
            ),
        };
    }
    let epochs = args.epochs.unwrap_or(recipe.epochs);
    let mut optimizer = recipe.optimizer.clone();
    if let Some(lr) = args.lr {
        optimizer.lr = lr;
    }

    // Pretraining sees the training clips and any unlabelled ones; the
    // online probe only runs when every clip has a label.
    let mut pretrain_clips = train_clips.clone();
    pretrain_clips.extend(unlabeled_clips);
    let mut pretrain_labels = data.train.labels.clone();
    pretrain_labels.resize(pretrain_clips.len(), 0);
    let batch_size = args.batch_size as usize;
    let what = if unlabeled_files.is_empty() { "training" } else { "training and unlabelled" };
    ssl_cli::check_batch_size(batch_size, pretrain_clips.len(), &format!("{what} clips of {}", args.data))?;

    let out = args.run.run_dir(|| {
        PathBuf::from("runs").join(format!("{}-{}", args.method, dataset.replace([':', '/', ','], "_")))
    });
    if let ssl_cli::EarlierSeed::Finished(kept) = run.earlier_seed(&args.run, &out)? {
        return Ok(kept);
    }
    if run.is_main() && !args.run.print_config {
        std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    }
    let mut train_cfg = TrainConfig {
        epochs,
        optimizer,
        final_lr: 0.0,
        grad_clip: Some(3.0),
        keep_checkpoints: 2,
        online_probe_classes: args.unlabeled.is_none().then_some(classes),
        monitor_every: args.knn_every.max(1),
        ..TrainConfig::default()
    };
    // Checkpoints every 5 epochs, 2 warmup epochs.
    args.run.apply_to(&mut train_cfg, 5, 2);
    let mut vs = nn::VarStore::new(device);
    let methods::Built { mut method, config: model_cfg, encoder_eval_mode: pretrained_eval_mode } =
        methods::build(&args.method, &vs, &encoder, &args.run.set)?;
    let init = match &args.init {
        Some(file) => {
            let r = ssl_audio::weights::init_encoder_under(file, args.init_prefix.as_deref(), &vs, &encoder)?;
            if run.is_main() {
                eprintln!("{}", r.summary());
            }
            Some(r)
        }
        None => None,
    };
    let mut config = json!({
        "method": args.method,
        "dataset": dataset,
        "world_size": run.group.world_size(),
        "sync_bn": args.run.sync_bn,
        "seed": seed,
        "input": input,
        "encoder": encoder,
        "model": model_cfg,
        "views": recipe.views,
        "train": train_cfg,
        "batch_size": batch_size,
        "classes": data.classes,
    });
    if let Some(r) = init {
        config["init"] = json!(r);
    }
    ssl_cli::record_args(&mut config, args, &out)?;
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

    let source = AudioViewSource::new(
        &pretrain_clips,
        &pretrain_labels,
        &input,
        recipe.views.clone(),
        batch_size,
        seed,
    );
    let train_x = input.spectrograms(&train_clips);
    let test_x = input.spectrograms(&test_clips);
    let train_y = Tensor::from_slice(&data.train.labels);
    let test_y = Tensor::from_slice(&data.test.labels);
    let monitor = KnnMonitor {
        train_x: &train_x,
        train_y: train_y.shallow_clone(),
        test_x: &test_x,
        test_y: test_y.shallow_clone(),
        num_classes: classes,
        device,
    };
    if run.is_main() {
        eprintln!(
            "pretraining {} ({} encoder) on {} clips ({} unlabelled) for {epochs} epochs on {} ...",
            args.method,
            match &encoder {
                AudioEncoderConfig::Cnn(c) if c.stack => "cnn-v2",
                AudioEncoderConfig::Cnn(_) => "cnn",
                AudioEncoderConfig::Transformer(_) => "transformer",
            },
            pretrain_clips.len(),
            unlabeled_files.len(),
            run.describe()
        );
    }
    let trainer = Trainer::new(train_cfg, device, &out, config).with_stop(ssl_cli::stop_flag()?);
    let monitor = (args.knn_every > 0).then_some(&monitor as &dyn ssl_core::trainer::EpochMonitor);
    let summary = trainer.fit_with_monitor(method.as_mut(), &mut vs, &source, args.run.resume, monitor)?;
    if !run.is_main() {
        // Rank 0 evaluates and reports; the other ranks are done.
        return Ok(None);
    }
    ssl_core::checkpoint::save_weights(&vs, &out.join("model.safetensors"))?;
    // The encoder alone, with a TorchScript trace and features on four test
    // spectrograms to check both.
    let sample = test_x.narrow(0, 0, test_x.size()[0].min(4));
    ssl_audio::weights::export_encoder(&vs, &encoder, &input, &sample, &out)?;

    eprintln!("evaluating (kNN k=min(200, train per class) T=0.1, linear probe) ...");
    let ssl = evaluate(
        &|x| method.features(x),
        (&train_x, &train_y),
        (&test_x, &test_y),
        &data.classes,
        device,
        seed,
        &format!("Test embeddings, {} encoder", args.method),
        &out.join("pca_ssl.png"),
    )?;
    // The same architecture, freshly initialised with the same seed.
    seed_everything(seed);
    let random_vs = nn::VarStore::new(device);
    let random = AudioEncoder::new(&random_vs.root(), &encoder);
    let rnd = evaluate(
        &|x| random.forward_t(x, false),
        (&train_x, &train_y),
        (&test_x, &test_y),
        &data.classes,
        device,
        seed,
        "Test embeddings, random init",
        &out.join("pca_random_init.png"),
    )?;
    // The features go here; the probes and plots stay.
    let (ssl, ssl_scatter) = ssl.into_parts();
    let (rnd, rnd_scatter) = rnd.into_parts();
    let extras =
        ssl_core::html_report::Extras { scatters: vec![ssl_scatter, rnd_scatter], pictures: Vec::new() };

    let finetune_eval_mode = args.finetune_eval_mode.unwrap_or(pretrained_eval_mode);
    let finetune = if args.finetune_epochs > 0 {
        let opt = OptimizerConfig::adamw(args.finetune_lr, 0.05);
        let dim = encoder.feature_dim();
        let rows = ssl_core::finetune::over_fractions(
            &args.finetune_fractions,
            &data.train.labels,
            batch_size,
            args.finetune_epochs,
            seed,
            |plan, subset| -> Result<_> {
                use std::borrow::Cow;
                let (clips, labels): (Cow<[Vec<f32>]>, Cow<[i64]>) = match subset {
                    Some(ids) => (
                        Cow::Owned(ids.iter().map(|&i| train_clips[i].clone()).collect()),
                        Cow::Owned(ids.iter().map(|&i| data.train.labels[i]).collect()),
                    ),
                    None => (Cow::Borrowed(&train_clips), Cow::Borrowed(&data.train.labels)),
                };
                let ft_source = AudioViewSource::new(
                    &clips,
                    &labels,
                    &input,
                    ViewRecipe::single(input.clip_len),
                    plan.batch_size,
                    seed,
                );
                // Fresh copies each time: fine-tuning changes the weights.
                let ssl_vs = nn::VarStore::new(device);
                let ssl_encoder = AudioEncoder::new(&ssl_vs.root(), &encoder);
                copy_encoder(&vs, &ssl_vs, &ENCODER_PREFIXES)?;
                seed_everything(seed);
                let rnd_vs = nn::VarStore::new(device);
                let rnd_encoder = AudioEncoder::new(&rnd_vs.root(), &encoder);
                let run = |e: &AudioEncoder, evs: &nn::VarStore| {
                    let recipe = FineTuneRecipe {
                        seed,
                        encoder_eval_mode: finetune_eval_mode,
                        ..FineTuneRecipe::plain(plan.epochs, opt.clone())
                    };
                    fine_tune(e, evs, dim, &ft_source, classes, &test_x, &test_y, &recipe)
                };
                Ok((run(&ssl_encoder, &ssl_vs)?, run(&rnd_encoder, &rnd_vs)?))
            },
        )?;
        Some(rows)
    } else {
        None
    };

    let wall = started.elapsed().as_secs_f64();
    let report = json!({
        "method": args.method,
        "dataset": dataset,
        "epochs": summary.epochs,
        "wall_s": wall,
        "device": device_name(device),
        "train": summary,
        "encoder": encoder,
        "pretrain_clips": pretrain_clips.len(),
        "train_clips": train_clips.len(),
        "test_clips": test_clips.len(),
    });
    let headline = format!(
        "{} on {} ({} epochs, {:.0} s, {})",
        args.method,
        dataset,
        summary.epochs,
        wall,
        device_name(device)
    );
    let finetune_config = json!({
        "epochs": args.finetune_epochs,
        "lr": args.finetune_lr,
        "weight_decay": 0.05,
        "encoder_eval_mode": finetune_eval_mode,
    });
    let finetune = finetune.as_ref().map(|rows| (rows.as_slice(), finetune_config));
    Ok(Some(ssl_cli::finish_run(out, report, &headline, (&ssl, &rnd), finetune, &extras)?))
}
