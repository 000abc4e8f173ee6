//! `cargo xtask fuzz [--seconds N] [TARGET ...]`: builds the libFuzzer
//! binaries of `fuzz/` with the nightly toolchain (the coverage flags
//! cargo-fuzz passes, without a sanitizer: the code is safe Rust, and what
//! is looked for is a panic, a hang or an abort), then runs each target for
//! N seconds (default 300) on its corpus in `fuzz/corpus/<target>/`,
//! starting from the seeds of `ssl_fuzz::seeds`. A crashing input is
//! copied to `fuzz/regressions/<target>/` (and the command then fails,
//! naming the targets), which the stable replay test
//! (`crates/ssl-fuzz/tests/replay.rs`) runs in CI with the corpus. The
//! corpus is merged down to the inputs that add coverage afterwards, and a
//! table of executions per target is printed and written to
//! `fuzz/last-run.md` (not kept in git; `fuzz/README.md` holds the figures
//! of the runs behind the kept corpus).

use crate::project_root;
use crate::setup::{run, setup};
use anyhow::{bail, Context, Result};
use std::process::Command;

const FLAGS: &str = "-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
     -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
     -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks";

/// The host triple, which keeps the flags off build scripts.
const TRIPLE: &str = "x86_64-unknown-linux-gnu";

pub fn fuzz(args: &[String]) -> Result<()> {
    let mut seconds = 300u64;
    let mut only = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = it.next().context("--seconds needs a number")?.parse().context("--seconds N")?
            }
            t => only.push(t.to_string()),
        }
    }
    // libFuzzer reads -max_total_time=0 as no limit.
    if seconds == 0 {
        bail!("--seconds must be at least 1");
    }
    let root = project_root();
    let fuzz = root.join("fuzz");
    // Names and the toolchain first, before any set-up or build.
    let names = targets(&fuzz)?;
    for t in &only {
        if !names.contains(t) {
            bail!("unknown fuzz target `{t}`; the targets: {}", names.join(", "));
        }
    }
    let nightly = Command::new("cargo").args(["+nightly", "--version"]).output();
    if !nightly.as_ref().is_ok_and(|o| o.status.success()) {
        bail!("cargo xtask fuzz needs the nightly toolchain (libFuzzer's coverage flags): `rustup toolchain install nightly`");
    }
    let torch = setup()?;
    let corpus = fuzz.join("corpus");
    let mut seeds = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    seeds.current_dir(&root).args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "ssl-fuzz",
        "--bin",
        "fuzz-seeds",
        "--",
    ]);
    seeds.arg(&corpus);
    torch.apply(&mut seeds);
    run(&mut seeds)?;
    eprintln!("xtask: building the fuzz targets with nightly (the first build takes a while)");
    let mut build = Command::new("cargo");
    build
        .current_dir(&fuzz)
        .args(["+nightly", "build", "--release", "--target", TRIPLE])
        .env("RUSTFLAGS", FLAGS);
    torch.apply(&mut build);
    run(&mut build)?;
    let bins = fuzz.join("target").join(TRIPLE).join("release");
    let chosen: Vec<&String> = names.iter().filter(|n| only.is_empty() || only.contains(n)).collect();
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for name in chosen {
        let dir = corpus.join(name);
        // Crashes of earlier runs are in fuzz/regressions already.
        let artifacts = fuzz.join("artifacts").join(name);
        let _ = std::fs::remove_dir_all(&artifacts);
        std::fs::create_dir_all(&artifacts)?;
        eprintln!("xtask: fuzzing {name} for {seconds} s");
        let out = Command::new(bins.join(name))
            .arg(&dir)
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .args(["-print_final_stats=1", "-timeout=10", "-rss_limit_mb=4096", "-max_len=65536"])
            .output()
            .with_context(|| format!("running the {name} fuzzer"))?;
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        std::fs::write(artifacts.join("last.log"), &log)?;
        let stat = |key: &str| -> u64 {
            log.lines()
                .find_map(|l| l.strip_prefix(&format!("stat::{key}:")))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        let execs = stat("number_of_executed_units");
        let crashes: Vec<std::path::PathBuf> = std::fs::read_dir(&artifacts)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| !n.ends_with(".log")))
            .collect();
        for c in &crashes {
            let keep = fuzz.join("regressions").join(name);
            std::fs::create_dir_all(&keep)?;
            std::fs::copy(c, keep.join(c.file_name().expect("a file name")))?;
        }
        // Merge the corpus down to the inputs that add coverage.
        let merged = fuzz.join("target").join("merged").join(name);
        let _ = std::fs::remove_dir_all(&merged);
        std::fs::create_dir_all(&merged)?;
        let status = Command::new(bins.join(name)).arg("-merge=1").arg(&merged).arg(&dir).output()?;
        if status.status.success() {
            std::fs::remove_dir_all(&dir)?;
            std::fs::rename(&merged, &dir)?;
        }
        let kept = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        eprintln!("xtask: {name}: {execs} executions, {kept} inputs kept, {} crash(es)", crashes.len());
        if !crashes.is_empty() || !out.status.success() {
            failed.push(format!(
                "{name} ({} crash(es), see {})",
                crashes.len(),
                artifacts.join("last.log").display()
            ));
        }
        rows.push(format!(
            "| {name} | {seconds} | {execs} | {kept} | {} | {} |",
            crashes.len(),
            if out.status.success() { "finished" } else { "stopped on a crash" }
        ));
    }
    let table = format!(
        "| target | seconds | executions | corpus kept | crashes | run |\n|---|---:|---:|---:|---:|---|\n{}\n",
        rows.join("\n")
    );
    println!("{table}");
    std::fs::write(fuzz.join("last-run.md"), table)?;
    if !failed.is_empty() {
        bail!(
            "{} target(s) crashed or failed: {}; their inputs are in fuzz/regressions/, which the replay test runs",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// The `[[bin]]` names of `fuzz/Cargo.toml`.
fn targets(fuzz: &std::path::Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(fuzz.join("Cargo.toml"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "ssl-fuzz-targets")
        .map(String::from)
        .collect())
}
