//! `cargo xtask bench-compare`: each criterion bench of `benches/` beside
//! its PyTorch-ecosystem reference (`benches/reference/*.py`), in one run on
//! the same cores, and `BENCHMARKS.md` with the medians and the ratios
//! ours/theirs (time per batch or step: below 1 means we are faster), and
//! beside each time the peak memory of each side's process tree
//! ([`crate::memory`]), one case per process.
//!
//! Shared machines are noisy (two runs a week apart gave ratios up to 2×
//! apart on the same rows), so each case runs in `BENCH_ROUNDS` rounds
//! (default 3), ours and theirs one after the other, alternating which goes
//! first; a round's ratio pairs its two times, and a target is met by the
//! median of the rounds' ratios, reported with their range. The training
//! steps are also compared with `torch.compile` (`ID+compile`).

use crate::project_root;
use crate::setup::{run, setup, venv_python, Torch};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The packages the references import, pinned (torch comes with setup).
const REFERENCE_PACKAGES: [&str; 4] =
    ["torchvision==0.26.0", "torchaudio==2.11.0", "transformers==5.24.0", "lightly==1.6.0"];

/// A compared workload: the criterion bench file, its reference script,
/// the bench id, what the reference is, and the target on the time ratio
/// ours/theirs (the targets, as time ratios).
struct Case {
    bench: &'static str,
    id: &'static str,
    theirs: &'static str,
    max_ratio: f64,
    target: &'static str,
    /// The target on the peak-memory ratio ours/theirs (issue 17: 0.7 for
    /// the input pipelines, 1.0 for losses and training steps).
    mem_max: f64,
    /// The target on the time ratio to the `torch.compile` reference
    /// (`ID+compile`), where there is one.
    compiled_max: Option<f64>,
}

/// The suffix of a reference's compiled variant's id.
const COMPILED: &str = "+compile";

const CASES: [Case; 8] = [
    Case {
        bench: "augment",
        id: "cpu/simclr_views/32px/b256",
        theirs: "torchvision v2 + DataLoader workers",
        max_ratio: 1.0 / 3.0,
        target: "≥ 3× throughput",
        mem_max: 0.7,
        compiled_max: None,
    },
    Case {
        bench: "augment",
        id: "cpu/simclr_views/224px/b64",
        theirs: "torchvision v2 + DataLoader workers",
        max_ratio: 0.2,
        target: "≥ 5× throughput",
        mem_max: 0.7,
        compiled_max: None,
    },
    Case {
        bench: "augment",
        id: "cpu/jpeg_folder_views/224px/b64",
        theirs: "torchvision ImageFolder (PIL) + v2 + DataLoader workers",
        max_ratio: 0.5,
        target: "≥ 2× throughput",
        mem_max: 0.7,
        compiled_max: None,
    },
    Case {
        bench: "losses",
        id: "cpu/ntxent/512x128",
        theirs: "lightly NTXentLoss",
        max_ratio: 0.8,
        target: "time ≤ 0.8×",
        mem_max: 1.0,
        compiled_max: None,
    },
    Case {
        bench: "train_step",
        id: "cpu/simclr_step/resnet18_cifar/b128",
        theirs: "PyTorch eager (torchvision + lightly)",
        max_ratio: 0.65,
        target: "time ≤ 0.65×",
        mem_max: 1.0,
        compiled_max: Some(1.0),
    },
    Case {
        bench: "train_step",
        id: "cpu/bert_small_mlm_step/b8x128",
        theirs: "transformers BertForMaskedLM",
        max_ratio: 0.5,
        target: "time ≤ 0.5×",
        mem_max: 1.0,
        compiled_max: Some(1.0),
    },
    Case {
        bench: "text",
        id: "cpu/mlm_collate/b32x128",
        theirs: "transformers DataCollatorForLanguageModeling",
        max_ratio: 0.2,
        target: "≥ 5× throughput",
        mem_max: 0.7,
        compiled_max: None,
    },
    Case {
        bench: "audio",
        id: "cpu/logmel/32x1s",
        theirs: "torchaudio MelSpectrogram",
        max_ratio: 0.6,
        target: "time ≤ 0.6×",
        mem_max: 0.7,
        compiled_max: None,
    },
];

/// Which side of a case a process measures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Ours,
    Theirs,
    Compiled,
}

/// A case's times per round (seconds) and each side's largest peak memory.
#[derive(Default)]
struct Measured {
    ours: Vec<f64>,
    theirs: Vec<f64>,
    compiled: Vec<f64>,
    mem_ours: u64,
    mem_theirs: u64,
}

/// The median of `v` (the mean of the middle two for an even count; NaN
/// when empty).
fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Each round's ratio `ours / theirs`, paired by round.
fn paired_ratios(ours: &[f64], theirs: &[f64]) -> Vec<f64> {
    ours.iter().zip(theirs).map(|(o, t)| o / t).collect()
}

/// `min–max` of the rounds' ratios.
fn range(r: &[f64]) -> String {
    let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if r.is_empty() {
        "–".into()
    } else {
        format!("{lo:.2}–{hi:.2}")
    }
}

/// The reference script of a bench file: the same name, `.py`.
fn reference_script(bench: &str) -> String {
    format!("{bench}.py")
}

/// Installs the references' packages into the project's venv unless they
/// are there at the pinned versions.
fn ensure_reference_packages(python: &Path) -> Result<()> {
    let check = "import importlib.metadata as m, sys\n\
                 want = dict(p.split('==') for p in sys.argv[1:])\n\
                 sys.exit(any(m.version(k) != v for k, v in want.items()))";
    let ok = Command::new(python).args(["-c", check]).args(REFERENCE_PACKAGES).output();
    if ok.is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    eprintln!("xtask: installing {} into {}", REFERENCE_PACKAGES.join(" "), python.display());
    run(Command::new(python)
        .args(["-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"])
        .args(REFERENCE_PACKAGES))
    .context("pip install of the reference packages failed")
}

/// Criterion's median (seconds) of every bench under `target/criterion`,
/// by full id.
fn criterion_medians(dir: &Path) -> Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "benchmark.json")
                && p.parent().is_some_and(|q| q.ends_with("new"))
            {
                let json = |path: &Path| -> Result<serde_json::Value> {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    serde_json::from_str(&text).with_context(|| {
                        format!(
                            "{}: not valid JSON (left by an interrupted `cargo bench`? remove it)",
                            path.display()
                        )
                    })
                };
                let meta = json(&p)?;
                let est = json(&p.with_file_name("estimates.json"))?;
                let (Some(id), Some(ns)) =
                    (meta["full_id"].as_str(), est["median"]["point_estimate"].as_f64())
                else {
                    bail!("{}: unexpected criterion output", p.display());
                };
                out.insert(id.to_string(), ns * 1e-9);
            }
        }
    }
    Ok(out)
}

/// `RESULT <id> <seconds>` lines of a reference script's output.
fn parse_results(stdout: &str) -> BTreeMap<String, f64> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut it = l.strip_prefix("RESULT ")?.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cpu}, {cores} cores available to the process")
}

fn fmt_mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
}

fn fmt_time(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

/// `cargo xtask bench-compare [BENCH...]` (bench files: augment, losses,
/// train_step, text, audio; default all).
pub fn bench_compare(args: &[String]) -> Result<()> {
    let torch: Torch = setup()?;
    torch.print_summary();
    let python = match std::env::var_os("BENCH_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => venv_python()?,
    };
    if !python.is_file() {
        bail!(
            "{} not found: the references run in the project's venv (`cargo xtask setup` makes it), \
             or set BENCH_PYTHON to a Python with torch {}",
            python.display(),
            torch.version
        );
    }
    ensure_reference_packages(&python)?;
    let all: Vec<&str> = {
        let mut v: Vec<&str> = CASES.iter().map(|c| c.bench).collect();
        v.dedup();
        v
    };
    let benches: Vec<&str> = if args.is_empty() {
        all.clone()
    } else {
        for a in args {
            if !all.contains(&a.as_str()) {
                bail!("unknown bench `{a}` (expected some of {})", all.join(", "));
            }
        }
        all.iter().copied().filter(|b| args.iter().any(|a| a == b)).collect()
    };
    let root = project_root();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = std::time::Instant::now();
    eprintln!("xtask: building the benches");
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build.current_dir(&root).args(["bench", "-p", "ssl-benches", "--no-run"]);
    torch.apply(&mut build);
    run(&mut build)?;
    let rounds: usize = match std::env::var("BENCH_ROUNDS") {
        Ok(v) => {
            v.parse().ok().filter(|n| *n >= 1).with_context(|| format!("BENCH_ROUNDS={v}: not a count"))?
        }
        Err(_) => 3,
    };
    let criterion = root.join("target/criterion");
    // One process per case, side and round, its peak memory sampled (see
    // `crate::memory`); the rounds alternate which side goes first.
    let mut measured: BTreeMap<&str, Measured> = BTreeMap::new();
    for c in CASES.iter().filter(|c| benches.contains(&c.bench)) {
        let mut m = Measured::default();
        for round in 0..rounds {
            let mut sides = vec![Side::Ours, Side::Theirs];
            if c.compiled_max.is_some() {
                sides.push(Side::Compiled);
            }
            if round % 2 == 1 {
                sides.reverse();
            }
            for side in sides {
                if side == Side::Ours {
                    eprintln!(
                        "xtask: round {}/{rounds}: cargo bench --bench {} ({})",
                        round + 1,
                        c.bench,
                        c.id
                    );
                    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
                    cmd.current_dir(&root)
                        .args(["bench", "-p", "ssl-benches", "--bench", c.bench, "--", "--noplot"])
                        .env("BENCH_ONLY", c.id);
                    torch.apply(&mut cmd);
                    // cargo itself only waits for the bench binary: left out.
                    let ours = crate::memory::run_sampled(&mut cmd, true)?;
                    eprint!("{}", ours.stdout);
                    if !ours.status.success() {
                        bail!("cargo bench --bench {} failed:\n{}", c.bench, ours.stderr);
                    }
                    let t = criterion_medians(&criterion)?.get(c.id).copied().with_context(|| {
                        format!("criterion wrote no estimate for {} under {}", c.id, criterion.display())
                    })?;
                    m.ours.push(t);
                    m.mem_ours = m.mem_ours.max(ours.peak_bytes);
                    continue;
                }
                let id =
                    if side == Side::Compiled { format!("{}{COMPILED}", c.id) } else { c.id.to_string() };
                let script = root.join("benches/reference").join(reference_script(c.bench));
                eprintln!(
                    "xtask: round {}/{rounds}: {} {} ({id})",
                    round + 1,
                    python.display(),
                    script.display()
                );
                let out = crate::memory::run_sampled(
                    Command::new(&python)
                        .arg(&script)
                        .current_dir(root.join("benches/reference"))
                        .env("BENCH_THREADS", threads.to_string())
                        .env("BENCH_ONLY", &id),
                    false,
                )?;
                if !out.status.success() {
                    bail!("{} failed:\n{}", script.display(), out.stderr);
                }
                let t = parse_results(&out.stdout)
                    .get(&id)
                    .copied()
                    .with_context(|| format!("{} printed no RESULT line for {id}", script.display()))?;
                if side == Side::Compiled {
                    m.compiled.push(t);
                } else {
                    m.theirs.push(t);
                    m.mem_theirs = m.mem_theirs.max(out.peak_bytes);
                }
            }
        }
        measured.insert(c.id, m);
    }

    let mut md = String::from("# Benchmarks: ssl-rs against the PyTorch ecosystem\n\n");
    md += &format!(
        "Written by `cargo xtask bench-compare` ({:.0} s). Machine: {}; torch {} for both sides; \
         {threads} threads each side; {rounds} rounds.\n\n",
        started.elapsed().as_secs_f64(),
        machine(),
        torch.version
    );
    md += "Ours: `BENCH_ONLY=ID cargo bench -p ssl-benches --bench NAME` (criterion's median). Theirs: \
           `BENCH_ONLY=ID python benches/reference/NAME.py` in the project's venv (the median of timed runs \
           after warm-up), on the same cores; one process per case, side and round. Each case runs in \
           rounds, ours and theirs one after the other, the order alternating from round to round; the \
           times are the medians over the rounds, the ratio ours/theirs is the median of the rounds' \
           ratios (below 1 means ssl-rs is faster), with their range, and a target is met by that \
           median. Times are per batch or step. These machines are noisy: compare ratios, not times.\n\n";
    md += "| bench | ours | theirs | reference | ours/theirs | range | target | met | peak memory ours | theirs | ours/theirs | target | met |\n\
           |---|---:|---:|---|---:|---|---|---|---:|---:|---:|---|---|\n";
    for c in CASES.iter().filter(|c| benches.contains(&c.bench)) {
        let Some(m) = measured.get(c.id) else { continue };
        let mem = match (m.mem_ours, m.mem_theirs) {
            (o, t) if o > 0 && t > 0 => {
                let r = o as f64 / t as f64;
                format!(
                    "{} | {} | {r:.2} | ≤ {:.1} | {}",
                    fmt_mib(o),
                    fmt_mib(t),
                    c.mem_max,
                    if r <= c.mem_max { "yes" } else { "**no**" }
                )
            }
            _ => format!("– | – | – | ≤ {:.1} | not measured", c.mem_max),
        };
        let r = paired_ratios(&m.ours, &m.theirs);
        md += &format!(
            "| `{}` | {} | {} | {} | {:.2} | {} | {} (≤ {:.2}) | {} | {mem} |\n",
            c.id,
            fmt_time(median(&m.ours)),
            fmt_time(median(&m.theirs)),
            c.theirs,
            median(&r),
            range(&r),
            c.target,
            c.max_ratio,
            if median(&r) <= c.max_ratio { "yes" } else { "**no**" }
        );
    }
    let compiled: Vec<&Case> =
        CASES.iter().filter(|c| benches.contains(&c.bench) && c.compiled_max.is_some()).collect();
    if !compiled.is_empty() {
        md += "\nThe training steps against `torch.compile` (default mode, inductor; the model's forward and \
               backward compiled, the optimizer step eager; its compilation in the warm-up), the same rounds:\n\n\
               | bench | ours | torch.compile | ours/compiled | range | target | met |\n|---|---:|---:|---:|---|---|---|\n";
        for c in compiled {
            let (Some(m), Some(max)) = (measured.get(c.id), c.compiled_max) else { continue };
            let r = paired_ratios(&m.ours, &m.compiled);
            md += &format!(
                "| `{}{COMPILED}` | {} | {} | {:.2} | {} | time ≤ {max:.1}× | {} |\n",
                c.id,
                fmt_time(median(&m.ours)),
                fmt_time(median(&m.compiled)),
                median(&r),
                range(&r),
                if median(&r) <= max { "yes" } else { "**no**" }
            );
        }
    }
    md += "\nPeak memory: the largest sum of the proportional set size (Pss) of the case's process and all \
           its descendants (a DataLoader's workers with their main process; cargo, which only waits, left \
           out), sampled every 100 ms while one process ran that case alone (`BENCH_ONLY`); it includes each \
           runtime (libtorch, and Python with its modules) and the case's inputs.\n";
    md += "\nWhere a target is missed, `docs/benchmarks.md` gives the profile and the reason.\n";
    md += "GPU training throughput against PyTorch eager (no GPU in CI; `tools/device/bench_gpu.sh` on a \
           lent device) is in `docs/benchmarks.md`, section \"On a GPU\".\n";
    // BENCHMARKS.md holds every case: a run of some benches writes beside
    // it, so that the rows of the others are not dropped.
    let path = if args.is_empty() {
        root.join("BENCHMARKS.md")
    } else {
        let dir = root.join("target").join("bench-compare");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        dir.join("BENCHMARKS.md")
    };
    std::fs::write(&path, &md).with_context(|| format!("writing {}", path.display()))?;
    println!("{md}");
    eprintln!("xtask: wrote {}", path.display());
    if !args.is_empty() {
        eprintln!("xtask: some benches only: BENCHMARKS.md at the top keeps the full run's table");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_are_paired_and_summarised_by_their_median() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        // Round by round, not the ratio of the medians.
        let r = paired_ratios(&[1.0, 2.0, 4.0], &[2.0, 2.0, 2.0]);
        assert_eq!(r, [0.5, 1.0, 2.0]);
        assert_eq!(range(&r), "0.50–2.00");
        assert_eq!(range(&[]), "–");
    }

    #[test]
    fn reference_output_is_parsed() {
        let r = parse_results(
            "noise\nRESULT cpu/a/1 0.5\nRESULT bad\nRESULT cpu/b 1e-3\nRESULT cpu/a/1+compile 0.25\n",
        );
        assert_eq!(r.len(), 3);
        assert_eq!(r["cpu/a/1+compile"], 0.25);
        assert_eq!(r["cpu/a/1"], 0.5);
        assert_eq!(r["cpu/b"], 1e-3);
    }

    #[test]
    fn every_case_has_a_reference_that_reports_it() {
        let root = project_root();
        for c in &CASES {
            let script =
                std::fs::read_to_string(root.join("benches/reference").join(reference_script(c.bench)))
                    .unwrap();
            let bench = std::fs::read_to_string(root.join("benches/benches").join(format!("{}.rs", c.bench)))
                .unwrap();
            // The id's function part appears in both files (as a literal or format string).
            let name = c.id.split('/').nth(1).unwrap();
            assert!(script.contains(name) && bench.contains(name), "{}", c.id);
            if c.compiled_max.is_some() {
                assert!(script.contains("torch.compile") && script.contains(COMPILED), "{}", c.id);
            }
        }
    }
}
