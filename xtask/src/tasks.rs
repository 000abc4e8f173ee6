//! The tasks that run cargo after [`setup`](crate::setup::setup).

use crate::project_root;
use crate::setup::{run, setup, Torch};
use anyhow::Result;
use std::process::Command;

fn cargo(torch: &Torch, args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(project_root()).args(args);
    torch.apply(&mut cmd);
    cmd
}

/// `cargo xtask doctor`: what libtorch sees on this machine.
pub fn doctor() -> Result<()> {
    let torch = setup()?;
    torch.print_summary();
    run(&mut cargo(&torch, &["run", "--quiet", "--release", "-p", "ssl-core", "--bin", "ssl-doctor"]))
}

/// `cargo xtask test`: what CI runs. Extra args go to `cargo test`.
pub fn test(extra: &[String]) -> Result<()> {
    let torch = setup()?;
    torch.print_summary();
    let started = std::time::Instant::now();
    let features = torch.features("ssl-core");
    eprintln!("xtask: cargo fmt --check");
    run(&mut cargo(&torch, &["fmt", "--all", "--", "--check"]))?;
    eprintln!("xtask: cargo clippy");
    run(cargo(&torch, &["clippy", "--workspace", "--all-targets"])
        .args(&features)
        .args(["--", "-D", "warnings"]))?;
    // The report.html test opens the page in headless Chromium.
    let browser = crate::setup::chromium()?;
    eprintln!("xtask: cargo test");
    run(cargo(&torch, &["test", "--workspace"]).env("SSL_RS_CHROMIUM", browser).args(&features).args(extra))?;
    eprintln!("xtask: all checks passed in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// A binary of `krate` (a trainer, or `embed-*`): `cargo run --release`, or with
/// `--nproc-per-node N` (N > 1) the release build started as N local ranks
/// (see [`crate::launch`]). On a CUDA machine the build has NCCL.
/// Builds `bin` of `krate` in release; returns its path.
fn build_release(torch: &Torch, krate: &str, bin: &str) -> Result<std::path::PathBuf> {
    let features = torch.features(krate);
    run(cargo(torch, &["build", "--quiet", "--release", "-p", krate, "--bin", bin]).args(&features))?;
    let target: std::path::PathBuf =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| project_root().join("target"), Into::into);
    Ok(target.join("release").join(bin))
}

/// This process becomes `binary` (exec): a SIGTERM or Ctrl-C reaches it
/// directly (a train or fine-tune binary checkpoints and stops), and its
/// exit status (75 when it stopped on a signal) is ours. `command` is what
/// it prints as the command that resumes it.
fn become_binary(binary: &std::path::Path, args: &[String], command: &str) -> Result<()> {
    let err = std::os::unix::process::CommandExt::exec(
        Command::new(binary).args(args).env("SSL_RS_COMMAND", format!("cargo xtask {command}")),
    );
    anyhow::bail!("starting {}: {err}", binary.display())
}

fn train(krate: &str, bin: &str, args: &[String]) -> Result<()> {
    let (nproc, args) = crate::launch::take_nproc(args)?;
    let torch = setup()?;
    torch.print_summary();
    let binary = build_release(&torch, krate, bin)?;
    let target = binary.parent().and_then(|p| p.parent()).unwrap_or(&binary).to_path_buf();
    let Some(n) = nproc.filter(|&n| n > 1) else {
        return become_binary(&binary, &args, bin);
    };
    let logs = target.join("rank-logs").join(bin);
    eprintln!(
        "xtask: starting {n} ranks of {bin} on this machine (logs of ranks 1..{n}: {})",
        logs.display()
    );
    // What the ranks print as the command that resumes them.
    std::env::set_var("SSL_RS_COMMAND", format!("cargo xtask {bin} --nproc-per-node {n}"));
    if let Some(f) = crate::launch::run(&binary, &args, n, &logs)? {
        std::process::exit(f.code);
    }
    Ok(())
}

/// `cargo xtask train-vision [ARGS]`: builds the release binary and runs it.
pub fn train_vision(args: &[String]) -> Result<()> {
    train("ssl-vision", "train-vision", args)
}

/// `cargo xtask train-text [ARGS]`: text pre-training and the downstream
/// comparison (the `train-text` binary).
pub fn train_text(args: &[String]) -> Result<()> {
    train("ssl-text", "train-text", args)
}

/// `cargo xtask finetune-text [ARGS]`: fine-tune a pretrained text encoder
/// against one from scratch (the `finetune-text` binary).
pub fn finetune_text(args: &[String]) -> Result<()> {
    let torch = setup()?;
    torch.print_summary();
    become_binary(&build_release(&torch, "ssl-text", "finetune-text")?, args, "finetune-text")
}

/// `cargo xtask train-audio [ARGS]`: audio pre-training and the
/// pretrained-vs-random comparison (the `train-audio` binary).
pub fn train_audio(args: &[String]) -> Result<()> {
    train("ssl-audio", "train-audio", args)
}

/// `cargo xtask embed --model RUN --data SPEC [--out DIR] [--neighbors K]`:
/// embeddings (and nearest neighbours) under a trained run's backbone. The
/// run's `backbone.json` says its modality, which picks the binary
/// (`embed-vision` or `embed-audio`; a text run, with `hf/` and no
/// `backbone.json`, `embed-text`); the arguments go to it.
pub fn embed(args: &[String]) -> Result<()> {
    let run_dir = args
        .iter()
        .position(|a| a == "--model")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| args.iter().find_map(|a| a.strip_prefix("--model=").map(String::from)));
    let Some(run_dir) = run_dir else {
        anyhow::bail!("cargo xtask embed needs --model RUN (a train-vision or train-audio run folder)");
    };
    let run = std::path::Path::new(&run_dir);
    let meta = run.join("backbone.json");
    let is_text = run.join("hf").is_dir()
        || run.join("tokenizer.json").is_file() && run.join("model.safetensors").is_file();
    let modality = match std::fs::read_to_string(&meta) {
        Ok(text) => {
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: not valid JSON: {e}", meta.display()))?;
            v["modality"].as_str().map(String::from)
        }
        Err(_) if is_text => Some("text".into()),
        Err(e) => anyhow::bail!(
            "{}: {e}; --model takes a train-vision or train-audio run folder holding backbone.json and \
             backbone.safetensors (written at the end of a run), or a train-text run folder (its hf/)",
            meta.display()
        ),
    };
    // One process: ranks of embed would each write the same files.
    if crate::launch::take_nproc(args)?.0.is_some_and(|n| n > 1) {
        anyhow::bail!("cargo xtask embed runs in one process; drop --nproc-per-node");
    }
    match modality.as_deref() {
        Some("vision") => train("ssl-vision", "embed-vision", args),
        Some("audio") => train("ssl-audio", "embed-audio", args),
        Some("text") => train("ssl-text", "embed-text", args),
        other => anyhow::bail!("{}: unknown modality {other:?} (expected vision or audio)", meta.display()),
    }
}

/// `cargo xtask gen-topics [ARGS]`: writes the generated topic task (the
/// `make-topics` binary), a text task where pretraining has something to
/// add.
pub fn gen_topics(args: &[String]) -> Result<()> {
    let torch = setup()?;
    become_binary(&build_release(&torch, "ssl-text", "make-topics")?, args, "gen-topics")
}

/// `cargo xtask gen-keywords [ARGS]`: synthesises spoken keywords with
/// espeak-ng or flite (the `make-keywords` binary; the bundled set comes
/// from it).
pub fn gen_keywords(args: &[String]) -> Result<()> {
    let torch = setup()?;
    become_binary(&build_release(&torch, "ssl-audio", "make-keywords")?, args, "gen-keywords")
}
