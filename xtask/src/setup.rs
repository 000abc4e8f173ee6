//! `cargo xtask setup`: makes libtorch available, idempotently.
//!
//! Order of preference: a user's own `LIBTORCH`, then `LIBTORCH_USE_PYTORCH`
//! (the `python3` on PATH), then a venv with `torch==2.11.0` from PyPI in a
//! cache shared by all clones (`$SSL_RS_CACHE`, else `$XDG_CACHE_HOME/ssl-rs`,
//! else `~/.cache/ssl-rs`). tch 0.24 is built for PyTorch 2.11, which is also
//! what the project's GPU machines run.
//!
//! The c10d shim of `ssl-dist` also needs gloo's headers, which the torch
//! wheel lacks: setup unpacks Debian's `libgloo-dev` into the same cache
//! (`apt-get download` and `dpkg -x`, nothing is installed), and passes the
//! folder to cargo as `SSL_RS_GLOO_INCLUDE`.

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
    /// The folder holding `gloo/algorithm.h` (see the module docs).
    pub gloo_include: PathBuf,
    /// Build ssl-dist's NCCL backend: this machine has a CUDA device and
    /// the CUDA headers it needs are installed (see [`nccl_headers`]).
    pub nccl: bool,
}

impl Torch {
    /// Applies the environment to a command that runs cargo or a binary.
    pub fn apply(&self, cmd: &mut Command) {
        if let Some(dir) = &self.libtorch {
            cmd.env("LIBTORCH", dir);
            cmd.env_remove("LIBTORCH_USE_PYTORCH");
        }
        cmd.env("SSL_RS_GLOO_INCLUDE", &self.gloo_include);
    }

    /// Prints what setup found.
    pub fn print_summary(&self) {
        let dir = match &self.libtorch {
            Some(d) => d.display().to_string(),
            None => "(python3 on PATH, LIBTORCH_USE_PYTORCH)".into(),
        };
        println!("torch {} from {}: {dir}", self.version, self.source);
        if self.nccl {
            println!("CUDA device found: building with NCCL");
        }
    }

    /// `--features CRATE/nccl` when NCCL is on, for a cargo command.
    pub fn features(&self, krate: &str) -> Vec<String> {
        if self.nccl {
            vec!["--features".into(), format!("{krate}/nccl")]
        } else {
            Vec::new()
        }
    }
}

/// Finds or installs libtorch and the gloo headers; see the module docs.
pub fn setup() -> Result<Torch> {
    let (libtorch, version, source) = find_torch()?;
    let gloo_include = gloo_headers()?;
    let nccl = cuda_machine() && nccl_headers(libtorch.as_deref())?;
    Ok(Torch { libtorch, version, source, gloo_include, nccl })
}

/// Whether this machine has a CUDA device (`SSL_RS_NCCL=1` or `0`
/// overrides the check): `/dev/nvidiactl`, or `nvidia-smi -L` listing one.
fn cuda_machine() -> bool {
    match std::env::var("SSL_RS_NCCL").as_deref() {
        Ok("1") => return true,
        Ok("0") => return false,
        _ => {}
    }
    Path::new("/dev/nvidiactl").exists()
        || Command::new("nvidia-smi")
            .arg("-L")
            .output()
            .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
}

/// The CUDA header wheels ssl-dist's NCCL backend compiles against
/// (`ProcessGroupNCCL.hpp` includes `crt/host_config.h` and `nv/target`,
/// which the torch wheel's CUDA runtime lacks): the pins of cuda-toolkit
/// 13.0.2, which torch 2.11 requires.
const CUDA_HEADER_WHEELS: [&str; 2] = ["nvidia-cuda-crt==13.0.88.*", "nvidia-cuda-cccl==13.0.85.*"];

/// Makes sure the CUDA headers NCCL needs are beside torch: installs
/// [`CUDA_HEADER_WHEELS`] into the shared venv when missing. Returns
/// false (Gloo carries CUDA tensors then) for a torch setup does not own
/// that lacks them.
fn nccl_headers(libtorch: Option<&Path>) -> Result<bool> {
    let Some(torch) = libtorch else { return Ok(false) };
    let site = torch.parent().unwrap_or(torch).to_path_buf();
    let has = |file: &str| -> bool {
        std::fs::read_dir(site.join("nvidia"))
            .map(|d| d.filter_map(|e| e.ok()).any(|e| e.path().join("include").join(file).exists()))
            .unwrap_or(false)
    };
    if has("crt/host_config.h") && has("nv/target") {
        return Ok(true);
    }
    let venv = cache_dir()?.join(format!("torch-{TORCH_VERSION}"));
    if !torch.starts_with(&venv) {
        eprintln!(
            "xtask: this torch ({}) lacks the CUDA headers NCCL needs (crt/host_config.h, nv/target): building \
             without NCCL (Gloo carries CUDA tensors); `pip install {}` beside it turns NCCL on",
            torch.display(),
            CUDA_HEADER_WHEELS.join(" ")
        );
        return Ok(false);
    }
    eprintln!("xtask: installing the CUDA headers NCCL needs ({})", CUDA_HEADER_WHEELS.join(", "));
    run(Command::new(venv.join("bin").join("pip"))
        .args(["install", "--disable-pip-version-check", "--no-deps"])
        .args(CUDA_HEADER_WHEELS))
    .context("pip install of the CUDA header wheels failed")?;
    Ok(has("crt/host_config.h") && has("nv/target"))
}

/// The gloo headers: `$SSL_RS_GLOO_INCLUDE` when set, else Debian's
/// `libgloo-dev` unpacked into the cache (once per machine).
fn gloo_headers() -> Result<PathBuf> {
    let include = ssl_build::gloo_include_dir();
    if include.join("gloo").join("algorithm.h").exists() {
        return Ok(include);
    }
    if std::env::var_os("SSL_RS_GLOO_INCLUDE").is_some() {
        bail!(
            "SSL_RS_GLOO_INCLUDE={} holds no gloo/algorithm.h; point it at a folder with gloo's headers \
             or unset it to let setup fetch Debian's {}",
            include.display(),
            ssl_build::GLOO_PACKAGE
        );
    }
    let dir = ssl_build::gloo_cache_dir().context("neither SSL_RS_CACHE, XDG_CACHE_HOME nor HOME is set")?;
    eprintln!(
        "xtask: fetching the gloo headers ({} from Debian) into {}",
        ssl_build::GLOO_PACKAGE,
        dir.display()
    );
    let download = dir.with_extension("download");
    if download.exists() {
        std::fs::remove_dir_all(&download).with_context(|| format!("removing {}", download.display()))?;
    }
    std::fs::create_dir_all(&download).with_context(|| format!("creating {}", download.display()))?;
    run(Command::new("apt-get").args(["download", "-q", ssl_build::GLOO_PACKAGE]).current_dir(&download))
        .with_context(|| {
            format!(
                "`apt-get download {}` failed: on a machine without Debian's apt, set SSL_RS_GLOO_INCLUDE \
                 to a folder holding gloo's headers (gloo/algorithm.h)",
                ssl_build::GLOO_PACKAGE
            )
        })?;
    let deb = std::fs::read_dir(&download)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download left no .deb in {}", download.display()))?;
    let unpacked = dir.with_extension("tmp");
    if unpacked.exists() {
        std::fs::remove_dir_all(&unpacked).with_context(|| format!("removing {}", unpacked.display()))?;
    }
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked))
        .with_context(|| format!("unpacking {} with dpkg -x", deb.display()))?;
    if !unpacked.join("usr/include/gloo/algorithm.h").exists() {
        bail!("{} holds no usr/include/gloo/algorithm.h", deb.display());
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::rename(&unpacked, &dir).with_context(|| format!("moving the headers to {}", dir.display()))?;
    std::fs::remove_dir_all(&download).with_context(|| format!("removing {}", download.display()))?;
    Ok(include)
}

/// Finds or installs libtorch: `(LIBTORCH, version, where it came from)`.
fn find_torch() -> Result<(Option<PathBuf>, String, &'static str)> {
    if let Some(dir) = std::env::var_os("LIBTORCH") {
        let dir = PathBuf::from(dir);
        if !dir.join("lib").is_dir() {
            bail!(
                "LIBTORCH={} has no lib/ folder; point it at a libtorch (or torch package) folder",
                dir.display()
            );
        }
        let version = version_of_torch_dir(&dir).unwrap_or_else(|| "unknown".into());
        return Ok((Some(dir), version, "$LIBTORCH"));
    }
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        let (version, _) = probe_python(Path::new("python3"), false)
            .context("LIBTORCH_USE_PYTORCH is set but `python3 -c 'import torch'` failed")?;
        return Ok((None, version, "$LIBTORCH_USE_PYTORCH"));
    }
    let venv = cache_dir()?.join(format!("torch-{TORCH_VERSION}"));
    let python = venv.join("bin").join("python");
    match probe_python(&python, true) {
        Ok((version, dir)) if version.starts_with(TORCH_VERSION) => {
            return Ok((Some(dir), version, "the shared venv"));
        }
        Ok((version, _)) => {
            eprintln!("xtask: {} has torch {version}, want {TORCH_VERSION}: reinstalling", venv.display())
        }
        // A venv whose torch is there but does not import (a broken
        // library, a full disk) is not deleted and downloaded again
        // (4.7 GB, and again on every command): said, and kept.
        Err(e) if python.exists() && !torch_is_missing(&e) => bail!(
            "{e:#}\nthe shared venv {} is kept: mend what stops the import, or remove the folder to reinstall",
            venv.display()
        ),
        Err(_) => {}
    }
    install(&venv)?;
    let (version, dir) = probe_python(&python, true).context("torch installed but cannot be imported")?;
    if !version.starts_with(TORCH_VERSION) {
        bail!("pip installed torch {version} into {}, expected {TORCH_VERSION}", venv.display());
    }
    Ok((Some(dir), version, "a fresh install in the shared venv"))
}

/// The shared venv's Python (created by [`setup`] unless `LIBTORCH` or
/// `LIBTORCH_USE_PYTORCH` pointed elsewhere).
pub fn venv_python() -> Result<PathBuf> {
    Ok(cache_dir()?.join(format!("torch-{TORCH_VERSION}")).join("bin").join("python"))
}

fn cache_dir() -> Result<PathBuf> {
    ssl_build::cache_dir().context("neither SSL_RS_CACHE, XDG_CACHE_HOME nor HOME is set")
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
/// Whether a failed [`probe_python`] failed because torch is not installed.
fn torch_is_missing(e: &anyhow::Error) -> bool {
    format!("{e:#}").contains("No module named 'torch'")
}

/// `(torch.__version__, torch's folder)` from `python`; `isolated` (the
/// shared venv's own Python) ignores the caller's PYTHONHOME, PYTHONPATH
/// and user site (`python -I`).
fn probe_python(python: &Path, isolated: bool) -> Result<(String, PathBuf)> {
    let mut cmd = Command::new(python);
    if isolated {
        cmd.arg("-I");
    }
    let out = cmd
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

/// Headless Chromium for the test that opens a run's `report.html`:
/// `$SSL_RS_CHROMIUM`, or `chromium` on the PATH, else Debian's `chromium`
/// installed with apt-get (as root; about 290 MB, once per machine). Only
/// `cargo xtask test` needs it; training never does.
pub fn chromium() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SSL_RS_CHROMIUM") {
        return Ok(PathBuf::from(p));
    }
    let find = || {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .flat_map(|d| [d.join("chromium"), d.join("chromium-browser")])
            .find(|p| p.is_file())
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        bail!(
            "the report.html test needs headless Chromium: install Debian's `chromium` (sudo apt-get install \
             chromium), or set SSL_RS_CHROMIUM to a Chromium or Chrome binary"
        );
    }
    eprintln!("xtask: installing Debian's chromium for the report.html test (apt-get, once per machine)");
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut cmd)
    };
    apt(&["update", "-qq"])?;
    apt(&["install", "-y", "-qq", "--no-install-recommends", "chromium"])
        .context("installing chromium with apt-get (or set SSL_RS_CHROMIUM to a Chromium binary)")?;
    find().context("apt-get installed chromium, but no `chromium` is on the PATH")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in `python` printing `body`'s output (written through
    /// `install`, so no descriptor of it is open here; see launch.rs).
    fn fake_python(dir: &Path, body: &str) -> PathBuf {
        let (text, path) = (dir.join("python.txt"), dir.join("python"));
        std::fs::write(&text, format!("#!/bin/sh\n{body}\n")).unwrap();
        let status = Command::new("install").arg("-m").arg("755").arg(&text).arg(&path).status();
        assert!(status.unwrap().success());
        path
    }

    #[test]
    fn a_venv_whose_torch_fails_to_import_is_told_apart_from_one_without_torch() {
        let dir = tempfile::tempdir().unwrap();
        let ok = fake_python(dir.path(), "echo 2.11.0+cu130; echo /venv/torch");
        assert_eq!(probe_python(&ok, true).unwrap(), ("2.11.0+cu130".into(), PathBuf::from("/venv/torch")));
        let missing =
            fake_python(dir.path(), "echo \"ModuleNotFoundError: No module named 'torch'\" >&2; exit 1");
        assert!(torch_is_missing(&probe_python(&missing, true).unwrap_err()));
        let broken = fake_python(
            dir.path(),
            "echo 'OSError: libtorch_cpu.so: cannot open shared object file' >&2; exit 1",
        );
        let e = probe_python(&broken, true).unwrap_err();
        assert!(!torch_is_missing(&e) && format!("{e:#}").contains("libtorch_cpu.so"), "{e:#}");
    }
}
