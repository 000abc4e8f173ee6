//! Build-script helper shared by every ssl-rs crate that produces binaries,
//! tests, examples or benches.
//!
//! Two link problems make a tch binary unusable out of the box (see
//! `shared/notes/libtorch.md` and tch-rs issues #907 and #980):
//! 1. the binary cannot find `libtorch_cpu.so` at run time unless
//!    `LD_LIBRARY_PATH` is set, so we write an rpath to the torch `lib/` dir;
//! 2. with the default `--as-needed`, `libtorch_cuda.so` is dropped from the
//!    binary and CUDA is silently unavailable, so we link it with
//!    `--no-as-needed`.
//!
//! Call [`link_torch`] from `build.rs`. It also exports the lib dir to the
//! crate as the compile-time env var `SSL_TORCH_LIB_DIR` (empty when unknown).
//!
//! It also knows where the project's shared cache is ([`cache_dir`]): `cargo
//! xtask setup` (which depends on this crate and nothing else of ours) installs
//! torch and the gloo headers there, and `ssl-dist`'s build script reads them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Finds the libtorch `lib/` directory the same way `torch-sys` does:
/// `LIBTORCH` first, then `LIBTORCH_USE_PYTORCH` (asking `python3` for
/// `torch.__file__`). Returns `None` when neither is set.
pub fn torch_lib_dir() -> Option<PathBuf> {
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        let lib = std::env::var("LIBTORCH_LIB").unwrap_or(libtorch);
        return Some(Path::new(&lib).join("lib"));
    }
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
        let out = Command::new(python)
            .args(["-c", "import os, torch; print(os.path.dirname(torch.__file__))"])
            .output()
            .ok()?;
        if out.status.success() {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
            return Some(Path::new(&dir).join("lib"));
        }
    }
    None
}

/// Emits the rpath and `--no-as-needed` link arguments for the current
/// package's binaries, tests, examples and benches.
pub fn link_torch() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    let Some(lib) = torch_lib_dir() else {
        println!("cargo:rustc-env=SSL_TORCH_LIB_DIR=");
        return;
    };
    println!("cargo:rustc-env=SSL_TORCH_LIB_DIR={}", lib.display());
    if cfg!(target_os = "linux") || std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        println!("cargo:rustc-link-search=native={}", lib.display());
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        if lib.join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-ltorch_cuda");
        }
        println!("cargo:rustc-link-arg=-ltorch");
    }
}

/// The cache shared by every clone on this machine: `$SSL_RS_CACHE`, else
/// `$XDG_CACHE_HOME/ssl-rs`, else `~/.cache/ssl-rs`. `None` when none of
/// those variables is set.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SSL_RS_CACHE") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("ssl-rs"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("ssl-rs"))
}

/// The Debian package whose headers the c10d shim compiles against (the
/// torch wheel ships no gloo headers; this gloo is older than the one built
/// into libtorch, so the shim only holds gloo objects through torch's
/// pointers).
pub const GLOO_PACKAGE: &str = "libgloo-dev";

/// Where `cargo xtask setup` unpacks [`GLOO_PACKAGE`] inside the cache.
pub fn gloo_cache_dir() -> Option<PathBuf> {
    cache_dir().map(|c| c.join("gloo-headers"))
}

/// The folder holding `gloo/algorithm.h`: `$SSL_RS_GLOO_INCLUDE`, else the
/// unpacked package in the cache (`gloo-headers/usr/include`).
pub fn gloo_include_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SSL_RS_GLOO_INCLUDE") {
        return PathBuf::from(dir);
    }
    gloo_cache_dir().unwrap_or_default().join("usr").join("include")
}
