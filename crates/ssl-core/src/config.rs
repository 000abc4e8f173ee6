//! Field overrides of a serialisable config (`--set key=value` on the
//! command line): the config is written to JSON, the named fields are
//! replaced, and the result is read back, so an unknown key or a value of
//! the wrong type is an error naming the key, never a silent no-op.
//!
//! Keys are the config's JSON field names (as in a run's `config.json`);
//! nested fields are joined with dots (`backbone.depth`). Values are read
//! as JSON (`0.04`, `true`, `[1, 2]`), and as a string when they are not
//! JSON (`gelu`).

use crate::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// One `key=value` override.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Override {
    /// The dotted field path.
    pub key: String,
    /// The new value.
    pub value: Value,
}

impl std::str::FromStr for Override {
    type Err = Error;

    /// Parses `key=value`.
    fn from_str(s: &str) -> Result<Self> {
        let (key, raw) = s
            .split_once('=')
            .ok_or_else(|| Error::Config(format!("`{s}` is not key=value (e.g. out=256)")))?;
        let key = key.trim();
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err(Error::Config(format!("`{s}`: empty key")));
        }
        let raw = raw.trim();
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
        Ok(Self { key: key.to_string(), value })
    }
}

/// `cfg` with `overrides` applied in order. `what` names the config in
/// errors (e.g. "dino's config").
pub fn apply<T: Serialize + DeserializeOwned>(cfg: T, overrides: &[Override], what: &str) -> Result<T> {
    if overrides.is_empty() {
        return Ok(cfg);
    }
    let mut v = serde_json::to_value(&cfg).map_err(|e| Error::Config(format!("{what}: {e}")))?;
    for o in overrides {
        set(&mut v, &o.key, o.value.clone())
            .map_err(|e| Error::Config(format!("--set {}: {what} {e}", o.key)))?;
    }
    serde_json::from_value(v).map_err(|e| {
        let keys: Vec<&str> = overrides.iter().map(|o| o.key.as_str()).collect();
        Error::Config(format!("--set {}: {what} does not take this value: {e}", keys.join(", ")))
    })
}

/// Runs `build`, a model's construction from a config that `overrides`
/// may have changed, and turns a panic inside it (a constructor's assert,
/// a libtorch shape error: what `--set heads=3` on a width of 128 or a
/// negative width gives) into an error naming `what` and the overrides.
/// An error that `build` returns names the overrides too. Without
/// overrides a panic is a bug, and is not caught
/// ([`crate::error::catch_build`] otherwise).
pub fn build_with<T, E: From<Error> + std::fmt::Display>(
    what: &str,
    overrides: &[Override],
    build: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    if overrides.is_empty() {
        return build();
    }
    let keys: Vec<String> = overrides.iter().map(|o| format!("{}={}", o.key, o.value)).collect();
    let keys = keys.join(" ");
    let context = || format!("--set {keys}: {what} cannot be built with this value");
    crate::error::catch_build(context, || {
        build().map_err(|e| {
            let msg = e.to_string();
            let msg = msg.strip_prefix("invalid configuration: ").unwrap_or(&msg);
            Error::Config(format!("{msg} (with --set {keys})")).into()
        })
    })
}

fn set(v: &mut Value, key: &str, value: Value) -> std::result::Result<(), String> {
    let mut at = v;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let Value::Object(map) = at else {
            return Err(format!(
                "has no field `{}`: `{}` is not a group of fields",
                key,
                parts[..i].join(".")
            ));
        };
        if !map.contains_key(*part) {
            let mut known: Vec<&str> = map.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(format!("has no field `{part}`; its fields are: {}", known.join(", ")));
        }
        let slot = map.get_mut(*part).expect("checked");
        if i + 1 == parts.len() {
            *slot = value;
            return Ok(());
        }
        at = slot;
    }
    unreachable!("a key has at least one part")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Inner {
        depth: i64,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Cfg {
        out: i64,
        temp: f64,
        bn: bool,
        act: String,
        inner: Inner,
    }

    fn cfg() -> Cfg {
        Cfg { out: 1024, temp: 0.04, bn: false, act: "gelu".into(), inner: Inner { depth: 6 } }
    }

    fn o(s: &str) -> Override {
        s.parse().unwrap()
    }

    #[test]
    fn overrides_fields_by_name_and_path() {
        let c = apply(
            cfg(),
            &[o("out=256"), o("bn=true"), o("act=relu"), o("inner.depth=2"), o("temp = 0.02")],
            "t",
        )
        .unwrap();
        assert_eq!(c, Cfg { out: 256, temp: 0.02, bn: true, act: "relu".into(), inner: Inner { depth: 2 } });
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_errors_naming_the_key() {
        let e = apply(cfg(), &[o("outs=3")], "dino's config").unwrap_err().to_string();
        assert!(e.contains("--set outs") && e.contains("no field `outs`") && e.contains("out, temp"), "{e}");
        let e = apply(cfg(), &[o("out.x=3")], "t").unwrap_err().to_string();
        assert!(e.contains("not a group"), "{e}");
        let e = apply(cfg(), &[o("out=many")], "t").unwrap_err().to_string();
        assert!(e.contains("--set out") && e.contains("does not take"), "{e}");
        assert!("out".parse::<Override>().is_err());
        assert!("=3".parse::<Override>().is_err());
        assert!("a..b=3".parse::<Override>().is_err());
    }
}
