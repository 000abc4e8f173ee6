//! `make-keywords`: synthesises Speech Commands' ten command words with
//! espeak-ng into a `train/<word>/*.wav`, `test/<word>/*.wav` folder (see
//! `ssl_audio::synth`). `cargo xtask gen-keywords` runs it; with no
//! arguments it rewrites the bundled `datasets/keywords`.

use anyhow::{Context, Result};
use clap::Parser;
use ssl_audio::synth::{espeak_version, generate, KeywordSpec};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Synthesise spoken keywords with espeak-ng")]
struct Args {
    /// Output folder (replaced when it holds an earlier set).
    #[arg(long, default_value = "datasets/keywords")]
    out: PathBuf,
    /// Training clips per word.
    #[arg(long, default_value_t = KeywordSpec::default().train_per_word)]
    train_per_word: usize,
    /// Test clips per word (unseen voice variants).
    #[arg(long, default_value_t = KeywordSpec::default().test_per_word)]
    test_per_word: usize,
    /// Output sample rate.
    #[arg(long, default_value_t = 16_000)]
    sample_rate: u32,
    /// Seed of the voice, speed and pitch draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let version = espeak_version()?;
    let spec = KeywordSpec {
        train_per_word: args.train_per_word,
        test_per_word: args.test_per_word,
        sample_rate: args.sample_rate,
        seed: args.seed,
        ..Default::default()
    };
    for split in ["train", "test"] {
        let dir = args.out.join(split);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("cannot replace {}", dir.display()))?;
        }
    }
    let started = std::time::Instant::now();
    let files = generate(&args.out, &spec)?;
    let bytes: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    println!(
        "{} clips ({:.2} MB) in {} with {version} in {:.1} s",
        files.len(),
        bytes as f64 / 1e6,
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
