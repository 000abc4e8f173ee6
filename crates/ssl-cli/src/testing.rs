//! Kill-and-resume checks of a training binary, for the binaries' CLI
//! tests: a run killed with SIGKILL at a step the test picks, or stopped
//! with SIGTERM, then resumed, must leave the same `model.safetensors`
//! (byte for byte), `report.json` and `metrics.jsonl` rows (timings aside)
//! as the same run uninterrupted. These helpers panic on a failed check:
//! they are test assertions.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether a report key holds a timing or a throughput (`*wall_s`,
/// `*_per_s`, `data_wait_fraction`), left out of comparisons.
pub fn is_timing(key: &str) -> bool {
    key.ends_with("wall_s") || key.ends_with("_per_s") || key == "data_wait_fraction"
}

/// How long one run of a check may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(300);

/// `value` without its timings ([`is_timing`]), at any depth.
pub fn without_timings(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter().filter(|(k, _)| !is_timing(k)).map(|(k, v)| (k.clone(), without_timings(v))).collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_timings).collect()),
        other => other.clone(),
    }
}

/// What a finished run leaves to compare.
#[derive(Debug)]
pub struct RunFiles {
    /// `model.safetensors` (or `hf/model.safetensors`), as bytes.
    pub model: Vec<u8>,
    /// `report.json` without timings.
    pub report: Value,
    /// The rows of `metrics.jsonl` without timings.
    pub rows: Vec<Value>,
}

impl RunFiles {
    /// Reads the run folder `out`.
    pub fn read(out: &Path) -> Self {
        let read = |name: &str| {
            std::fs::read(out.join(name)).unwrap_or_else(|e| panic!("{}: {e}", out.join(name).display()))
        };
        let report: Value = serde_json::from_slice(&read("report.json")).expect("report.json is JSON");
        let rows = String::from_utf8(read("metrics.jsonl"))
            .expect("metrics.jsonl is UTF-8")
            .lines()
            .map(|l| without_timings(&serde_json::from_str(l).expect("each metrics row is JSON")))
            .collect();
        // train-text exports its model in the transformers layout.
        let model = ["model.safetensors", "hf/model.safetensors"]
            .into_iter()
            .find(|m| out.join(m).exists())
            .unwrap_or_else(|| panic!("{}: no model.safetensors", out.display()));
        Self { model: read(model), report: without_timings(&report), rows }
    }

    /// The number of optimizer steps in the log.
    pub fn steps(&self) -> usize {
        self.rows.iter().filter_map(|r| r["step"].as_u64()).max().unwrap_or(0) as usize
    }

    /// Panics, naming the first difference, unless `self` equals `want`.
    pub fn assert_same(&self, want: &RunFiles, what: &str) {
        assert!(self.model == want.model, "{what}: model.safetensors differs from the uninterrupted run's");
        assert_eq!(self.rows.len(), want.rows.len(), "{what}: metrics.jsonl has another number of rows");
        for (got, want) in self.rows.iter().zip(&want.rows) {
            assert_eq!(got, want, "{what}: a metrics.jsonl row differs");
        }
        assert_eq!(self.report, want.report, "{what}: report.json differs (timings aside)");
    }
}

fn command(binary: &Path, args: &[String], out: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(binary);
    cmd.args(args).arg("--out").arg(out).args(extra).stdin(Stdio::null());
    cmd
}

/// Starts a run with its output in `out.log` beside `out`.
fn spawn(mut cmd: Command, out: &Path) -> (Child, PathBuf) {
    let log = out.with_extension("log");
    std::fs::create_dir_all(log.parent().expect("a parent folder")).unwrap();
    let f = std::fs::File::create(&log).unwrap();
    let child = cmd.stdout(f.try_clone().unwrap()).stderr(f).spawn().expect("starting the binary");
    (child, log)
}

/// Waits for `child`, failing the test after [`DEADLINE`].
fn wait(child: &mut Child, log: &Path) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("the run did not finish within {DEADLINE:?}; its output: {}", read_log(log));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn read_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Runs to the end and returns its output; panics unless it succeeds.
pub fn run_to_end(binary: &Path, args: &[String], out: &Path, extra: &[&str]) -> String {
    let (mut child, log) = spawn(command(binary, args, out, extra), out);
    let status = wait(&mut child, &log);
    let text = read_log(&log);
    assert!(status.success(), "{} failed ({status}): {text}", binary.display());
    text
}

/// The step of the newest checkpoint `out/checkpoints/latest` points to.
fn latest_step(out: &Path) -> Option<usize> {
    let name = std::fs::read_to_string(out.join("checkpoints/latest")).ok()?;
    name.trim().strip_prefix("step-")?.parse().ok()
}

/// A step in `1..steps` (at least 1): `SSL_RS_KILL_AT` when set, else one
/// drawn from the clock; printed, so a failure can be replayed.
fn pick_step(steps: usize) -> usize {
    let at = match std::env::var("SSL_RS_KILL_AT") {
        Ok(v) => v.parse().expect("SSL_RS_KILL_AT is a step number"),
        Err(_) => {
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
            1 + nanos as usize % (steps - 1).max(1)
        }
    };
    eprintln!("killing at step {at} of {steps} (replay with SSL_RS_KILL_AT={at})");
    at
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The run `dir/full` of `binary args`, uninterrupted: what
/// [`kill_and_resume`] and [`sigterm_and_resume`] compare with.
pub fn uninterrupted(binary: &Path, args: &[&str], dir: &Path) -> RunFiles {
    let full_dir = dir.join("full");
    run_to_end(binary, &owned(args), &full_dir, &[]);
    RunFiles::read(&full_dir)
}

/// A run `dir/killed` of `binary args` with a checkpoint every step,
/// killed with SIGKILL once its checkpoint reaches a step the test picks,
/// then resumed with `--resume`: its files must equal `full`'s (the
/// [`uninterrupted`] run). Returns the step the killed run had
/// checkpointed.
pub fn kill_and_resume(binary: &Path, args: &[&str], dir: &Path, full: &RunFiles) -> usize {
    let args = owned(args);
    let steps = full.steps();
    assert!(steps >= 3, "the run has {steps} steps: too few to be killed in the middle");
    let at = pick_step(steps);
    let out = dir.join("killed");
    let every = ["--checkpoint-every-steps", "1"];
    let (mut child, log) = spawn(command(binary, &args, &out, &every), &out);
    let started = Instant::now();
    loop {
        if latest_step(&out).is_some_and(|s| s >= at) {
            child.kill().unwrap();
            break;
        }
        if let Some(s) = child.try_wait().unwrap() {
            panic!("the run ended ({s}) before its checkpoint reached step {at}: {}", read_log(&log));
        }
        assert!(started.elapsed() < DEADLINE, "no checkpoint at step {at} within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    let status = wait(&mut child, &log);
    assert!(!status.success(), "the killed run exited normally: {}", read_log(&log));
    let killed_at = latest_step(&out).expect("a checkpoint");
    assert!(killed_at < steps, "the run was killed after its last step ({killed_at} of {steps})");
    assert!(!out.join("report.json").exists(), "the killed run wrote its report: it was killed too late");
    let text = run_to_end(binary, &args, &out, &["--checkpoint-every-steps", "1", "--resume"]);
    assert!(text.contains("resuming from"), "the resumed run did not say where it resumed: {text}");
    RunFiles::read(&out).assert_same(full, &format!("killed after step {killed_at}, resumed"));
    killed_at
}

/// A run `dir/stopped` of `binary args` sent SIGTERM once its first
/// checkpoint exists (with `--checkpoint-every 1`, the end of the first
/// epoch), which must exit with [`crate::EXIT_INTERRUPTED`], printing a
/// command that resumes; that command, run, must end with `full`'s files
/// (the [`uninterrupted`] run). Returns the step it stopped at.
pub fn sigterm_and_resume(binary: &Path, args: &[&str], dir: &Path, full: &RunFiles) -> usize {
    let args = owned(args);
    let out = dir.join("stopped");
    let (mut child, log) = spawn(command(binary, &args, &out, &[]), &out);
    let started = Instant::now();
    while latest_step(&out).is_none() {
        if let Some(s) = child.try_wait().unwrap() {
            panic!("the run ended ({s}) before its first checkpoint: {}", read_log(&log));
        }
        assert!(started.elapsed() < DEADLINE, "no checkpoint within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("running kill");
    assert!(sent.success(), "kill -TERM {pid} failed");
    let status = wait(&mut child, &log);
    let text = read_log(&log);
    assert_eq!(status.code(), Some(crate::EXIT_INTERRUPTED), "SIGTERM: {text}");
    let stopped_at = latest_step(&out).expect("a checkpoint");
    assert!(stopped_at < full.steps(), "stopped after the last step: {text}");
    assert!(text.contains(&format!("after step {stopped_at} of {}", full.steps())), "{text}");
    let line = text
        .lines()
        .skip_while(|l| !l.starts_with("resume with:"))
        .nth(1)
        .unwrap_or_else(|| panic!("no resume command printed: {text}"));
    let words = shell_words::split(line.trim()).expect("the resume command is shell-quoted");
    assert!(words.iter().any(|w| w == "--resume"), "{line}");
    let mut cmd = Command::new(&words[0]);
    cmd.args(&words[1..]).stdin(Stdio::null());
    let (mut child, log) = spawn(cmd, &out.with_extension("resumed"));
    let status = wait(&mut child, &log);
    assert!(status.success(), "the printed resume command failed: {}", read_log(&log));
    RunFiles::read(&out).assert_same(full, &format!("stopped by SIGTERM after step {stopped_at}, resumed"));
    stopped_at
}

/// `binary ARGS --print-config`: the resolved config it printed, and the
/// printed text.
fn printed_config(binary: &Path, args: &[&str]) -> (String, Value) {
    let o = Command::new(binary).args(args).arg("--print-config").output().expect("running the binary");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{} {args:?} --print-config failed:\n{stderr}", binary.display());
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("--print-config printed no JSON ({e}):\n{text}"));
    (text, v)
}

/// `binary --print-config` with `args` (stdout parsed), then the printed
/// config given back as `--config FILE` alone (written in `dir`): both must
/// resolve to the same config. Returns the first.
pub fn print_config_round_trips(binary: &Path, args: &[&str], dir: &Path) -> Value {
    let (text, first) = printed_config(binary, args);
    let file = dir.join("printed-config.json");
    std::fs::write(&file, text).expect("writing the printed config");
    let (_, again) = printed_config(binary, &["--config", file.to_str().expect("a UTF-8 path")]);
    assert_eq!(again, first, "the printed config's options resolve to another config");
    first
}

/// The shared run options resolve the same way in every binary (checked
/// on `binary ARGS … --print-config`, `args` choosing small data): the
/// warmup is `--warmup-epochs` (or the binary's `default_warmup`) but at
/// most `--epochs` − 1; `--seed`, `--log-every`, the three checkpoint
/// intervals, `--no-bf16` and `--accumulate` reach the trainer's config as
/// given; `--sync-bn` reaches the config's `sync_bn` where the binary
/// records one (`batch_norm`); and `--batch-size too_big` (more than the
/// data holds) is refused with the same words.
pub fn shared_options_resolve_alike(
    binary: &Path,
    args: &[&str],
    too_big: &str,
    default_warmup: u64,
    batch_norm: bool,
) {
    let config = |extra: &[&str]| {
        let all: Vec<&str> = args.iter().chain(extra).copied().collect();
        printed_config(binary, &all).1
    };
    let train = |extra: &[&str]| config(extra)["train"].clone();
    let t = train(&["--epochs", "1"]);
    assert_eq!((&t["warmup_epochs"], &t["log_every"]), (&0.into(), &10.into()), "{}: {t}", binary.display());
    let c = config(&["--epochs", "20"]);
    let t = &c["train"];
    assert_eq!(t["warmup_epochs"], default_warmup, "{}: the default warmup: {t}", binary.display());
    assert_eq!(t["bf16"], true, "{}: bf16 unless --no-bf16: {t}", binary.display());
    if batch_norm {
        assert_eq!(c["sync_bn"], false, "{}: {c}", binary.display());
    }
    let c = config(&[
        "--epochs",
        "20",
        "--seed",
        "7",
        "--no-bf16",
        "--checkpoint-every-steps",
        "3",
        "--checkpoint-every-minutes",
        "1.5",
        "--sync-bn",
    ]);
    let t = &c["train"];
    let got =
        (&c["seed"], &t["seed"], &t["bf16"], &t["checkpoint_every_steps"], &t["checkpoint_every_minutes"]);
    let want = (&7.into(), &7.into(), &false.into(), &3.into(), &1.5.into());
    assert_eq!(got, want, "{}: {c}", binary.display());
    if batch_norm {
        assert_eq!(c["sync_bn"], true, "{}: {c}", binary.display());
    }
    let t = train(&["--epochs", "3", "--warmup-epochs", "7"]);
    assert_eq!(t["warmup_epochs"], 2, "{}: at most epochs - 1: {t}", binary.display());
    let t = train(&[
        "--epochs",
        "3",
        "--warmup-epochs",
        "1",
        "--log-every",
        "5",
        "--checkpoint-every",
        "0",
        "--accumulate",
        "2",
    ]);
    let got = (&t["warmup_epochs"], &t["log_every"], &t["checkpoint_every"], &t["accumulate"]);
    assert_eq!(got, (&1.into(), &5.into(), &0.into(), &2.into()), "{}: {t}", binary.display());
    let o = Command::new(binary)
        .args(args)
        .args(["--batch-size", too_big, "--print-config"])
        .output()
        .expect("running the binary");
    let stderr = String::from_utf8_lossy(&o.stderr);
    let want = format!("--batch-size {too_big} is larger than the ");
    assert!(
        !o.status.success() && stderr.contains(&want) && stderr.contains("or less"),
        "{}: a batch larger than the data: {stderr}",
        binary.display()
    );
}

/// A page as headless Chromium shows it.
#[derive(Debug)]
pub struct Rendered {
    /// The DOM after the page's scripts ran (`--dump-dom`).
    pub dom: String,
    /// Every console message the page logged, errors included.
    pub console: Vec<String>,
    /// A screenshot of the page's top, as a PNG file.
    pub screenshot: PathBuf,
}

/// The Chromium binary: `$SSL_RS_CHROMIUM`, else `chromium` or
/// `chromium-browser` on the PATH; panics saying how to install it
/// (`cargo xtask test` installs Debian's `chromium` when it is missing).
pub fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("SSL_RS_CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            if dir.join(name).is_file() {
                return dir.join(name);
            }
        }
    }
    panic!(
        "this test opens report.html in headless Chromium, which is not installed: `cargo xtask test` installs \
         it (Debian's chromium), or `apt-get install chromium`, or set SSL_RS_CHROMIUM to its binary"
    )
}

/// Opens `page` in headless Chromium twice (each run within a minute):
/// once for its DOM and console, once for a `width` × `height` screenshot
/// written to `dir`.
pub fn render_in_chromium(page: &Path, dir: &Path, (width, height): (u32, u32)) -> Rendered {
    let url = format!("file://{}", page.canonicalize().expect("the page exists").display());
    // Output goes to files: the DOM outgrows a pipe's buffer, and an
    // unread pipe would stall chromium.
    let run = |args: &[String], name: &str| -> std::process::Output {
        let profile = dir.join(format!("chromium-profile-{name}"));
        let (out, err) = (dir.join(format!("chromium-{name}.out")), dir.join(format!("chromium-{name}.err")));
        let file = |p: &Path| std::fs::File::create(p).expect("creating chromium's output file");
        let mut child = Command::new(chromium())
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(file(&out))
            .stderr(file(&err))
            .spawn()
            .expect("starting chromium");
        let started = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("waiting for chromium") {
                break s;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("chromium did not finish within 60 s on {url}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let read = |p: &Path| std::fs::read(p).expect("reading chromium's output");
        std::process::Output { status, stdout: read(&out), stderr: read(&err) }
    };
    let o = run(&["--enable-logging=stderr".into(), "--v=0".into(), "--dump-dom".into()], "dom");
    assert!(o.status.success(), "chromium --dump-dom failed: {}", String::from_utf8_lossy(&o.stderr));
    let dom = String::from_utf8_lossy(&o.stdout).into_owned();
    let console = String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    let screenshot = dir.join("screenshot.png");
    let o = run(
        &[format!("--window-size={width},{height}"), format!("--screenshot={}", screenshot.display())],
        "shot",
    );
    assert!(
        o.status.success() && screenshot.is_file(),
        "chromium --screenshot failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Rendered { dom, console, screenshot }
}
