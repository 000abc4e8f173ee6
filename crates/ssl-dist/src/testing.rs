//! Multi-process tests: a test runs itself as several ranks. The test
//! calls [`run_ranks`], which starts its own test binary once per rank
//! (`<test> --exact`), with torchrun's variables (`MASTER_ADDR=127.0.0.1`,
//! a free port) and [`RANK_OF`] set; in those processes [`rank_dir`]
//! returns the folder to write results to, and the test does the rank's
//! work instead. Every rank has a deadline: past it, all are killed, so a
//! hang fails the test instead of stalling CI, and no process outlives it.
//!
//! ```no_run
//! #[test]
//! fn sums_over_two_ranks() {
//!     if let Some(dir) = ssl_dist::testing::rank_dir("sums_over_two_ranks") {
//!         // … this rank's work, results written under `dir` …
//!         return;
//!     }
//!     let run = ssl_dist::testing::run_ranks("sums_over_two_ranks", 2, std::time::Duration::from_secs(60), &[]);
//!     run.assert_success();
//! }
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Set in a rank's environment: the name of the test it runs.
pub const RANK_OF: &str = "SSL_DIST_TEST_RANK_OF";
/// Set in a rank's environment: the folder shared by the ranks and the test.
pub const DIR: &str = "SSL_DIST_TEST_DIR";

/// In a process started by [`run_ranks`] for `test`: the shared folder.
pub fn rank_dir(test: &str) -> Option<PathBuf> {
    (std::env::var(RANK_OF).ok()? == test).then(|| std::env::var_os(DIR).map(PathBuf::from)).flatten()
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// How the ranks of [`run_ranks`] ended.
pub struct RankRun {
    /// Each rank's exit status (`None`: killed at the deadline).
    pub status: Vec<Option<ExitStatus>>,
    /// Each rank's stdout and stderr.
    pub logs: Vec<String>,
    /// The folder the ranks wrote to (removed when this is dropped).
    pub dir: PathBuf,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// The ranks were killed at the deadline.
    pub timed_out: bool,
}

impl RankRun {
    /// Panics with every rank's log unless all ranks exited with 0.
    pub fn assert_success(&self) {
        if self.timed_out || self.status.iter().any(|s| !s.is_some_and(|s| s.success())) {
            panic!("{}", self.describe());
        }
    }

    /// Every rank's status and log, for failure messages.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "ranks ran {:.1} s{}\n",
            self.elapsed.as_secs_f64(),
            if self.timed_out { " and were killed at the deadline" } else { "" }
        );
        for (r, (s, log)) in self.status.iter().zip(&self.logs).enumerate() {
            out += &format!("--- rank {r}: {s:?}\n{log}\n");
        }
        out
    }
}

impl Drop for RankRun {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kills whatever is still running when dropped (a panicking test too).
struct Reaper(Vec<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Runs `test` (its name as `--exact` takes it) as `world` ranks of this
/// test binary on 127.0.0.1, with `env` added, and waits up to `timeout`.
pub fn run_ranks(test: &str, world: usize, timeout: Duration, env: &[(&str, String)]) -> RankRun {
    run_ranks_killing(test, world, timeout, env, None)
}

/// [`run_ranks`], and when the file `kill.1` appears in the shared folder,
/// `SIGKILL`s rank `kill.0` (a rank that dies mid-run).
pub fn run_ranks_killing(
    test: &str,
    world: usize,
    timeout: Duration,
    env: &[(&str, String)],
    kill: Option<(usize, &str)>,
) -> RankRun {
    let exe = std::env::current_exe().expect("the test binary's path");
    launch(world, timeout, kill, |_, dir| {
        let mut cmd = Command::new(&exe);
        cmd.args([test, "--exact", "--nocapture", "--test-threads=1"]).env(RANK_OF, test).env(DIR, dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    })
}

/// Runs `world` ranks of the command `make(rank, shared folder)` gives
/// (any program: a test binary, a training binary), with torchrun's
/// variables on 127.0.0.1 and a free port, each rank's output in
/// `rank-N.log`; past `timeout` all are killed. See [`run_ranks_killing`]
/// for `kill`.
pub fn launch(
    world: usize,
    timeout: Duration,
    kill: Option<(usize, &str)>,
    make: impl Fn(usize, &Path) -> Command,
) -> RankRun {
    let dir = unique_dir();
    let port = free_port().to_string();
    let started = Instant::now();
    let mut reaper = Reaper(Vec::new());
    for rank in 0..world {
        let log = std::fs::File::create(dir.join(format!("rank-{rank}.log"))).expect("creating a rank log");
        let mut cmd = make(rank, &dir);
        cmd.env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", world.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", &port)
            .env_remove("TORCHELASTIC_USE_AGENT_STORE")
            .env_remove("GLOO_SOCKET_IFNAME")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning a file handle"))
            .stderr(log);
        reaper.0.push(cmd.spawn().expect("starting a rank"));
    }
    let mut status: Vec<Option<ExitStatus>> = vec![None; world];
    let mut timed_out = false;
    loop {
        for (r, c) in reaper.0.iter_mut().enumerate() {
            if status[r].is_none() {
                status[r] = c.try_wait().ok().flatten();
            }
        }
        if status.iter().all(Option::is_some) {
            break;
        }
        if let Some((rank, file)) = kill {
            if status[rank].is_none() && dir.join(file).exists() {
                let _ = reaper.0[rank].kill();
            }
        }
        if started.elapsed() > timeout {
            timed_out = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(reaper);
    let logs = (0..world)
        .map(|r| std::fs::read_to_string(dir.join(format!("rank-{r}.log"))).unwrap_or_default())
        .collect();
    RankRun { status, logs, dir, elapsed: started.elapsed(), timed_out }
}

fn unique_dir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "ssl-dist-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("creating a temporary folder");
    dir
}

/// Writes named tensors for the test process to compare (`name` in the
/// shared folder, safetensors).
pub fn save(dir: &Path, name: &str, tensors: &[(String, tch::Tensor)]) {
    let named: Vec<(String, tch::Tensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.detach().to_device(tch::Device::Cpu).contiguous()))
        .collect();
    tch::Tensor::write_safetensors(&named, dir.join(name)).expect("writing rank results");
}

/// Reads what [`save`] wrote.
pub fn load(dir: &Path, name: &str) -> Vec<(String, tch::Tensor)> {
    tch::Tensor::read_safetensors(dir.join(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
}
