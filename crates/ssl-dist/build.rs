//! Compiles the c10d shim (`shim/c10d.cpp`) against the headers of the
//! libtorch that tch links, plus the gloo headers that `cargo xtask setup`
//! extracts from Debian's `libgloo-dev` (the torch wheel ships none), and
//! links libtorch with an rpath (see `ssl-build`).

use std::path::{Path, PathBuf};

fn main() {
    ssl_build::link_torch();
    println!("cargo:rerun-if-changed=shim/c10d.cpp");
    println!("cargo:rerun-if-env-changed=SSL_RS_GLOO_INCLUDE");
    println!("cargo:rerun-if-env-changed=SSL_RS_CUDA_INCLUDE");
    println!("cargo:rerun-if-env-changed=SSL_RS_CACHE");
    let Some(lib) = ssl_build::torch_lib_dir() else {
        fail(
            "libtorch was not found: set LIBTORCH (or LIBTORCH_USE_PYTORCH), as `cargo xtask setup` \
             does for every cargo command it runs",
        );
    };
    let torch = lib.parent().unwrap_or(&lib).to_path_buf();
    let include = torch.join("include");
    if !include.join("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp").exists() {
        fail(&format!(
            "{} has no c10d headers (torch/csrc/distributed/c10d/ProcessGroupGloo.hpp): \
             ssl-dist needs the headers of a full torch 2.11 install, such as the PyPI wheel",
            include.display()
        ));
    }
    let gloo = ssl_build::gloo_include_dir();
    if !gloo.join("gloo/algorithm.h").exists() {
        fail(&format!(
            "the gloo headers were not found in {} (gloo/algorithm.h): run `cargo xtask setup`, which \
             extracts them from Debian's libgloo-dev into the shared cache, or set SSL_RS_GLOO_INCLUDE \
             to a folder holding gloo/",
            gloo.display()
        ));
    }
    let nccl = std::env::var_os("CARGO_FEATURE_NCCL").is_some();
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("shim/c10d.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include(&gloo)
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .define("USE_C10D_GLOO", None)
        .warnings(false)
        .opt_level(2);
    if nccl {
        for dir in cuda_includes(&torch) {
            build.include(dir);
        }
        build.define("USE_C10D_NCCL", None).define("USE_CUDA", None).define("SSL_DIST_NCCL", None);
    }
    build.compile("ssl_dist_shim");
    println!("cargo:rustc-link-search=native={}", lib.display());
    if nccl {
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

/// The CUDA and NCCL header folders `ProcessGroupNCCL.hpp` needs: the
/// `nvidia/*/include` folders of the venv beside torch (the NCCL wheel and
/// the `nvidia-cuda-crt`, `nvidia-cuda-cccl` and runtime wheels that `cargo
/// xtask setup` adds on CUDA machines), plus `SSL_RS_CUDA_INCLUDE`.
fn cuda_includes(torch: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("SSL_RS_CUDA_INCLUDE")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    let nvidia = torch.parent().map(|p| p.join("nvidia")).unwrap_or_default();
    if let Ok(entries) = std::fs::read_dir(&nvidia) {
        let mut found: Vec<PathBuf> =
            entries.filter_map(|e| e.ok()).map(|e| e.path().join("include")).filter(|p| p.is_dir()).collect();
        found.sort();
        dirs.extend(found);
    }
    let has = |file: &str| dirs.iter().any(|d| d.join(file).exists());
    for needed in ["nccl.h", "cuda_runtime_api.h", "crt/host_config.h", "nv/target"] {
        if !has(needed) {
            fail(&format!(
                "the `nccl` feature needs {needed}, found in none of {dirs:?}: run `cargo xtask setup` on \
                 the CUDA machine (it installs the CUDA header wheels from PyPI) or set SSL_RS_CUDA_INCLUDE"
            ));
        }
    }
    dirs
}

fn fail(msg: &str) -> ! {
    eprintln!("error: ssl-dist: {msg}");
    panic!("ssl-dist: {msg}");
}
