//! `--nproc-per-node N`: starts N ranks of a training binary on this
//! machine, as `torchrun --standalone --nproc-per-node N` would, for users
//! without Python. Each rank gets torchrun's variables (`RANK`,
//! `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR=127.0.0.1`,
//! a free `MASTER_PORT`); the binaries give rank `LOCAL_RANK` the GPU of
//! that index. Rank 0's output is shown; the others' goes to a log that is
//! printed if that rank fails. Unless set already, `OMP_NUM_THREADS` and
//! `RAYON_NUM_THREADS` share the machine's cores among the ranks (torchrun
//! sets `OMP_NUM_THREADS=1`). SIGINT and SIGTERM are forwarded to every
//! rank. When a rank fails, the others are stopped (SIGTERM, then SIGKILL
//! after a grace period) and the launcher exits with the first failure's
//! code.

use anyhow::{bail, Context, Result};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The exit status of a rank stopped by a signal after its checkpoint
/// (`ssl_cli::EXIT_INTERRUPTED`; xtask does not link ssl-cli).
const INTERRUPTED: i32 = 75;

/// Grace period between SIGTERM and SIGKILL when stopping ranks.
const GRACE: Duration = Duration::from_secs(10);

/// Takes `--nproc-per-node N` (or `=N`) out of `args`.
pub fn take_nproc(args: &[String]) -> Result<(Option<usize>, Vec<String>)> {
    let mut rest = Vec::new();
    let mut nproc = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = if a == "--nproc-per-node" {
            Some(it.next().context("--nproc-per-node needs a number of ranks")?.clone())
        } else {
            a.strip_prefix("--nproc-per-node=").map(str::to_string)
        };
        match value {
            Some(v) => {
                let n: usize = v.parse().ok().filter(|&n| n >= 1).with_context(|| {
                    format!("--nproc-per-node {v:?}: expected a number of ranks, at least 1")
                })?;
                nproc = Some(n);
            }
            None => rest.push(a.clone()),
        }
    }
    Ok((nproc, rest))
}

/// How a launch ended: the first rank that failed and its exit code.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    /// The rank.
    pub rank: usize,
    /// Its exit code (128 + the signal when a signal ended it).
    pub code: i32,
}

fn code_of(status: ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Signals a rank and whatever it started: each rank leads its own
/// process group, so the group's id is the rank's pid.
fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the process group of a child we started.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(-(child.id() as i32), sig);
    }
}

/// Runs `nproc` ranks of `binary args` and waits for them; returns the
/// first failure, if any. Logs of ranks other than 0 go under `logs`.
pub fn run(binary: &Path, args: &[String], nproc: usize, logs: &Path) -> Result<Option<Failure>> {
    std::fs::create_dir_all(logs).with_context(|| format!("creating {}", logs.display()))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port on 127.0.0.1")?
        .port();
    // A signal to the launcher is forwarded to every rank; the ranks run
    // in their own process group, so a terminal's Ctrl-C reaches them only
    // through here.
    let received = Arc::new(AtomicUsize::new(0));
    // SIGHUP too: a closed terminal or ssh session must not leave ranks
    // running on the devices.
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        let r = received.clone();
        // SAFETY (inside signal-hook): the handler only stores an integer.
        signal_hook::flag::register_usize(sig, r, sig as usize).context("installing a signal handler")?;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / nproc).max(1).to_string();
    // Every rank's log is made before any rank starts, so that a failure
    // to make one (a full disk) leaves no rank waiting for the others.
    let mut logs_of: Vec<Option<(PathBuf, std::fs::File)>> = vec![None];
    for rank in 1..nproc {
        let path = logs.join(format!("rank-{rank}.log"));
        let f = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        logs_of.push(Some((path, f)));
    }
    let mut children: Vec<Child> = Vec::new();
    let mut log_paths: Vec<Option<PathBuf>> = Vec::new();
    for (rank, log) in logs_of.into_iter().enumerate() {
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env_remove("TORCHELASTIC_USE_AGENT_STORE")
            .stdin(Stdio::null())
            .process_group(0);
        for var in ["OMP_NUM_THREADS", "RAYON_NUM_THREADS"] {
            if std::env::var_os(var).is_none() {
                cmd.env(var, &threads);
            }
        }
        // A launcher killed outright (SIGKILL, which it cannot forward)
        // takes its ranks with it: each gets SIGTERM when it goes (not
        // exercised by a test: the tests run the launcher in-process).
        // SAFETY: prctl(2) in the forked child before exec, async-signal-safe.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        match log {
            Some((path, f)) => {
                cmd.stdout(f.try_clone()?).stderr(f);
                log_paths.push(Some(path));
            }
            None => log_paths.push(None),
        }
        match cmd.spawn() {
            Ok(c) => children.push(c),
            Err(e) => {
                for c in &children {
                    signal(c, libc::SIGKILL);
                }
                bail!("starting rank {rank} ({}): {e}", binary.display());
            }
        }
    }
    let mut status: Vec<Option<ExitStatus>> = vec![None; nproc];
    let mut failure: Option<Failure> = None;
    let mut stopping: Option<Instant> = None;
    let mut forwarded = false;
    loop {
        for (r, c) in children.iter_mut().enumerate() {
            if status[r].is_none() {
                if let Some(s) = c.try_wait()? {
                    status[r] = Some(s);
                    if !s.success() && failure.is_none() {
                        failure = Some(Failure { rank: r, code: code_of(s) });
                    }
                }
            }
        }
        if status.iter().all(Option::is_some) {
            break;
        }
        // Each signal to the launcher is forwarded: the first makes the
        // ranks checkpoint and stop together (no deadline: a checkpoint
        // may take a while), a second one ends them at once.
        let sig = received.swap(0, Ordering::SeqCst);
        if sig != 0 {
            forwarded = true;
            for (r, c) in children.iter().enumerate() {
                if status[r].is_none() {
                    signal(c, sig as i32);
                }
            }
        }
        // A rank that failed (not one stopping on a forwarded signal) stops
        // the others.
        let interrupted = forwarded && failure.as_ref().is_some_and(|f| f.code == INTERRUPTED);
        if failure.is_some() && stopping.is_none() && !interrupted {
            for (r, c) in children.iter().enumerate() {
                if status[r].is_none() {
                    signal(c, libc::SIGTERM);
                }
            }
            stopping = Some(Instant::now());
        }
        if stopping.is_some_and(|t| t.elapsed() > GRACE) {
            for (r, c) in children.iter().enumerate() {
                if status[r].is_none() {
                    signal(c, libc::SIGKILL);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(f) = failure.as_ref().filter(|f| f.code == INTERRUPTED) {
        eprintln!(
            "xtask: rank {} stopped on a signal after writing its checkpoint (exit status {INTERRUPTED}); rank 0 \
             printed the command that resumes",
            f.rank
        );
    } else if let Some(f) = &failure {
        eprintln!(
            "xtask: rank {} of {nproc} failed with exit code {}; the other ranks were stopped",
            f.rank, f.code
        );
        if let Some(Some(path)) = log_paths.get(f.rank) {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            eprintln!("--- the end of rank {}'s output ({}):", f.rank, path.display());
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
    Ok(failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An executable script in `dir`. `install` writes the file that is
    /// run, so no descriptor of it is ever open in this process: another
    /// test's child forked while it was open here would keep it open for
    /// writing, and running it would fail with "Text file busy" (ETXTBSY).
    fn script(dir: &Path, body: &str) -> PathBuf {
        let (text, path) = (dir.join("rank.txt"), dir.join("rank.sh"));
        std::fs::write(&text, format!("#!/bin/sh\n{body}\n")).unwrap();
        let status =
            std::process::Command::new("install").arg("-m").arg("755").arg(&text).arg(&path).status();
        assert!(status.unwrap().success(), "install {} {}", text.display(), path.display());
        path
    }

    #[test]
    fn nproc_is_taken_out_of_the_arguments() {
        let args: Vec<String> =
            ["--method", "byol", "--nproc-per-node", "2", "--epochs=3"].map(String::from).to_vec();
        let (n, rest) = take_nproc(&args).unwrap();
        assert_eq!(n, Some(2));
        assert_eq!(rest, ["--method", "byol", "--epochs=3"]);
        assert_eq!(take_nproc(&["--nproc-per-node=4".into()]).unwrap().0, Some(4));
        assert!(take_nproc(&["--nproc-per-node".into(), "0".into()]).is_err());
        assert!(take_nproc(&["--nproc-per-node".into()]).is_err());
    }

    #[test]
    fn every_rank_gets_torchruns_variables() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env");
        let bin = script(
            dir.path(),
            &format!(
                "echo \"$RANK $LOCAL_RANK $WORLD_SIZE $MASTER_ADDR $MASTER_PORT $1\" > {}.$RANK",
                out.display()
            ),
        );
        assert_eq!(run(&bin, &["arg".into()], 3, &dir.path().join("logs")).unwrap(), None);
        for r in 0..3 {
            let line = std::fs::read_to_string(format!("{}.{r}", out.display())).unwrap();
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(
                (f[0], f[1], f[2], f[3], f[5]),
                (r.to_string().as_str(), r.to_string().as_str(), "3", "127.0.0.1", "arg")
            );
            assert!(f[4].parse::<u16>().unwrap() > 0);
        }
    }

    #[test]
    fn a_failing_rank_stops_the_others_and_its_code_is_returned() {
        let dir = tempfile::tempdir().unwrap();
        // Rank 1 fails after a moment; rank 0 would run for a minute.
        let bin =
            script(dir.path(), "if [ \"$RANK\" = 1 ]; then sleep 0.3; echo boom >&2; exit 3; fi; sleep 60");
        let started = Instant::now();
        let failure = run(&bin, &[], 2, &dir.path().join("logs")).unwrap();
        assert_eq!(failure, Some(Failure { rank: 1, code: 3 }));
        assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
        let log = std::fs::read_to_string(dir.path().join("logs/rank-1.log")).unwrap();
        assert!(log.contains("boom"));
    }
}
