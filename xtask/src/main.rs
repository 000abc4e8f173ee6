//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo
//! does. It never links tch: it must build before libtorch exists, because
//! installing libtorch is its first job.
//!
//! ```text
//! cargo xtask setup            install or find libtorch (idempotent)
//! cargo xtask doctor           torch version, CUDA, cuDNN, threads
//! cargo xtask test             fmt --check, clippy -D warnings, cargo test
//! cargo xtask train-vision ..  pretrain + evaluate an image encoder
//! cargo xtask train-text ..    pretrain a text encoder + downstream comparison
//! cargo xtask finetune-text .. fine-tune a pretrained text encoder vs scratch
//! cargo xtask train-audio ..   pretrain + evaluate an audio encoder
//! cargo xtask embed --model RUN --data SPEC [--neighbors K]  embeddings for numpy
//! cargo xtask gen-keywords ..  synthesise spoken keywords (espeak-ng; --engine flite: digits)
//! cargo xtask gen-topics ..    generate the topic text task (corpus + labels)
//!                              (train-* take --nproc-per-node N: N local ranks)
//! cargo xtask bench-compare .. criterion benches beside PyTorch references -> BENCHMARKS.md
//! cargo xtask results [--check | add RUN TABLE]  docs/results.md's tables from kept reports
//! cargo xtask fuzz [--seconds N] [TARGET ..]    libFuzzer on every file parser (nightly)
//! ```

mod bench;
mod fuzz;
mod launch;
mod memory;
mod results;
mod setup;
mod tasks;

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_else(|| "help".to_string());
    let rest: Vec<String> = args.collect();
    match task.as_str() {
        "setup" => setup::setup().map(|torch| torch.print_summary()),
        "doctor" => tasks::doctor(),
        "test" => tasks::test(&rest),
        "train-vision" => tasks::train_vision(&rest),
        "train-text" => tasks::train_text(&rest),
        "finetune-text" => tasks::finetune_text(&rest),
        "train-audio" => tasks::train_audio(&rest),
        "gen-keywords" => tasks::gen_keywords(&rest),
        "embed" => tasks::embed(&rest),
        "gen-topics" => tasks::gen_topics(&rest),
        "bench-compare" => bench::bench_compare(&rest),
        "results" => results::results(&rest),
        "fuzz" => fuzz::fuzz(&rest),
        "help" | "--help" | "-h" => {
            print_help();
            Ok(())
        }
        other => {
            print_help();
            bail!("unknown xtask `{other}`")
        }
    }
}

fn print_help() {
    eprintln!(
        "cargo xtask <task>\n\n\
         tasks:\n  \
         setup          install libtorch (torch==2.11.0 from PyPI) into a shared cache, or use $LIBTORCH\n  \
         doctor         print the torch version, CUDA and cuDNN availability, device count, threads\n  \
         test           setup, then cargo fmt --check, clippy -D warnings, cargo test --workspace\n  \
         train-vision   setup, then pretrain and evaluate (try `cargo xtask train-vision --help`)\n  \
         train-text     setup, then BERT (or GPT-style) pretraining on a corpus and the downstream comparison\n  \
         finetune-text  setup, then fine-tune a pretrained text encoder against one from scratch\n  \
         train-audio    setup, then pretrain an audio encoder (cola, byol-a, msm) and evaluate it against random init\n  \
         embed          embeddings (.npy) and --neighbors K of a data set under a train-vision, train-text or train-audio run\n  \
         gen-keywords   synthesise spoken keywords with espeak-ng (how datasets/keywords is made; --engine flite: a second set)\n  \
         gen-topics     generate the topic text task (a corpus holding what few labels lack)\n  \
         bench-compare  criterion benches and their PyTorch references on the same cores; writes BENCHMARKS.md\n  \
         results        rewrite docs/results.md's tables from the reports kept in docs/results/\n  \
                        (`results add RUN_DIR TABLE [NAME]` keeps a run's reports; `--check` for CI)\n  \
         fuzz           build the fuzz targets with nightly and run each for --seconds N (default 300)\n\n\
         train-vision, train-text and train-audio take --nproc-per-node N: N ranks on this machine\n  \
         (data-parallel; --batch-size stays the global batch), as torchrun --nproc-per-node N would\n\n\
         environment:\n  \
         SSL_RS_CACHE          cache folder for the torch venv (default ~/.cache/ssl-rs)\n  \
         LIBTORCH              use this libtorch (a folder with lib/ and include/) instead\n  \
         LIBTORCH_USE_PYTORCH  use the torch of the python3 on PATH instead\n  \
         SSL_RS_GLOO_INCLUDE   gloo headers for ssl-dist (default: Debian's libgloo-dev, unpacked into the cache)\n  \
         SSL_RS_NCCL           1 or 0: build with NCCL or not (default: when a CUDA device is found)"
    );
}

/// The workspace root (the parent of `xtask/`).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits one level below the workspace root")
        .to_path_buf()
}
