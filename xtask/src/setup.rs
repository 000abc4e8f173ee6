//! `cargo xtask setup`: makes libtorch available, idempotently.
//!
//! Order of preference: a user's own `LIBTORCH`, then `LIBTORCH_USE_PYTORCH`
//! (the `python3` on PATH), then a venv with `torch==2.11.0` from PyPI in a
//! cache shared by all clones (`$SSL_RS_CACHE`, else `$XDG_CACHE_HOME/ssl-rs`,
//! else `~/.cache/ssl-rs`). tch 0.24 is built for PyTorch 2.11, which is also
//! what the project's GPU machines run.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The torch version tch 0.24 is built against.
pub const TORCH_VERSION: &str = "2.11.0";

/// Where libtorch comes from, and the environment cargo needs to use it.
pub struct Torch {
    /// `LIBTORCH` for torch-sys and our build scripts; `None` when the user
    /// chose `LIBTORCH_USE_PYTORCH` (cargo inherits that variable as is).
    pub libtorch: Option<PathBuf>,
    /// `torch.__version__`, e.g. `2.11.0+cu130`.
    pub version: String,
    /// How it was found, for messages.
    pub source: &'static str,
}

impl Torch {
    /// Applies the environment to a command that runs cargo or a binary.
    pub fn apply(&self, cmd: &mut Command) {
        if let Some(dir) = &self.libtorch {
            cmd.env("LIBTORCH", dir);
            cmd.env_remove("LIBTORCH_USE_PYTORCH");
        }
    }

    /// Prints what setup found.
    pub fn print_summary(&self) {
        let dir = match &self.libtorch {
            Some(d) => d.display().to_string(),
            None => "(python3 on PATH, LIBTORCH_USE_PYTORCH)".into(),
        };
        println!("torch {} from {}: {dir}", self.version, self.source);
    }
}

/// Finds or installs libtorch; see the module docs.
pub fn setup() -> Result<Torch> {
    if let Some(dir) = std::env::var_os("LIBTORCH") {
        let dir = PathBuf::from(dir);
        if !dir.join("lib").is_dir() {
            bail!(
                "LIBTORCH={} has no lib/ folder; point it at a libtorch (or torch package) folder",
                dir.display()
            );
        }
        let version = version_of_torch_dir(&dir).unwrap_or_else(|| "unknown".into());
        return Ok(Torch { libtorch: Some(dir), version, source: "$LIBTORCH" });
    }
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        let (version, _) = probe_python(Path::new("python3"))
            .context("LIBTORCH_USE_PYTORCH is set but `python3 -c 'import torch'` failed")?;
        return Ok(Torch { libtorch: None, version, source: "$LIBTORCH_USE_PYTORCH" });
    }
    let venv = cache_dir()?.join(format!("torch-{TORCH_VERSION}"));
    let python = venv.join("bin").join("python");
    if let Ok((version, dir)) = probe_python(&python) {
        if version.starts_with(TORCH_VERSION) {
            return Ok(Torch { libtorch: Some(dir), version, source: "the shared venv" });
        }
        eprintln!("xtask: {} has torch {version}, want {TORCH_VERSION}: reinstalling", venv.display());
    }
    install(&venv)?;
    let (version, dir) = probe_python(&python).context("torch installed but cannot be imported")?;
    if !version.starts_with(TORCH_VERSION) {
        bail!("pip installed torch {version} into {}, expected {TORCH_VERSION}", venv.display());
    }
    Ok(Torch { libtorch: Some(dir), version, source: "a fresh install in the shared venv" })
}

/// The shared venv's Python (created by [`setup`] unless `LIBTORCH` or
/// `LIBTORCH_USE_PYTORCH` pointed elsewhere).
pub fn venv_python() -> Result<PathBuf> {
    Ok(cache_dir()?.join(format!("torch-{TORCH_VERSION}")).join("bin").join("python"))
}

fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SSL_RS_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("ssl-rs"));
    }
    let home = std::env::var_os("HOME").context("neither SSL_RS_CACHE, XDG_CACHE_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache").join("ssl-rs"))
}

fn install(venv: &Path) -> Result<()> {
    let started = std::time::Instant::now();
    eprintln!(
        "xtask: installing torch=={TORCH_VERSION} from PyPI into {} (about 4.7 GB with its CUDA wheels; once per machine)",
        venv.display()
    );
    std::fs::create_dir_all(venv.parent().unwrap_or(venv))
        .with_context(|| format!("creating {}", venv.display()))?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    run(Command::new(&python).args(["-m", "venv", "--clear"]).arg(venv))
        .with_context(|| format!("creating a venv with `{python} -m venv` (is python3-venv installed?)"))?;
    let pip = venv.join("bin").join("pip");
    // pip shows its own progress bars for each download.
    run(Command::new(&pip)
        .args(["install", "--disable-pip-version-check", "--progress-bar", "on"])
        .arg(format!("torch=={TORCH_VERSION}")))
    .context("pip install torch failed")?;
    eprintln!("xtask: torch installed in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Asks a Python interpreter for its torch version and package folder.
fn probe_python(python: &Path) -> Result<(String, PathBuf)> {
    let out = Command::new(python)
        .args(["-c", "import os, torch; print(torch.__version__); print(os.path.dirname(torch.__file__))"])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!("{} cannot import torch: {}", python.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let version = lines.next().unwrap_or_default().trim().to_string();
    let dir = PathBuf::from(lines.next().unwrap_or_default().trim());
    Ok((version, dir))
}

/// Reads the version of a libtorch or torch-package folder without Python.
fn version_of_torch_dir(dir: &Path) -> Option<String> {
    if let Ok(text) = std::fs::read_to_string(dir.join("build-version")) {
        return Some(text.trim().to_string());
    }
    let text = std::fs::read_to_string(dir.join("version.py")).ok()?;
    let line = text.lines().find(|l| l.starts_with("__version__"))?;
    Some(line.split('\'').nth(1)?.to_string())
}

/// Runs a command, inheriting stdio, and fails on a non-zero exit.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}
