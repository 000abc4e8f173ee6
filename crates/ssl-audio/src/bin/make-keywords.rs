//! `make-keywords`: synthesises ten spoken words into a
//! `train/<word>/*.wav`, `test/<word>/*.wav` folder (see `ssl_audio::synth`):
//! Speech Commands' command words with espeak-ng (the default; with no
//! arguments it rewrites the bundled `datasets/keywords`), or the digits
//! with flite in background noise (`--engine flite`, a second set from
//! another engine, written to `runs/data/digits-flite` unless `--out` says
//! otherwise). `cargo xtask gen-keywords` runs it.

use anyhow::{bail, Context, Result};
use clap::Parser;
use ssl_audio::synth::{generate, Engine, KeywordSpec};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(version, about = "Synthesise spoken keywords with espeak-ng or flite")]
struct Args {
    /// Synthesiser: espeak (Speech Commands' ten command words) or flite
    /// (the digits zero to nine, in white noise at 0-20 dB SNR).
    #[arg(long, default_value = "espeak")]
    engine: Engine,
    /// Output folder (its train/, test/ and clips.tsv are replaced once
    /// every new clip is made; a failure leaves them as they were).
    /// Default: datasets/keywords for espeak,
    /// runs/data/digits-flite for flite.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Training clips per word.
    #[arg(long, default_value_t = KeywordSpec::default().train_per_word)]
    train_per_word: usize,
    /// Test clips per word (unseen voices).
    #[arg(long, default_value_t = KeywordSpec::default().test_per_word)]
    test_per_word: usize,
    /// Output sample rate.
    #[arg(long, default_value_t = 16_000)]
    sample_rate: u32,
    /// Seed of the voice, speed, pitch and noise draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Centre each clip in a one-second window of white noise at an SNR
    /// drawn in `LO,HI` dB (flite's default: 0,20; espeak's: none). An
    /// unlabelled set made for `train-audio --unlabeled` with `--noise-snr
    /// 0,20` matches `--data bundled`, which adds that noise when it loads.
    #[arg(long, value_delimiter = ',', num_args = 1)]
    noise_snr: Option<Vec<f64>>,
    /// Words to speak instead of the engine's own, comma-separated (each
    /// becomes a class folder).
    #[arg(long, value_delimiter = ',', num_args = 1)]
    words: Option<Vec<String>>,
    /// Voices of the training split, comma-separated, instead of random
    /// accents with variants m1-m5, f1-f3, klatt, klatt2: espeak-ng's
    /// `accent+variant`, or `festival:NAME` for a Festival voice (e.g.
    /// `festival:kal_diphone`; Debian: `apt-get install festival
    /// festvox-kallpc16k`); needs --test-voices.
    #[arg(long, value_delimiter = ',', num_args = 1, requires = "test_voices")]
    train_voices: Option<Vec<String>>,
    /// Voices of the test split, named as for --train-voices, none of them
    /// a training voice; needs --train-voices.
    #[arg(long, value_delimiter = ',', num_args = 1, requires = "train_voices")]
    test_voices: Option<Vec<String>>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let base = match args.engine {
        Engine::Espeak | Engine::Festival => KeywordSpec::default(),
        Engine::Flite => KeywordSpec::flite_digits(),
    };
    let noise_snr_db = match args.noise_snr.as_deref() {
        None => base.noise_snr_db,
        Some(&[lo, hi]) if lo.is_finite() && hi.is_finite() && lo <= hi => Some((lo, hi)),
        Some(v) => bail!("--noise-snr expects LO,HI in dB with LO <= HI, got {v:?}"),
    };
    let mut version = args.engine.version()?;
    let spec = KeywordSpec {
        noise_snr_db,
        train_per_word: args.train_per_word,
        test_per_word: args.test_per_word,
        sample_rate: args.sample_rate,
        seed: args.seed,
        words: args.words,
        voices: args.train_voices.zip(args.test_voices),
        ..base
    };
    spec.validate()?;
    if spec.uses_festival() {
        version = format!("{version} and {}", Engine::Festival.version()?);
    }
    let out = args.out.unwrap_or_else(|| match args.engine {
        Engine::Espeak | Engine::Festival => "datasets/keywords".into(),
        Engine::Flite => "runs/data/digits-flite".into(),
    });
    let started = std::time::Instant::now();
    let (files, bytes) = replace_set(&out, |staging| generate(staging, &spec).map_err(anyhow::Error::from))?;
    println!(
        "{} clips ({:.2} MB) in {} with {version} in {:.1} s",
        files,
        bytes as f64 / 1e6,
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What a set is made of: each is replaced (or removed, when the new set
/// has none, as `--test-per-word 0` makes no test/).
const SET_PARTS: [&str; 3] = ["train", "test", "clips.tsv"];

/// Makes a new set with `make` in `OUT/.make-keywords-partial` and only
/// then swaps it in: the old parts are first moved to
/// `OUT/.make-keywords-old` (renames in one folder), the new ones moved in,
/// and the old folder removed last. A voice that is missing or fails, or a
/// full disk, leaves the earlier set as it was; a failed swap is undone; a
/// run killed in the swap leaves `.make-keywords-old` for the next run to
/// refuse to go past. Returns how many files the new set has and their
/// size in bytes.
fn replace_set(out: &Path, make: impl FnOnce(&Path) -> Result<Vec<PathBuf>>) -> Result<(usize, u64)> {
    let staging = out.join(".make-keywords-partial");
    let old_dir = out.join(".make-keywords-old");
    if old_dir.exists() {
        bail!(
            "{} holds the set that an interrupted run was replacing: move its train/, test/ and clips.tsv back \
             into {} (or remove it if {} is complete), then run again",
            old_dir.display(),
            out.display(),
            out.display()
        );
    }
    if staging.exists() {
        // The swap never began (it starts by making .make-keywords-old), so
        // this is only a half-made new set.
        eprintln!("removing {} (a half-made set left by an interrupted run)", staging.display());
        std::fs::remove_dir_all(&staging).with_context(|| format!("cannot remove {}", staging.display()))?;
    }
    let out_existed = out.exists();
    let files = match make(&staging) {
        Ok(files) => files,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            if !out_existed {
                let _ = std::fs::remove_dir(out);
            }
            return Err(e.context(format!("nothing in {} was changed", out.display())));
        }
    };
    let bytes: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    std::fs::create_dir(&old_dir).with_context(|| format!("cannot create {}", old_dir.display()))?;
    // Each step that was done, so that a failure can undo them in reverse.
    let mut done: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut swap = || -> Result<()> {
        for part in SET_PARTS {
            let (current, kept) = (out.join(part), old_dir.join(part));
            if current.exists() {
                eprintln!("replacing {}", current.display());
                std::fs::rename(&current, &kept)
                    .with_context(|| format!("cannot move {} to {}", current.display(), kept.display()))?;
                done.push((current, kept));
            }
        }
        for part in SET_PARTS {
            let (new, current) = (staging.join(part), out.join(part));
            if new.exists() {
                std::fs::rename(&new, &current)
                    .with_context(|| format!("cannot move {} to {}", new.display(), current.display()))?;
                done.push((new, current));
            }
        }
        Ok(())
    };
    if let Err(e) = swap() {
        for (from, to) in done.iter().rev() {
            if let Err(undo) = std::fs::rename(to, from) {
                return Err(e.context(format!(
                    "replacing the set failed and so did undoing it ({undo}): the earlier set is in {}, the new one in {}",
                    old_dir.display(),
                    staging.display()
                )));
            }
        }
        let _ = std::fs::remove_dir(&old_dir);
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e.context(format!("the earlier set in {} was put back", out.display())));
    }
    std::fs::remove_dir_all(&old_dir).with_context(|| format!("cannot remove {}", old_dir.display()))?;
    std::fs::remove_dir(&staging).with_context(|| format!("cannot remove {}", staging.display()))?;
    Ok((files.len(), bytes))
}
