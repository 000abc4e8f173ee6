//! Replays every kept fuzz input (`fuzz/corpus/<target>/`, and the inputs
//! that once crashed a target, `fuzz/regressions/<target>/`) and the seed
//! inputs through their targets: none may panic. Runs on stable in CI, in
//! seconds.

use std::path::PathBuf;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

#[test]
fn every_kept_input_and_seed_passes_its_target_without_a_panic() {
    let seeds: std::collections::HashMap<&str, Vec<Vec<u8>>> = ssl_fuzz::seeds().into_iter().collect();
    let mut total = 0;
    for (name, target) in ssl_fuzz::TARGETS {
        let mut n = 0;
        for input in &seeds[name] {
            target(input);
            n += 1;
        }
        for kind in ["corpus", "regressions"] {
            for path in files(&fuzz_dir().join(kind).join(name)) {
                let bytes = std::fs::read(&path).unwrap();
                eprintln!("{}", path.display());
                target(&bytes);
                n += 1;
            }
        }
        eprintln!("{name}: {n} inputs");
        total += n;
    }
    assert!(total >= ssl_fuzz::TARGETS.len());
}

#[test]
fn every_target_has_seeds_and_a_kept_corpus() {
    let seeds: Vec<&str> = ssl_fuzz::seeds().iter().map(|(n, _)| *n).collect();
    for (name, _) in ssl_fuzz::TARGETS {
        assert!(seeds.contains(name), "{name} has no seed input");
        assert!(!files(&fuzz_dir().join("corpus").join(name)).is_empty(), "fuzz/corpus/{name} is empty");
    }
}
