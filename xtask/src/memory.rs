//! The peak memory of a command, as `bench-compare` records it beside each
//! time: the sum of the proportional set size (`Pss` of
//! `/proc/PID/smaps_rollup`) of the process and all its descendants,
//! sampled every 100 ms while it runs. (Reading `smaps_rollup` walks the
//! process's page tables under its memory-map lock. It was every 20 ms
//! until 2026-12-04, when steps timed under it ran up to 1.6× slower than
//! alone, the BERT step 1.33 s against 0.81 s, a cause not isolated; the
//! benches' peaks last many iterations, far longer than 100 ms.) Pss counts a page shared by several
//! processes once in all (each gets its share), so a PyTorch `DataLoader`'s
//! forked workers are counted with the main process and copy-on-write
//! pages are not counted twice; a single-process program with threads is
//! measured the same way. Linux only.

use anyhow::{Context, Result};

/// The sampling period.
const SAMPLE_MS: u64 = 100;
use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What [`run_sampled`] saw.
pub struct Sampled {
    /// The command's exit status.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// The largest summed Pss seen, in bytes.
    pub peak_bytes: u64,
}

/// The parent pid in the text of `/proc/PID/stat` (the field after the
/// command name, which is in parentheses and may itself hold spaces or
/// parentheses).
pub fn parent_pid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The `Pss:` of a `/proc/PID/smaps_rollup` text, in bytes.
pub fn pss_bytes(smaps_rollup: &str) -> Option<u64> {
    let line = smaps_rollup.lines().find(|l| l.starts_with("Pss:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `root`'s descendants (children, their children, …) now.
fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
            if let Some(ppid) = parent_pid(&stat) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            out.push(c);
            stack.push(c);
        }
    }
    out
}

/// The summed Pss of `root`'s tree (without `root` itself when
/// `exclude_root`: a `cargo` that only waits for the binary it started).
fn tree_pss(root: u32, exclude_root: bool) -> u64 {
    let mut pids = descendants(root);
    if !exclude_root {
        pids.push(root);
    }
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
        .filter_map(|t| pss_bytes(&t))
        .sum()
}

/// How long one sampled process may run: `BENCH_TIMEOUT` seconds, else an
/// hour.
fn limit() -> Duration {
    let secs = std::env::var("BENCH_TIMEOUT").ok().and_then(|s| s.parse().ok()).unwrap_or(3600);
    Duration::from_secs(secs)
}

/// Runs `cmd` to its end, capturing its output, while a thread samples the
/// summed Pss of its process tree (see the module docs). Past [`limit`] it
/// is killed and the error names it.
pub fn run_sampled(cmd: &mut Command, exclude_root: bool) -> Result<Sampled> {
    run_sampled_within(cmd, exclude_root, limit())
}

fn run_sampled_within(cmd: &mut Command, exclude_root: bool, limit: Duration) -> Result<Sampled> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let pid = child.id();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0u64;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(tree_pss(pid, exclude_root));
                std::thread::sleep(Duration::from_millis(SAMPLE_MS));
            }
            peak
        })
    };
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(child.stdout.take().context("the child's stdout")?));
    let err = read(Box::new(child.stderr.take().context("the child's stderr")?));
    // A case that hangs (a DataLoader worker deadlock, say) is killed at
    // the deadline and named, instead of stalling bench-compare for ever.
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().with_context(|| format!("waiting for {cmd:?}"))? {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            done.store(true, Ordering::Relaxed);
            anyhow::bail!(
                "{cmd:?} ran past {} s and was killed (BENCH_TIMEOUT sets the limit, in seconds)",
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    done.store(true, Ordering::Relaxed);
    let peak_bytes = sampler.join().unwrap_or(0);
    Ok(Sampled {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        peak_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_texts_are_parsed() {
        assert_eq!(parent_pid("412 (python3 (x) y) S 17 412 412 0 -1"), Some(17));
        assert_eq!(parent_pid("garbage"), None);
        let rollup = "55c-7ff ---p 00000000 00:00 0 [rollup]\nRss:  1756 kB\nPss:   677 kB\n";
        assert_eq!(pss_bytes(rollup), Some(677 * 1024));
        assert_eq!(pss_bytes("Rss: 1 kB\n"), None);
    }

    #[test]
    fn a_child_and_its_own_child_are_measured_together() {
        // A shell (the root, left out) with two children holding 64 MiB
        // each at once.
        let hold = "python3 -c 'import time; b = bytearray(64 << 20); b[::4096] = b\"x\" * len(b[::4096]); \
                    time.sleep(1.0)'";
        let script = format!("{hold} & {hold}; wait");
        let s = run_sampled(Command::new("sh").args(["-c", &script]), true).unwrap();
        assert!(s.status.success(), "{}", s.stderr);
        let mib = s.peak_bytes as f64 / (1 << 20) as f64;
        assert!((128.0..400.0).contains(&mib), "peak {mib:.1} MiB for two processes of 64 MiB");
    }

    #[test]
    fn a_process_past_its_deadline_is_killed_and_named() {
        let t = std::time::Instant::now();
        let Err(e) = run_sampled_within(Command::new("sleep").arg("30"), true, Duration::from_secs(1)) else {
            panic!("a 30 s sleep finished within 1 s");
        };
        assert!(e.to_string().contains("ran past 1 s and was killed"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }
}
