//! Built binaries link libtorch_cuda (so CUDA is usable on a GPU machine)
//! and carry an rpath to the torch lib dir (so they run without
//! LD_LIBRARY_PATH). See `crates/ssl-build`.

use std::path::Path;

fn check_binary(path: &Path) {
    let lib_dir = env!("SSL_TORCH_LIB_DIR");
    assert!(!lib_dir.is_empty(), "the build script found no libtorch (LIBTORCH unset?)");
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let elf = goblin::elf::Elf::parse(&bytes).expect("an ELF binary");
    let needed = &elf.libraries;
    assert!(needed.iter().any(|l| l.starts_with("libtorch")), "{}: NEEDED {needed:?}", path.display());
    if Path::new(lib_dir).join("libtorch_cuda.so").exists() {
        assert!(
            needed.contains(&"libtorch_cuda.so"),
            "{}: NEEDED {needed:?} lacks libtorch_cuda.so",
            path.display()
        );
    }
    let paths: Vec<&str> = elf.runpaths.iter().chain(&elf.rpaths).flat_map(|p| p.split(':')).collect();
    assert!(paths.contains(&lib_dir), "{}: rpath {paths:?} lacks {lib_dir}", path.display());
}

#[test]
fn train_vision_binary_links_libtorch_cuda() {
    check_binary(Path::new(env!("CARGO_BIN_EXE_train-vision")));
}

#[test]
fn test_binaries_link_libtorch_cuda() {
    check_binary(&std::env::current_exe().unwrap());
}
