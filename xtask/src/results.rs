//! `cargo xtask results`: the tables of `docs/results.md`, written from the
//! run folders' reports kept under `docs/results/`, never by hand.
//!
//! ```text
//! cargo xtask results add RUN_DIR TABLE [NAME]   keep a run's reports in docs/results/TABLE/NAME
//! cargo xtask results                            rewrite every generated table of docs/results.md
//! cargo xtask results --check                    fail when a table differs from its reports (CI)
//! ```
//!
//! A generated table sits between `<!-- results-table: TABLE -->` and
//! `<!-- /results-table -->` in `docs/results.md`; its rows are the run
//! folders of `docs/results/TABLE/` in name order. A run folder keeps the
//! run's `report.json` and `config.json` (and with `--seeds`, those of
//! each `seed-S/`); the model, checkpoints and plots stay behind. A report
//! of `--seeds N` gives mean ± sd over the seeds, and the gains are paired
//! (the pretrained encoder minus its baseline with the same seed).

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const USAGE: &str = "\
usage: cargo xtask results add RUN_DIR TABLE [NAME] [--replace]
                                                      keep a run's reports in docs/results/TABLE/NAME
                                                      (--replace: a NAME kept before is replaced)
       cargo xtask results                            rewrite every generated table of docs/results.md
       cargo xtask results --check                    fail when a table differs from its reports (CI)";

const BEGIN: &str = "<!-- results-table: ";
const END: &str = "<!-- /results-table -->";

/// `cargo xtask results [--check | add RUN_DIR TABLE [NAME]]`.
pub fn results(args: &[String]) -> Result<()> {
    let root = crate::project_root();
    let doc = root.join("docs/results.md");
    let store = root.join("docs/results");
    match args.first().map(String::as_str) {
        None => {
            let n = rewrite(&doc, &store)?;
            eprintln!("xtask: {} generated tables in {} are up to date", n, doc.display());
            Ok(())
        }
        Some("--check") => {
            let text = read(&doc)?;
            let fresh = render_doc(&text, &store)?;
            if fresh != text {
                bail!(
                    "{} differs from the reports under {}: run `cargo xtask results` and commit the result",
                    doc.display(),
                    store.display()
                );
            }
            Ok(())
        }
        Some("add") => {
            let replace = args.iter().any(|a| a == "--replace");
            let positional: Vec<&String> = args[1..].iter().filter(|a| *a != "--replace").collect();
            let (Some(run), Some(table), None) = (positional.first(), positional.get(1), positional.get(3))
            else {
                bail!("usage: cargo xtask results add RUN_DIR TABLE [NAME] [--replace]");
            };
            let run = PathBuf::from(run);
            let name = match positional.get(2) {
                Some(n) => n.to_string(),
                None => run
                    .canonicalize()
                    .with_context(|| format!("{}: no such run folder", run.display()))?
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .context("the run folder has no name")?,
            };
            check_folder_name("TABLE", table)?;
            check_folder_name("NAME", &name)?;
            let dest = store.join(table).join(&name);
            let (copied, replaced) = keep_run_at(&run, &dest, replace)?;
            if replaced {
                eprintln!("xtask: replaced the reports kept before in {}", dest.display());
            }
            eprintln!("xtask: kept {copied} files of {} in {}", run.display(), dest.display());
            let n = rewrite(&doc, &store)?;
            if !read(&doc)?.contains(&format!("{BEGIN}{table} -->")) {
                eprintln!(
                    "xtask: docs/results.md has no table `{table}` yet: add the lines\n  {BEGIN}{table} -->\n  {END}\n\
                     where it belongs and run `cargo xtask results`"
                );
            }
            eprintln!("xtask: docs/results.md's {n} generated tables rewritten from their reports");
            Ok(())
        }
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => {
            bail!("unknown `cargo xtask results {other}`; expected nothing, --check or add\n{USAGE}")
        }
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Rewrites `doc`'s generated tables; returns how many there are.
fn rewrite(doc: &Path, store: &Path) -> Result<usize> {
    let text = read(doc)?;
    let fresh = render_doc(&text, store)?;
    if fresh != text {
        std::fs::write(doc, &fresh).with_context(|| format!("writing {}", doc.display()))?;
    }
    Ok(fresh.matches(BEGIN).count())
}

/// A TABLE or NAME of `results add`: one folder name under docs/results.
fn check_folder_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
        bail!("{what} `{name}` is not a folder name (no slashes, not empty, not starting with a dot)");
    }
    Ok(())
}

/// [`keep_run`] into `dest` as a whole: the files are written to a
/// folder beside it and moved into place only when every one was read and
/// checked, so a failure leaves what was kept before as it was. A `dest`
/// that exists is an error unless `replace`, when it is removed first
/// (returned `true`). Returns the files kept.
fn keep_run_at(run: &Path, dest: &Path, replace: bool) -> Result<(usize, bool)> {
    let exists = dest.exists();
    if exists && !replace {
        bail!(
            "{} already holds a kept run; pass --replace to replace it, or give another NAME",
            dest.display()
        );
    }
    let name = dest.file_name().context("the destination has no name")?.to_string_lossy();
    let staging = dest.with_file_name(format!(".{name}.partial"));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("removing {}, left by an earlier `results add`", staging.display()))?;
    }
    let copied = match keep_run(run, &staging) {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    if exists {
        std::fs::remove_dir_all(dest)
            .with_context(|| format!("removing {} to replace it", dest.display()))?;
    }
    std::fs::rename(&staging, dest)
        .with_context(|| format!("moving {} to {}", staging.display(), dest.display()))?;
    Ok((copied, exists))
}

/// Copies a run folder's reports and configs (and its seeds') to `dest`.
/// Each seed the report lists must have its report.
fn keep_run(run: &Path, dest: &Path) -> Result<usize> {
    let report = run.join("report.json");
    if !report.is_file() {
        bail!("{}: no report.json (has the run finished?)", run.display());
    }
    let mut copied = 0;
    let mut copy_from = |from: &Path, to: &Path| -> Result<()> {
        std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
        for f in ["report.json", "config.json"] {
            let src = from.join(f);
            if src.is_file() {
                // Parse first: a truncated report is refused, not kept.
                let v: Value = serde_json::from_str(&read(&src)?)
                    .with_context(|| format!("{}: not valid JSON", src.display()))?;
                let text = serde_json::to_string_pretty(&v)? + "\n";
                std::fs::write(to.join(f), text).with_context(|| format!("writing {}", to.display()))?;
                copied += 1;
            }
        }
        Ok(())
    };
    copy_from(run, dest)?;
    let summary: Value = serde_json::from_str(&read(&report)?)?;
    for entry in summary["runs"].as_array().into_iter().flatten() {
        let Some(name) = entry.as_str() else {
            bail!("{}: `runs` lists {entry}, not a folder name", report.display());
        };
        if name.is_empty() || name.contains(['/', '\\']) || name == ".." {
            bail!("{}: run `{name}` is not a folder name", report.display());
        }
        if !run.join(name).join("report.json").is_file() {
            bail!(
                "{}: lists the run `{name}`, but {}/report.json is missing",
                report.display(),
                run.join(name).display()
            );
        }
        copy_from(&run.join(name), &dest.join(name))?;
    }
    Ok(copied)
}

/// `text` with each generated table replaced by its rendering.
pub fn render_doc(text: &str, store: &Path) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(BEGIN) {
        let line_end = rest[at..].find('\n').map_or(rest.len(), |i| at + i + 1);
        let marker = rest[at..line_end].trim_end();
        let Some(table) = marker.strip_prefix(BEGIN).and_then(|m| m.strip_suffix(" -->")) else {
            bail!("docs/results.md: malformed marker `{marker}` (expected `{BEGIN}NAME -->`)");
        };
        let Some(end) = rest[line_end..].find(END).map(|i| line_end + i) else {
            bail!("docs/results.md: the table `{table}` has no closing `{END}`");
        };
        // A forgotten closing marker would take the next table's, and the
        // text between them with it.
        if rest[line_end..end].contains(BEGIN) {
            bail!("docs/results.md: the table `{table}` has no closing `{END}` before the next table begins");
        }
        out.push_str(&rest[..line_end]);
        out.push_str(&render_table(&store.join(table))?);
        rest = &rest[end..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One figure of a report: mean and sd (sd `None` for a single run).
fn figure(report: &Value, key: &str) -> Option<(f64, Option<f64>)> {
    if let Some(f) = report.get("figures").and_then(|f| f.get(key)) {
        return Some((f["mean"].as_f64()?, f["sd"].as_f64()));
    }
    if let Some(leaf) = key.strip_prefix("difference.") {
        let (a, b) = pair(report);
        let x = path(report, &format!("{a}.{leaf}"))?;
        let y = path(report, &format!("{b}.{leaf}"))?;
        return Some((x - y, None));
    }
    Some((path(report, key)?, None))
}

fn path(v: &Value, key: &str) -> Option<f64> {
    key.split('.').try_fold(v, |v, k| v.get(k))?.as_f64()
}

/// The pretrained section and its baseline.
fn pair(report: &Value) -> (&'static str, &'static str) {
    if report.get("pretrained").is_some() || report["difference_of"][0] == "pretrained" {
        ("pretrained", "from_scratch")
    } else {
        ("ssl", "random_init")
    }
}

fn pct(v: Option<(f64, Option<f64>)>, signed: bool) -> String {
    match v {
        None => "—".into(),
        Some((m, sd)) => {
            let m = if signed { format!("{:+.1}", 100.0 * m) } else { format!("{:.1}", 100.0 * m) };
            match sd {
                Some(s) => format!("{m} ± {:.1}", 100.0 * s),
                None => m,
            }
        }
    }
}

fn text_of(report: &Value, key: &str) -> String {
    match &report[key] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "—".into(),
    }
}

/// A column of a table: its heading, and a report field (`Text`), a leaf
/// of both sections as `pretrained / baseline` (`Pair`), their paired
/// difference (`Gain`) or seconds.
struct Column {
    heading: &'static str,
    key: &'static str,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Pair,
    Gain,
    Seconds,
}

const fn col(heading: &'static str, key: &'static str, kind: Kind) -> Column {
    Column { heading, key, kind }
}

const ENCODER_COLUMNS: &[Column] = &[
    col("method", "method", Kind::Text),
    col("data", "dataset", Kind::Text),
    col("device", "device", Kind::Text),
    col("epochs", "epochs", Kind::Text),
    col("kNN: SSL / random", "knn_top1", Kind::Pair),
    col("kNN gain", "knn_top1", Kind::Gain),
    col("linear: SSL / random", "linear_top1", Kind::Pair),
    col("linear gain", "linear_top1", Kind::Gain),
    col("linear 1%", "linear_top1_1pct", Kind::Pair),
    col("linear 10%", "linear_top1_10pct", Kind::Pair),
    col("fine-tuned 1%", "finetune_top1_1pct", Kind::Pair),
    col("fine-tuned 10%", "finetune_top1_10pct", Kind::Pair),
    col("fine-tuned", "finetune_top1", Kind::Pair),
    col("fine-tune gain", "finetune_top1", Kind::Gain),
    col("wall", "wall_s", Kind::Seconds),
];

const TEXT_COLUMNS: &[Column] = &[
    col("objective", "objective", Kind::Text),
    col("device", "device", Kind::Text),
    col("linear: pretrained / scratch", "linear_top1", Kind::Pair),
    col("linear gain", "linear_top1", Kind::Gain),
    col("linear 1%", "linear_top1_1pct", Kind::Pair),
    col("linear 10%", "linear_top1_10pct", Kind::Pair),
    col("fine-tuned 10%", "finetune_top1_10pct", Kind::Pair),
    col("fine-tuned", "finetune_top1", Kind::Pair),
    col("fine-tune gain", "finetune_top1", Kind::Gain),
    col("wall", "wall_s", Kind::Seconds),
];

/// A column's cell for one report (`None` when the report lacks it).
fn cell(r: &Value, c: &Column) -> Option<String> {
    let (a, b) = pair(r);
    match c.kind {
        Kind::Text => Some(text_of(r, c.key)),
        Kind::Pair => {
            let x = figure(r, &format!("{a}.{}", c.key))?;
            let y = figure(r, &format!("{b}.{}", c.key))?;
            Some(format!("{} / {}", pct(Some(x), false), pct(Some(y), false)))
        }
        Kind::Gain => figure(r, &format!("difference.{}", c.key)).map(|g| pct(Some(g), true)),
        Kind::Seconds => figure(r, c.key).map(|(m, _)| format!("{m:.0} s")),
    }
}

/// The markdown table of the run folders in `dir`.
fn render_table(dir: &Path) -> Result<String> {
    let mut runs: Vec<(String, Value)> = Vec::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("{}: the reports of this table are missing", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let report = entry.path().join("report.json");
        let v: Value = serde_json::from_str(&read(&report)?)
            .with_context(|| format!("{}: not valid JSON", report.display()))?;
        runs.push((entry.file_name().to_string_lossy().into_owned(), v));
    }
    runs.sort_by(|a, b| a.0.cmp(&b.0));
    let Some((_, first)) = runs.first() else {
        bail!("{}: no run folders", dir.display());
    };
    let columns = if pair(first).0 == "pretrained" { TEXT_COLUMNS } else { ENCODER_COLUMNS };
    // Columns that no run has are left out (fine-tuning is optional).
    let shown: Vec<&Column> = columns
        .iter()
        .filter(|c| c.kind == Kind::Text || runs.iter().any(|(_, r)| cell(r, c).is_some()))
        .collect();
    let mut out = String::from("| run | seeds |");
    let mut rule = String::from("|---|---:|");
    for c in &shown {
        let _ = write!(out, " {} |", c.heading);
        rule.push_str(if c.kind == Kind::Text { "---|" } else { "---:|" });
    }
    out.push('\n');
    out.push_str(&rule);
    out.push('\n');
    for (name, r) in &runs {
        let seeds = r["seeds"].as_array().map_or(1, Vec::len);
        let _ = write!(out, "| {name} | {seeds} |");
        for c in &shown {
            let _ = write!(out, " {} |", cell(r, c).unwrap_or_else(|| "—".into()));
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn put(dir: &Path, name: &str, report: Value) {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("report.json"), report.to_string()).unwrap();
    }

    fn single(method: &str, ssl: f64, rnd: f64) -> Value {
        json!({"method": method, "dataset": "mnist5k", "device": "cpu", "epochs": 15, "wall_s": 394.2,
               "ssl": {"knn_top1": ssl, "linear_top1": 0.943},
               "random_init": {"knn_top1": rnd, "linear_top1": 0.791}})
    }

    #[test]
    fn renders_single_runs_and_seed_summaries_with_paired_gains() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().join("vision");
        put(&t, "b-simclr", single("simclr", 0.825, 0.569));
        put(
            &t,
            "a-dino",
            json!({"method": "dino", "dataset": "mnist5k", "device": "cpu", "epochs": 10,
                   "seeds": [0, 1, 2], "difference_of": ["ssl", "random_init"],
                   "figures": {
                       "ssl.knn_top1": {"mean": 0.60, "sd": 0.012},
                       "random_init.knn_top1": {"mean": 0.57, "sd": 0.01},
                       "difference.knn_top1": {"mean": 0.03, "sd": 0.004},
                       "wall_s": {"mean": 380.0, "sd": 3.0}}}),
        );
        let doc = "# R\n\ntext\n<!-- results-table: vision -->\nstale\n<!-- /results-table -->\nafter\n";
        let out = render_doc(doc, tmp.path()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[3], "<!-- results-table: vision -->");
        assert_eq!(
            lines[4],
            "| run | seeds | method | data | device | epochs | kNN: SSL / random | kNN gain | \
             linear: SSL / random | linear gain | wall |"
        );
        assert!(!out.contains("fine-tuned") && !out.contains("linear 1%"), "no run has them");
        let dino = "| a-dino | 3 | dino | mnist5k | cpu | 10 | 60.0 ± 1.2 / 57.0 ± 1.0 | +3.0 ± 0.4 | — | — | 380 s |";
        assert_eq!(lines[6], dino);
        let simclr = "| b-simclr | 1 | simclr | mnist5k | cpu | 15 | 82.5 / 56.9 | +25.6 | 94.3 / 79.1 | +15.2 | 394 s |";
        assert_eq!(lines[7], simclr);
        assert_eq!(lines[8], END);
        assert_eq!(lines[9], "after");
        assert!(!out.contains("stale"));
        // Idempotent.
        assert_eq!(render_doc(&out, tmp.path()).unwrap(), out);
    }

    #[test]
    fn text_reports_get_the_pretrained_against_scratch_columns() {
        let tmp = tempfile::tempdir().unwrap();
        put(
            &tmp.path().join("text"),
            "mlm",
            json!({"objective": "mlm", "device": "cpu", "wall_s": 100.0,
                   "pretrained": {"linear_top1": 0.7, "finetune_top1": 0.8},
                   "from_scratch": {"linear_top1": 0.5, "finetune_top1": 0.75}}),
        );
        let out = render_doc("<!-- results-table: text -->\n<!-- /results-table -->\n", tmp.path()).unwrap();
        assert!(
            out.contains("| mlm | 1 | mlm | cpu | 70.0 / 50.0 | +20.0 | 80.0 / 75.0 | +5.0 | 100 s |"),
            "{out}"
        );
    }

    #[test]
    fn missing_reports_and_markers_are_errors_naming_them() {
        let tmp = tempfile::tempdir().unwrap();
        let e =
            render_doc("<!-- results-table: nope -->\n<!-- /results-table -->\n", tmp.path()).unwrap_err();
        assert!(format!("{e:#}").contains("nope"), "{e:#}");
        let e = render_doc("<!-- results-table: x -->\nno end\n", tmp.path()).unwrap_err();
        assert!(e.to_string().contains("no closing"), "{e}");
        let two = "<!-- results-table: x -->\nprose\n<!-- results-table: y -->\n<!-- /results-table -->\n";
        let e = render_doc(two, tmp.path()).unwrap_err();
        assert!(
            e.to_string().contains("`x` has no closing") && e.to_string().contains("before the next"),
            "{e}"
        );
        put(&tmp.path().join("bad"), "r", json!(1));
        std::fs::write(tmp.path().join("bad/r/report.json"), "{trunc").unwrap();
        let e = render_doc("<!-- results-table: bad -->\n<!-- /results-table -->\n", tmp.path()).unwrap_err();
        assert!(format!("{e:#}").contains("bad/r/report.json"), "{e:#}");
    }

    #[test]
    fn keeps_a_seeded_runs_reports_and_configs_but_not_its_weights() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("run");
        for s in ["seed-0", "seed-1"] {
            put(&run, s, single("simclr", 0.8, 0.5));
            std::fs::write(run.join(s).join("config.json"), "{}").unwrap();
            std::fs::write(run.join(s).join("model.safetensors"), "w").unwrap();
        }
        std::fs::write(run.join("report.json"), json!({"runs": ["seed-0", "seed-1"]}).to_string()).unwrap();
        let dest = tmp.path().join("kept");
        assert_eq!(keep_run(&run, &dest).unwrap(), 5);
        assert!(dest.join("seed-1/report.json").is_file() && dest.join("seed-0/config.json").is_file());
        assert!(!dest.join("seed-0/model.safetensors").exists());
        assert!(keep_run(&tmp.path().join("none"), &dest)
            .unwrap_err()
            .to_string()
            .contains("no report.json"));

        // Into a kept NAME: refused without --replace; with it, replaced.
        let kept = tmp.path().join("table/name");
        assert_eq!(keep_run_at(&run, &kept, false).unwrap(), (5, false));
        let e = keep_run_at(&run, &kept, false).unwrap_err().to_string();
        assert!(e.contains("already holds a kept run") && e.contains("--replace"), "{e}");
        assert_eq!(keep_run_at(&run, &kept, true).unwrap(), (5, true));
        // A listed seed without its report, or a corrupt report: an error,
        // and what was kept before stays whole.
        std::fs::remove_file(run.join("seed-1/report.json")).unwrap();
        let e = keep_run_at(&run, &kept, true).unwrap_err().to_string();
        assert!(e.contains("lists the run `seed-1`") && e.contains("missing"), "{e}");
        assert!(kept.join("seed-1/report.json").is_file(), "the earlier kept run is untouched");
        assert!(!tmp.path().join("table/.name.partial").exists(), "no half-made folder is left");
        assert!(check_folder_name("NAME", "../x").is_err() && check_folder_name("TABLE", "").is_err());
    }

    /// CI: the committed `docs/results.md` is what its reports give.
    #[test]
    fn docs_results_md_matches_its_stored_reports() {
        let root = crate::project_root();
        let text = std::fs::read_to_string(root.join("docs/results.md")).unwrap();
        let fresh = render_doc(&text, &root.join("docs/results")).unwrap();
        assert!(fresh == text, "docs/results.md is stale: run `cargo xtask results`");
    }
}
