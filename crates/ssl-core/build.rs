//! Links libtorch with an rpath and `--no-as-needed` (see `ssl-build`), and
//! compiles `shim/fused.cpp` (libtorch's multi-tensor optimizer kernels,
//! which tch does not bind) against the headers of the same libtorch.

fn main() {
    ssl_build::link_torch();
    println!("cargo:rerun-if-changed=shim/fused.cpp");
    let Some(lib) = ssl_build::torch_lib_dir() else {
        panic!(
            "ssl-core: libtorch was not found: set LIBTORCH (or LIBTORCH_USE_PYTORCH), as `cargo xtask setup` \
             does for every cargo command it runs"
        );
    };
    let include = lib.parent().unwrap_or(&lib).join("include");
    if !include.join("ATen/ops/_fused_adamw.h").exists() {
        panic!(
            "ssl-core: {} has no ATen/ops/_fused_adamw.h: ssl-core needs the headers of a full torch 2.11 \
             install, such as the PyPI wheel that `cargo xtask setup` installs",
            include.display()
        );
    }
    cc::Build::new()
        .cpp(true)
        .file("shim/fused.cpp")
        .include(&include)
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .warnings(false)
        .opt_level(2)
        .compile("ssl_core_fused");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
