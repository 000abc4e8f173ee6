//! `--config FILE`: a binary's options from a TOML or JSON file, with the
//! command line's own flags overriding them.
//!
//! The file is read before clap parses anything: its keys become flags
//! placed ahead of the command line's, less the options the command line
//! gives itself, so a flag given on the command line wins (a repeatable
//! `--set` adds to the file's, and wins for the same key). Keys are the options' names as in `--help`,
//! with `-` or `_` (`batch-size` or `batch_size`). Values are what the flag
//! takes: a number or a string; `true` for a switch (`false` leaves it
//! off); a list for a repeatable option (`set = ["out=256"]`, or a table
//! `[set] out = 256`) or a comma-separated one (`finetune-fractions =
//! [0.1, 1]`; an empty list, like `null`, leaves the default).
//!
//! A run's own `config.json` is such a file: its `args` object holds the
//! options the run was started with, so `--config runs/X/config.json`
//! starts the same run again. Every other key of a `config.json` (the
//! resolved config) is then ignored.
//!
//! Errors name the file and the key: an unknown key (with the known ones),
//! a value of the wrong type, a file that is neither valid TOML nor JSON.

use clap::{ArgAction, Command};
use serde_json::Value;
use ssl_core::{Error, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Options that say how to read a config rather than what to run; a
/// file's value for them is ignored (a run's `config.json` holds them).
pub(crate) const META: [&str; 3] = ["config", "print_config", "resume"];

/// `argv` (program name first) with a `--config FILE` replaced by the
/// file's options, placed before the rest of the command line so that the
/// command line's flags override them. Without `--config`, `argv` as it is.
/// `cmd` is the binary's clap command (`Args::command()`), used to map keys
/// to flags and to check each value.
pub fn expand(cmd: &Command, argv: Vec<OsString>) -> Result<Vec<OsString>> {
    let mut rest = Vec::with_capacity(argv.len());
    let mut file: Option<PathBuf> = None;
    let mut it = argv.into_iter();
    let program = it.next().unwrap_or_else(|| OsString::from(cmd.get_name()));
    while let Some(a) = it.next() {
        let path = if a == "--config" {
            Some(
                it.next()
                    .map(PathBuf::from)
                    .ok_or_else(|| Error::Config("--config needs a file (TOML or JSON)".into()))?,
            )
        } else {
            a.to_str().and_then(|s| s.strip_prefix("--config=")).map(PathBuf::from)
        };
        match path {
            Some(p) if file.is_some() => {
                return Err(Error::Config(format!(
                    "--config is given twice ({} and {}); merge them into one file",
                    file.as_ref().map(|f| f.display().to_string()).unwrap_or_default(),
                    p.display()
                )))
            }
            Some(p) => {
                // Kept, so the parsed options record which file was read.
                rest.push(OsString::from("--config"));
                rest.push(p.clone().into_os_string());
                file = Some(p);
            }
            None => rest.push(a),
        }
    }
    let mut out = vec![program];
    if let Some(path) = file {
        let table = read(&path)?;
        // The options the command line gives itself.
        let given: Vec<String> = rest
            .iter()
            .filter_map(|a| a.to_str()?.strip_prefix("--"))
            .map(|a| a.split('=').next().unwrap_or_default().to_string())
            .collect();
        // The binary's name as it was run (clap's is the crate's).
        let bin = Path::new(&out[0])
            .file_name()
            .map_or_else(|| cmd.get_name().to_string(), |n| n.to_string_lossy().into_owned());
        out.extend(flags(cmd, &bin, &table, &path, &given)?.into_iter().map(OsString::from));
    }
    out.extend(rest);
    Ok(out)
}

/// The options of `path`: a TOML table (`.toml`) or a JSON object (any
/// other name); a run's `config.json` gives its `args` object.
fn read(path: &Path) -> Result<serde_json::Map<String, Value>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("--config {}: cannot read: {e}", path.display())))?;
    let is_toml = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    let value: Value = if is_toml {
        let t: toml::Table = toml::from_str(&text)
            .map_err(|e| Error::Config(format!("--config {}: not valid TOML: {e}", path.display())))?;
        if let Some(key) = non_finite("", &t) {
            return Err(Error::Config(format!("--config {}: `{key}`: not a finite number", path.display())));
        }
        serde_json::to_value(t).map_err(|e| Error::Config(format!("--config {}: {e}", path.display())))?
    } else {
        serde_json::from_str(&text).map_err(|e| {
            Error::Config(format!(
                "--config {}: not valid JSON: {e} (a TOML file needs the .toml extension)",
                path.display()
            ))
        })?
    };
    let Value::Object(mut map) = value else {
        return Err(Error::Config(format!("--config {}: expected a table of options", path.display())));
    };
    match map.remove("args") {
        Some(Value::Object(args)) => Ok(args),
        Some(_) => {
            Err(Error::Config(format!("--config {}: `args` is not a table of options", path.display())))
        }
        // A run's resolved config from before runs recorded their options.
        None if map.contains_key("train") && map.contains_key("model") => Err(Error::Config(format!(
            "--config {}: a run's config.json without `args` (the options it was started with), written \
             before runs recorded them; start it with its flags, or give a file of options",
            path.display()
        ))),
        None => Ok(map),
    }
}

/// The flags `table` stands for, each checked against `cmd` (the binary
/// `bin`, for messages), less those
/// the command line gives itself (`given`, long names): a flag replaces the
/// file's value, except for a repeatable option such as `--set`, whose
/// entries from the command line come after the file's (and so win for
/// the same key).
fn flags(
    cmd: &Command,
    bin: &str,
    table: &serde_json::Map<String, Value>,
    path: &Path,
    given: &[String],
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (key, value) in table {
        let id = key.replace('-', "_");
        if META.contains(&id.as_str()) {
            continue;
        }
        let Some(arg) = cmd.get_arguments().find(|a| a.get_id().as_str() == id && a.get_long().is_some())
        else {
            let mut known: Vec<&str> = cmd
                .get_arguments()
                .filter_map(|a| a.get_long())
                .filter(|l| !META.contains(&l.replace('-', "_").as_str()) && *l != "help" && *l != "version")
                .collect();
            known.sort_unstable();
            // The closest option by name, as clap suggests for a mistyped flag.
            let wanted = key.replace('_', "-");
            let closest = known
                .iter()
                .map(|k| (strsim::jaro_winkler(&wanted, k), *k))
                .filter(|(score, _)| *score > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, k)| format!(" did you mean `{k}`?"))
                .unwrap_or_default();
            return Err(Error::Config(format!(
                "--config {}: `{key}` is not an option of {bin};{closest} the options are: {}",
                path.display(),
                known.join(", ")
            )));
        };
        let name = arg.get_long().unwrap_or_default();
        let repeatable = matches!(arg.get_action(), ArgAction::Append) && arg.get_value_delimiter().is_none();
        if !repeatable && given.iter().any(|g| g == name) {
            continue;
        }
        let long = format!("--{name}");
        let bad = |why: String| Error::Config(format!("--config {}: `{key}`: {why}", path.display()));
        let mut these = Vec::new();
        match (arg.get_action(), value) {
            (_, Value::Null) => {}
            (ArgAction::SetTrue, Value::Bool(true)) => these.push(long.clone()),
            (ArgAction::SetTrue, Value::Bool(false)) => {}
            (ArgAction::SetTrue, v) => return Err(bad(format!("expected true or false, got {v}"))),
            // An empty list leaves the option's default (the flag cannot
            // say "none").
            (_, Value::Array(items)) if items.is_empty() => {}
            (_, Value::Array(items)) if arg.get_value_delimiter().is_some() => {
                let d = arg.get_value_delimiter().unwrap_or(',');
                let parts: std::result::Result<Vec<String>, String> =
                    items.iter().map(|v| scalar(key, v)).collect();
                these.push(format!("{long}={}", parts.map_err(bad)?.join(&d.to_string())));
            }
            (ArgAction::Append, Value::Array(items)) => {
                for v in items {
                    these.push(format!("{long}={}", scalar(key, v).map_err(bad)?));
                }
            }
            // `--set` as a table: `[set] out = 256`; nested tables
            // (`[set] projector.out = 256` in TOML) as dotted keys.
            (ArgAction::Append, Value::Object(m)) => {
                let mut entries = Vec::new();
                dotted("", m, &mut entries);
                these.extend(entries.into_iter().map(|(k, v)| format!("{long}={k}={v}")));
            }
            // `--name=value`, so that a value starting with `-` is a value.
            (_, v) => these.push(format!("{long}={}", scalar(key, v).map_err(bad)?)),
        }
        // Each value on its own through clap: a wrong type is named here,
        // with the file and key, rather than as a flag the user never typed.
        if !these.is_empty() {
            let probe = std::iter::once(cmd.get_name().to_string()).chain(these.iter().cloned());
            if let Err(e) = cmd.clone().try_get_matches_from(probe) {
                let msg = e.to_string();
                let first = msg.lines().next().unwrap_or_default().trim_start_matches("error: ");
                return Err(bad(first.to_string()));
            }
        }
        out.extend(these);
    }
    Ok(out)
}

/// The leaves of a table as `(a.b.c, value)`, depth first.
fn dotted(prefix: &str, m: &serde_json::Map<String, Value>, out: &mut Vec<(String, Value)>) {
    for (k, v) in m {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            Value::Object(inner) if !inner.is_empty() => dotted(&key, inner, out),
            other => out.push((key, other.clone())),
        }
    }
}

/// A non-finite float anywhere in `t`, by its dotted key (JSON has none:
/// converted, it would become null and leave a default without a word).
fn non_finite(prefix: &str, t: &toml::Table) -> Option<String> {
    t.iter().find_map(|(k, v)| {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Float(f) if !f.is_finite() => Some(key),
            toml::Value::Table(inner) => non_finite(&key, inner),
            toml::Value::Array(items) => items.iter().find_map(|i| match i {
                toml::Value::Float(f) if !f.is_finite() => Some(key.clone()),
                _ => None,
            }),
            _ => None,
        }
    })
}

/// One value as the text of a flag: a string as it is, a number or a
/// boolean as written, an `--set` entry (`{"key": …, "value": …}`, as a
/// run's `config.json` records it) as `key=value`.
fn scalar(key: &str, v: &Value) -> std::result::Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Object(m) if m.len() == 2 && m.contains_key("key") && m.contains_key("value") => {
            Ok(format!("{}={}", m["key"].as_str().unwrap_or_default(), m["value"]))
        }
        other => Err(format!("`{key}` takes a number, a string or a list of them, not {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser, Debug)]
    #[command(name = "train-x", args_override_self = true)]
    struct Args {
        #[arg(long, default_value = "simclr")]
        method: String,
        #[arg(long)]
        epochs: Option<usize>,
        #[arg(long)]
        stream: bool,
        #[arg(long, value_delimiter = ',', default_value = "0.01,1")]
        finetune_fractions: Vec<f64>,
        #[arg(long = "set")]
        set: Vec<String>,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        resume: bool,
    }

    fn parse(file: &str, name: &str, cli: &[&str]) -> Result<Args> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, file).unwrap();
        let mut argv: Vec<OsString> = vec!["train-x".into(), "--config".into(), path.clone().into()];
        argv.extend(cli.iter().map(OsString::from));
        let argv = expand(&Args::command(), argv)?;
        Ok(Args::try_parse_from(argv).unwrap())
    }

    #[test]
    fn a_file_sets_options_and_the_command_line_overrides_them() {
        let toml = "method = \"byol\"\nepochs = 3\nstream = true\nfinetune-fractions = [0.1, 1]\n\
                    resume = true\n[set]\nout = 256\n";
        let a = parse(toml, "run.toml", &[]).unwrap();
        assert_eq!((a.method.as_str(), a.epochs, a.stream), ("byol", Some(3), true));
        assert_eq!(a.finetune_fractions, vec![0.1, 1.0]);
        assert_eq!(a.set, vec!["out=256".to_string()]);
        assert!(!a.resume, "a file does not resume a run");
        assert!(a.config.unwrap().ends_with("run.toml"));
        let a = parse(toml, "run.toml", &["--epochs", "5", "--finetune-fractions", "1"]).unwrap();
        assert_eq!((a.epochs, a.finetune_fractions), (Some(5), vec![1.0]), "flags win");
        // A run's config.json: its `args`, the rest ignored.
        let json = r#"{"method": "mae", "train": {"lr": 1}, "args": {"method": "dino", "epochs": null,
                       "set": [{"key": "out", "value": 64}], "stream": false}}"#;
        let a = parse(json, "config.json", &[]).unwrap();
        assert_eq!((a.method.as_str(), a.epochs, a.stream), ("dino", None, false));
        assert_eq!(a.set, vec!["out=64".to_string()]);
        // Nested --set tables become dotted keys; a value may start with `-`.
        let a = parse("method = \"-x\"\n[set]\nhead.out = 8\nhead.norm = true\n", "run.toml", &[]).unwrap();
        assert_eq!(a.method, "-x");
        assert_eq!(a.set, vec!["head.norm=true".to_string(), "head.out=8".to_string()]);
    }

    #[test]
    fn bad_files_and_values_are_named() {
        let e = parse("epoch = 3\n", "run.toml", &[]).unwrap_err().to_string();
        assert!(e.contains("run.toml") && e.contains("`epoch` is not an option of train-x"), "{e}");
        assert!(e.contains("did you mean `epochs`?"), "{e}");
        let e = parse("finetune_fraction = [1]\n", "run.toml", &[]).unwrap_err().to_string();
        assert!(e.contains("did you mean `finetune-fractions`?"), "{e}");
        let e = parse("zzz = 1\n", "run.toml", &[]).unwrap_err().to_string();
        assert!(!e.contains("did you mean"), "no option is close: {e}");
        assert!(e.contains("epochs, finetune-fractions, method, set, stream"), "{e}");
        let e = parse("epochs = \"many\"\n", "run.toml", &[]).unwrap_err().to_string();
        assert!(e.contains("run.toml") && e.contains("`epochs`") && e.contains("many"), "{e}");
        let e = parse("stream = 1\n", "run.toml", &[]).unwrap_err().to_string();
        assert!(e.contains("`stream`: expected true or false"), "{e}");
        let e = parse("epochs = [[1]]\n", "run.toml", &[]).unwrap_err().to_string();
        assert!(e.contains("`epochs`"), "{e}");
        let e = parse("epochs = 3", "run.json", &[]).unwrap_err().to_string();
        assert!(e.contains("run.json: not valid JSON") && e.contains(".toml"), "{e}");
        let e = parse("epochs = = 3", "run.toml", &[]).unwrap_err().to_string();
        assert!(e.contains("run.toml: not valid TOML"), "{e}");
        let e = parse("[1, 2]", "run.json", &[]).unwrap_err().to_string();
        assert!(e.contains("expected a table of options"), "{e}");
        let e =
            parse("epochs = 3\nfinetune_fractions = [0.5, nan]\n", "run.toml", &[]).unwrap_err().to_string();
        assert!(e.contains("`finetune_fractions`: not a finite number"), "{e}");
        let e = parse(r#"{"method": "mae", "train": {}, "model": {}}"#, "config.json", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("without `args`"), "{e}");
        let e = expand(&Args::command(), vec!["x".into(), "--config".into(), "/nonexistent/c.toml".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/c.toml: cannot read"), "{e}");
        let e = expand(
            &Args::command(),
            vec!["x".into(), "--config=a.toml".into(), "--config".into(), "b".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("given twice"), "{e}");
        let e = expand(&Args::command(), vec!["x".into(), "--config".into()]).unwrap_err().to_string();
        assert!(e.contains("needs a file"), "{e}");
    }
}
