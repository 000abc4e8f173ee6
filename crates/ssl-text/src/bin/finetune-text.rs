//! `finetune-text`: the downstream comparison on its own. A pretrained
//! encoder (a `train-text` run's `hf/` folder, or any transformers BERT
//! folder with `config.json`, `model.safetensors` and `tokenizer.json`) and
//! the same architecture at random initialisation are each scored on
//! frozen pooled features (kNN, linear probes) and fine-tuned, on a
//! labelled folder (`train.jsonl`/`test.jsonl` or `.csv`, text and label):
//! the downstream half of `train-text`'s flow, with the same report.

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::json;
use ssl_core::device::{device_name, parse_device, seed_everything};
use ssl_text::finetune::{add_downstream, downstream, FineTuneConfig};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Fine-tune a pretrained text encoder and the same encoder from scratch on a labelled task"
)]
struct Args {
    /// Pretrained model folder (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// Labelled folder with train.jsonl and test.jsonl (or .csv).
    #[arg(long)]
    labeled: PathBuf,
    /// Fine-tuning epochs (0: linear probes only).
    #[arg(long, default_value_t = 8)]
    epochs: usize,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = 1e-3, value_parser = ssl_cli::positive)]
    lr: f64,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// auto | cpu | cuda | cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Fraction of the training labels used (stratified); 1: all.
    #[arg(long, default_value_t = 1.0, value_parser = ssl_cli::fraction)]
    label_fraction: f64,
    /// Fractions of the training labels to fine-tune on (class-balanced,
    /// fixed by the seed; each for as many optimizer steps as on all
    /// labels; 1: all), as train-text's.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    finetune_fractions: Vec<f64>,
    /// Fine-tuning's classifier starts at random (random) or from the
    /// linear probe's (probe: LP-FT).
    #[arg(long, default_value = "random")]
    head_init: String,
    /// Seed for the classifier heads and shuffling (and the from-scratch
    /// weights).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fine-tuning runs per encoder (seeds --seed, --seed + 1, …); the
    /// report gives their mean and each run.
    #[arg(long, default_value_t = 3)]
    seeds: usize,
    /// Where report.json goes (default: the model folder's parent's
    /// `finetune` folder, or runs/finetune-text).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let device = parse_device(&args.device)?;
    seed_everything(args.seed);
    let (cfg, vs, tok) = ssl_text::hf::load_pretrained(&args.model, device)
        .with_context(|| format!("loading --model {}", args.model.display()))?;
    let ft = FineTuneConfig {
        epochs: args.epochs,
        lr: args.lr,
        batch_size: args.batch_size,
        seed: args.seed,
        label_fraction: args.label_fraction,
        head_init: args.head_init.parse()?,
        seeds: args.seeds,
        ..FineTuneConfig::default()
    };
    if args.seeds < 1 {
        anyhow::bail!("--seeds must be at least 1");
    }
    ft.check()?;
    ssl_cli::check_fractions(&args.finetune_fractions)?;
    let out = args.out.unwrap_or_else(|| PathBuf::from("runs").join("finetune-text"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let d = downstream(&vs, &cfg, &tok, &args.labeled, &ft, &args.finetune_fractions, &out)?;
    let wall = started.elapsed().as_secs_f64();
    let mut report = json!({
        "model": args.model, "labeled": args.labeled, "device": device_name(device), "wall_s": wall,
    });
    let mut headline = format!(
        "{} on {} ({:.0} s, {})",
        args.model.display(),
        args.labeled.display(),
        wall,
        device_name(device)
    );
    add_downstream(&mut report, &mut headline, &d);
    let finetune = (!d.finetune.is_empty()).then(|| (d.finetune.as_slice(), json!(ft)));
    let extras = ssl_core::html_report::Extras { scatters: d.scatters.clone(), pictures: Vec::new() };
    ssl_cli::finish_run(out, report, &headline, (&d.ssl, &d.random_init), finetune, &extras)?;
    Ok(())
}
