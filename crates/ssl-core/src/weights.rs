//! Encoder weights in and out of a method's var store, under another
//! library's names: starting a run from a published torchvision, timm or
//! ssl-rs file (`--init`), and writing the trained encoder alone with the
//! reference library's keys (`backbone.safetensors`).
//!
//! A method keeps its encoder under a prefix (`backbone.`, `online.backbone.`,
//! and a momentum copy under `target.backbone.`); [`encoder_prefixes`] finds
//! every copy by matching the encoder's own names and shapes, so the
//! modality crates only say what their encoder's names are.
//!
//! Loading follows `torch.nn.Module.load_state_dict(strict=True)`: every
//! encoder tensor must be in the file with its shape, and a tensor the
//! encoder lacks is an error, except where the caller's [`KeyRules`] say
//! otherwise (a classifier such as torchvision's `fc.*` or timm's `head.*`
//! in the file; BatchNorm's `num_batches_tracked` absent from it, which
//! PyTorch's BatchNorm also accepts). All problems are reported at once, by
//! name.

use crate::error::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{nn, Tensor};

/// An encoder's state-dict names and shapes, as its own var store holds
/// them (without a method prefix).
pub type EncoderKeys = BTreeMap<String, Vec<i64>>;

/// The names and shapes of the variables of `vs` (an encoder built at its
/// root).
pub fn keys_of(vs: &nn::VarStore) -> EncoderKeys {
    vs.variables().into_iter().map(|(k, t)| (k, t.size())).collect()
}

/// Every prefix under which `vs` holds a whole copy of the encoder (same
/// names and shapes below the prefix), sorted: `["online.backbone.",
/// "target.backbone."]` for BYOL, `[""]` for MAE's encoder at the root.
pub fn encoder_prefixes(vs: &nn::VarStore, encoder: &EncoderKeys) -> Vec<String> {
    let vars = vs.variables();
    let Some((anchor, _)) = encoder.iter().next() else { return Vec::new() };
    let mut prefixes: Vec<String> = vars
        .keys()
        .filter_map(|k| k.strip_suffix(anchor.as_str()))
        .filter(|p| p.is_empty() || p.ends_with('.'))
        .filter(|p| {
            encoder.iter().all(|(k, shape)| vars.get(&format!("{p}{k}")).is_some_and(|t| &t.size() == shape))
        })
        .map(str::to_string)
        .collect();
    prefixes.sort();
    prefixes.dedup();
    prefixes
}

/// Which differences between a file and the encoder [`init_encoder`]
/// accepts.
#[derive(Clone, Copy, Debug)]
pub struct KeyRules {
    /// A tensor of the file the encoder lacks that is left out, not an
    /// error (by its name after the file's prefix).
    pub ignore_extra: fn(&str) -> bool,
    /// An encoder tensor that may be absent from the file (it keeps its
    /// value).
    pub may_be_missing: fn(&str) -> bool,
}

impl KeyRules {
    /// `load_state_dict(strict=True)`: the names must agree exactly.
    pub const STRICT: KeyRules = KeyRules { ignore_extra: |_| false, may_be_missing: |_| false };
}

/// What [`init_encoder`] did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct InitReport {
    /// The file read.
    pub file: String,
    /// The prefix stripped from the file's names (`""` for a file with the
    /// reference library's names; `online.backbone.` for an ssl-rs
    /// `model.safetensors`; or the one the caller gave).
    pub file_prefix: String,
    /// Where in the method the encoder was written (every copy).
    pub into: Vec<String>,
    /// Encoder tensors loaded (per copy); the others, absent from the file
    /// and allowed to be, keep their values.
    pub loaded: usize,
    /// The file's tensors left out because the caller allows them
    /// (classifier heads, counters), by name.
    pub ignored: Vec<String>,
}

impl InitReport {
    /// One line for the log: what was loaded, where, and what was left out.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "init: {} encoder tensors from {} into {}",
            self.loaded,
            self.file,
            self.into
                .iter()
                .map(|p| if p.is_empty() { "the encoder" } else { p.trim_end_matches('.') })
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !self.file_prefix.is_empty() {
            s += &format!(" (the file's `{}` prefix removed)", self.file_prefix);
        }
        if !self.ignored.is_empty() {
            s += &format!("; left out {}: {}", self.ignored.len(), list(&self.ignored));
        }
        s
    }
}

/// At most eight names (in backquotes), then a count.
fn list(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(8)
        .map(|n| if n.starts_with('`') { n.clone() } else { format!("`{n}`") })
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > 8 {
        s += &format!(" and {} more", names.len() - 8);
    }
    s
}

/// Reads a safetensors file, naming the file in the error (a truncated or
/// foreign file).
pub fn read_tensors(file: &Path) -> Result<Vec<(String, Tensor)>> {
    if !file.is_file() {
        return Err(Error::Weights { path: file.into(), msg: "no such weights file".into() });
    }
    Tensor::read_safetensors(file).map_err(|e| Error::Weights {
        path: file.into(),
        msg: format!("not a readable safetensors file (truncated, or another format?): {e}"),
    })
}

/// Loads the encoder tensors of `file` into every copy of the encoder in
/// `vs` (found with [`encoder_prefixes`]), converting to each variable's
/// kind. The file may name the tensors as the encoder does or below one
/// prefix (an ssl-rs `model.safetensors`, a lightly or solo-learn
/// checkpoint's `backbone.`). Every encoder tensor must be present with its
/// shape, and every other tensor must be one to ignore, by `rules`;
/// otherwise nothing is loaded and the error lists the missing, mis-shaped
/// and unexpected names.
pub fn init_encoder(
    file: &Path,
    vs: &nn::VarStore,
    encoder: &EncoderKeys,
    rules: KeyRules,
) -> Result<InitReport> {
    init_encoder_under(file, None, vs, encoder, rules)
}

/// [`init_encoder`], with the file's prefix given (`Some`) instead of
/// found: `target.encoder.` loads BYOL-A's momentum copy out of a run's
/// `model.safetensors`, where the prefix found would be the online one's.
/// The file's tensors outside the prefix are left out; a prefix that no
/// tensor name starts with is an error naming the prefixes the file has.
pub fn init_encoder_under(
    file: &Path,
    prefix: Option<&str>,
    vs: &nn::VarStore,
    encoder: &EncoderKeys,
    rules: KeyRules,
) -> Result<InitReport> {
    let tensors = read_tensors(file)?;
    let into = encoder_prefixes(vs, encoder);
    if into.is_empty() {
        return Err(Error::Config("the method holds no copy of the encoder to initialise".into()));
    }
    // `target.encoder` means `target.encoder.`: names are matched by
    // whole components.
    let prefix =
        prefix.map(|p| if p.is_empty() || p.ends_with('.') { p.to_string() } else { format!("{p}.") });
    let file_prefix = match prefix.as_deref() {
        None => file_prefix(&tensors, encoder),
        Some(p) if p.is_empty() || tensors.iter().any(|(n, _)| n.starts_with(p)) => p.to_string(),
        Some(p) => {
            return Err(Error::Weights {
                path: file.into(),
                msg: format!(
                    "no tensor name starts with the prefix `{p}`; the file's names start with {}",
                    list(&top_prefixes(&tensors))
                ),
            })
        }
    };
    let mut by_name: HashMap<&str, &Tensor> = HashMap::new();
    let mut unexpected = Vec::new();
    let mut ignored = Vec::new();
    for (name, t) in &tensors {
        match name.strip_prefix(file_prefix.as_str()) {
            Some(k) if encoder.contains_key(k) => {
                by_name.insert(k, t);
            }
            Some(k) if (rules.ignore_extra)(k) => ignored.push(name.clone()),
            // Another part of an ssl-rs or lightly file (a projector, the
            // momentum copy) when the encoder sits under a prefix.
            None if !file_prefix.is_empty() => ignored.push(name.clone()),
            _ => unexpected.push(name.clone()),
        }
    }
    let missing: Vec<String> = encoder
        .keys()
        .filter(|k| !by_name.contains_key(k.as_str()) && !(rules.may_be_missing)(k))
        .map(|k| format!("{file_prefix}{k}"))
        .collect();
    let mut misshaped = Vec::new();
    for (k, t) in &by_name {
        let want = &encoder[*k];
        if &t.size() != want {
            misshaped.push(format!("`{file_prefix}{k}` is {:?}, the encoder's is {:?}", t.size(), want));
        }
    }
    misshaped.sort();
    unexpected.sort();
    // NaN or infinite weights give NaN features, which the evaluation's
    // SVD cannot take: said here, naming the tensors.
    let mut non_finite: Vec<String> = by_name
        .iter()
        .filter(|(_, t)| t.is_floating_point() && t.isfinite().all().int64_value(&[]) == 0)
        .map(|(k, _)| format!("{file_prefix}{k}"))
        .collect();
    non_finite.sort();
    if !non_finite.is_empty() {
        return Err(Error::Weights {
            path: file.into(),
            msg: format!("holds NaN or infinite values in {}: {}", non_finite.len(), list(&non_finite)),
        });
    }
    if !(missing.is_empty() && misshaped.is_empty() && unexpected.is_empty()) {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("missing {}: {}", missing.len(), list(&missing)));
        }
        if !misshaped.is_empty() {
            parts.push(format!("mis-shaped {}: {}", misshaped.len(), list(&misshaped)));
        }
        if !unexpected.is_empty() {
            parts.push(format!("unexpected {}: {}", unexpected.len(), list(&unexpected)));
        }
        return Err(Error::Weights {
            path: file.into(),
            msg: format!("does not fit the encoder (another architecture or shape?); {}", parts.join("; ")),
        });
    }
    let vars = vs.variables();
    tch::no_grad(|| {
        for p in &into {
            for (k, t) in &by_name {
                let dst = &vars[&format!("{p}{k}")];
                dst.shallow_clone().copy_(&t.to_kind(dst.kind()).to_device(dst.device()));
            }
        }
    });
    ignored.sort();
    Ok(InitReport { file: file.display().to_string(), file_prefix, into, loaded: by_name.len(), ignored })
}

/// The distinct first components of the names (`online.`, `target.`,
/// `conv1.`), sorted, for an error message.
fn top_prefixes(tensors: &[(String, Tensor)]) -> Vec<String> {
    let mut p: Vec<String> = tensors
        .iter()
        .map(|(n, _)| n.split_once('.').map_or(n.clone(), |(head, _)| format!("{head}.")))
        .collect();
    p.sort();
    p.dedup();
    p
}

/// The prefix under which `tensors` hold the encoder: `""` when one of the
/// encoder's names is there as is, else, of the prefixes in front of the
/// encoder's first name (by the order of `encoder`), the copy a run
/// evaluated ([`evaluated_of`]).
fn file_prefix(tensors: &[(String, Tensor)], encoder: &EncoderKeys) -> String {
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    if encoder.keys().any(|k| names.contains(&k.as_str())) {
        return String::new();
    }
    let Some((anchor, _)) = encoder.iter().next() else { return String::new() };
    let found = names.iter().filter_map(|n| n.strip_suffix(anchor.as_str())).filter(|p| p.ends_with('.'));
    evaluated_of(found).unwrap_or("").to_string()
}

/// Of the prefixes under which a copy of the encoder sits, the one its
/// method evaluates: DINO's teacher (`teacher.`) first, then one that is
/// not a momentum target (`target.`), then the shortest, then by name
/// (`online.` before `target.`).
fn evaluated_of<'a>(prefixes: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    prefixes.into_iter().min_by_key(|p| (!p.starts_with("teacher."), p.starts_with("target."), p.len(), *p))
}

/// The encoder copy under `prefix` in `vs` ([`evaluated_prefix`] gives the
/// one a method evaluates), renamed to the encoder's own names, as CPU
/// tensors ready for [`crate::checkpoint::save_tensors`].
pub fn encoder_tensors(
    vs: &nn::VarStore,
    encoder: &EncoderKeys,
    prefix: &str,
) -> Result<Vec<(String, Tensor)>> {
    let vars = vs.variables();
    encoder
        .keys()
        .map(|k| {
            let t = vars
                .get(&format!("{prefix}{k}"))
                .ok_or_else(|| Error::Config(format!("the method has no encoder variable `{prefix}{k}`")))?;
            Ok((k.clone(), t.detach().to_device(tch::Device::Cpu)))
        })
        .collect()
}

/// Where the copy of the encoder that a method evaluates (its
/// `Method::features`) is, the one to export and fine-tune: DINO's
/// teacher (`teacher.backbone.`), as DINO's reference evaluates and
/// publishes its teacher; otherwise the shortest of [`encoder_prefixes`]
/// that is not a momentum target (`backbone.`, `encoder.`,
/// `online.backbone.`, or the root for MAE).
pub fn evaluated_prefix(vs: &nn::VarStore, encoder: &EncoderKeys) -> Result<String> {
    let prefixes = encoder_prefixes(vs, encoder);
    evaluated_of(prefixes.iter().map(String::as_str).filter(|p| !p.starts_with("target.")))
        .map(str::to_string)
        .ok_or_else(|| Error::Config("the method holds no copy of the encoder it evaluates".into()))
}

/// Writes a trained encoder into `dir`, for use outside ssl-rs:
/// - `backbone.safetensors`: `named` (the encoder's state dict under the
///   reference library's names, e.g. from [`encoder_tensors`]);
/// - `backbone.pt`: TorchScript traced from the encoder `build` makes (on
///   the CPU, with `named` copied in, in evaluation mode, the weights as
///   constants) on `sample`, which `torch.jit.load` runs;
/// - `check_features.safetensors`: `sample` (`input`) and the encoder's
///   `features` on it, for checking an export in the reference library;
/// - `backbone.json`: `meta` with the input shape and feature width added.
pub fn export_encoder<M: nn::ModuleT>(
    named: &[(String, Tensor)],
    build: impl FnOnce(&nn::Path) -> M,
    sample: &Tensor,
    dir: &Path,
    mut meta: serde_json::Value,
) -> Result<()> {
    let shallow =
        |named: &[(String, Tensor)]| named.iter().map(|(k, t)| (k.clone(), t.shallow_clone())).collect();
    crate::checkpoint::save_tensors(shallow(named), &dir.join("backbone.safetensors"))?;
    let mut vs = nn::VarStore::new(tch::Device::Cpu);
    let net = build(&vs.root());
    copy_named(&vs, named)?;
    vs.freeze();
    let sample = sample.to_device(tch::Device::Cpu).to_kind(tch::Kind::Float);
    let features = tch::no_grad(|| net.forward_t(&sample, false));
    let traced =
        tch::CModule::create_by_tracing("Backbone", "forward", &[sample.shallow_clone()], &mut |x| {
            vec![net.forward_t(&x[0], false)]
        })?;
    let pt = dir.join("backbone.pt");
    let tmp = crate::metrics::tmp_path(&pt);
    traced.save(&tmp)?;
    std::fs::rename(&tmp, &pt).map_err(|e| Error::io(&pt, e))?;
    meta["input_shape"] = serde_json::json!(&sample.size()[1..]);
    meta["feature_dim"] = serde_json::json!(features.size().last());
    crate::checkpoint::save_tensors(
        vec![("input".into(), sample), ("features".into(), features)],
        &dir.join("check_features.safetensors"),
    )?;
    crate::metrics::write_json_atomic(&dir.join("backbone.json"), &meta)
}

/// Copies named tensors into the variables of the same names in `vs`
/// (converting kind and device); names `vs` lacks are skipped, and every
/// variable of `vs` must be given with its shape.
pub fn copy_named(vs: &nn::VarStore, named: &[(String, Tensor)]) -> Result<()> {
    let by_name: HashMap<&str, &Tensor> = named.iter().map(|(k, t)| (k.as_str(), t)).collect();
    tch::no_grad(|| {
        for (k, dst) in vs.variables() {
            let t =
                by_name.get(k.as_str()).ok_or_else(|| Error::Config(format!("no tensor `{k}` to copy")))?;
            if t.size() != dst.size() {
                return Err(Error::Config(format!("`{k}`: {:?} vs {:?}", t.size(), dst.size())));
            }
            dst.shallow_clone().copy_(&t.to_kind(dst.kind()).to_device(dst.device()));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn encoder(p: &nn::Path) {
        let _ = nn::linear(p / "fc1", 3, 4, Default::default());
        let _ = nn::linear(p / "fc2", 4, 2, Default::default());
    }

    fn keys() -> EncoderKeys {
        let vs = nn::VarStore::new(Device::Cpu);
        encoder(&vs.root());
        keys_of(&vs)
    }

    /// A method: an online encoder with a head, and a momentum copy.
    fn method() -> nn::VarStore {
        let vs = nn::VarStore::new(Device::Cpu);
        encoder(&(vs.root() / "online" / "backbone"));
        let _ = nn::linear(vs.root() / "online" / "head", 2, 2, Default::default());
        encoder(&(vs.root() / "target" / "backbone"));
        vs
    }

    fn write(dir: &Path, name: &str, named: Vec<(String, Tensor)>) -> std::path::PathBuf {
        let path = dir.join(name);
        crate::checkpoint::save_tensors(named, &path).unwrap();
        path
    }

    fn reference(prefix: &str) -> Vec<(String, Tensor)> {
        keys()
            .into_iter()
            .map(|(k, s)| (format!("{prefix}{k}"), Tensor::ones(&s, (Kind::Float, Device::Cpu))))
            .collect()
    }

    #[test]
    fn every_copy_of_the_encoder_is_found_and_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let vs = method();
        assert_eq!(encoder_prefixes(&vs, &keys()), ["online.backbone.", "target.backbone."]);
        let mut named = reference("");
        named.push(("head.weight".into(), Tensor::zeros([7, 2], (Kind::Float, Device::Cpu))));
        let file = write(dir.path(), "ref.safetensors", named);
        let r = init_encoder(
            &file,
            &vs,
            &keys(),
            KeyRules { ignore_extra: |k| k.starts_with("head."), ..KeyRules::STRICT },
        )
        .unwrap();
        assert_eq!(
            (r.loaded, r.ignored.clone(), r.file_prefix.clone()),
            (4, vec!["head.weight".into()], "".into())
        );
        let vars = vs.variables();
        for p in ["online.backbone.", "target.backbone."] {
            assert!(vars[&format!("{p}fc1.weight")].equal(&Tensor::ones([4, 3], (Kind::Float, Device::Cpu))));
        }
        // The head is not part of the encoder and keeps its values.
        assert!(vars["online.head.weight"].ne(1.0).any().int64_value(&[]) == 1);
        assert!(r.summary().contains("online.backbone, target.backbone"), "{}", r.summary());
        // A NaN in an encoder tensor is refused, naming it; nothing loads.
        let named = reference("");
        let _ = named[1].1.get(0).fill_(f64::NAN);
        let bad_name = named[1].0.clone();
        let file = write(dir.path(), "nan.safetensors", named);
        let err = init_encoder(&file, &method(), &keys(), KeyRules::STRICT).unwrap_err().to_string();
        assert!(
            err.contains("nan.safetensors") && err.contains("NaN or infinite") && err.contains(&bad_name),
            "{err}"
        );
    }

    #[test]
    fn a_file_with_a_method_prefix_loads_too() {
        let dir = tempfile::tempdir().unwrap();
        let src = method();
        tch::no_grad(|| {
            for (_, t) in src.variables() {
                let _ = t.shallow_clone().fill_(0.5);
            }
        });
        let file = write(dir.path(), "model.safetensors", src.variables().into_iter().collect());
        let vs = method();
        let r = init_encoder(&file, &vs, &keys(), KeyRules::STRICT).unwrap();
        assert_eq!(r.file_prefix, "online.backbone.");
        assert_eq!(r.loaded, 4);
        let ex = encoder_tensors(&vs, &keys(), "online.backbone.").unwrap();
        assert_eq!(
            ex.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
        );
        assert!(ex.iter().all(|(_, t)| t.eq(0.5).all().int64_value(&[]) == 1));
    }

    #[test]
    fn a_given_prefix_picks_the_momentum_copy() {
        let dir = tempfile::tempdir().unwrap();
        let src = method();
        tch::no_grad(|| {
            for (k, t) in src.variables() {
                let _ = t.shallow_clone().fill_(if k.starts_with("target.") { 2.0 } else { 0.5 });
            }
        });
        let file = write(dir.path(), "model.safetensors", src.variables().into_iter().collect());
        let vs = method();
        let r = init_encoder_under(&file, Some("target.backbone."), &vs, &keys(), KeyRules::STRICT).unwrap();
        assert_eq!((r.file_prefix.as_str(), r.loaded), ("target.backbone.", 4));
        assert!(r.summary().contains("the file's `target.backbone.` prefix removed"), "{}", r.summary());
        // Every copy of the method's encoder now holds the file's target.
        for p in ["online.backbone.", "target.backbone."] {
            let ex = encoder_tensors(&vs, &keys(), p).unwrap();
            assert!(ex.iter().all(|(_, t)| t.eq(2.0).all().int64_value(&[]) == 1), "{p}");
        }
        // The trailing dot may be left out.
        let r = init_encoder_under(&file, Some("target.backbone"), &vs, &keys(), KeyRules::STRICT).unwrap();
        assert_eq!(r.file_prefix, "target.backbone.");
        // Without it the online copy is found, as before.
        let found = init_encoder(&file, &vs, &keys(), KeyRules::STRICT).unwrap();
        assert_eq!(found.file_prefix, "online.backbone.");
        // A prefix no name starts with is named, with the file's.
        let e = init_encoder_under(&file, Some("teacher.backbone."), &vs, &keys(), KeyRules::STRICT)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("model.safetensors")
                && e.contains("no tensor name starts with the prefix `teacher.backbone.`")
                && e.contains("`online.`, `target.`"),
            "{e}"
        );
        // A prefix that exists but holds something else is refused like
        // any file that does not fit.
        let e = init_encoder_under(&file, Some("online.head."), &vs, &keys(), KeyRules::STRICT)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing 4: `online.head.fc1.bias`"), "{e}");
    }

    #[test]
    fn a_teacher_is_the_copy_evaluated_exported_and_loaded_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let dino = nn::VarStore::new(Device::Cpu);
        encoder(&(dino.root() / "student" / "backbone"));
        encoder(&(dino.root() / "teacher" / "backbone"));
        tch::no_grad(|| {
            for (k, t) in dino.variables() {
                let _ = t.shallow_clone().fill_(if k.starts_with("teacher.") { 3.0 } else { 1.0 });
            }
        });
        assert_eq!(evaluated_prefix(&dino, &keys()).unwrap(), "teacher.backbone.");
        assert_eq!(evaluated_prefix(&method(), &keys()).unwrap(), "online.backbone.");
        let file = write(dir.path(), "model.safetensors", dino.variables().into_iter().collect());
        let vs = method();
        let r = init_encoder(&file, &vs, &keys(), KeyRules::STRICT).unwrap();
        assert_eq!(r.file_prefix, "teacher.backbone.");
        let ex = encoder_tensors(&vs, &keys(), "online.backbone.").unwrap();
        assert!(ex.iter().all(|(_, t)| t.eq(3.0).all().int64_value(&[]) == 1));
    }

    #[test]
    fn mismatches_are_named_and_nothing_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let vs = method();
        let before = vs.variables()["online.backbone.fc1.weight"].copy();
        let mut named = reference("");
        named.retain(|(k, _)| k != "fc2.bias");
        named[0].1 = Tensor::ones([5], (Kind::Float, Device::Cpu)); // fc1.bias
        named.push(("layer9.weight".into(), Tensor::ones([1], (Kind::Float, Device::Cpu))));
        let file = write(dir.path(), "other.safetensors", named);
        let e = init_encoder(&file, &vs, &keys(), KeyRules::STRICT).unwrap_err().to_string();
        for part in [
            "missing 1: `fc2.bias`",
            "mis-shaped 1: `fc1.bias` is [5], the encoder's is [4]",
            "unexpected 1: `layer9.weight`",
            "other.safetensors",
        ] {
            assert!(e.contains(part), "{part} not in: {e}");
        }
        assert!(vs.variables()["online.backbone.fc1.weight"].equal(&before));
    }

    #[test]
    fn truncated_and_absent_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "ref.safetensors", reference(""));
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() - 9]).unwrap();
        let e = init_encoder(&file, &method(), &keys(), KeyRules::STRICT).unwrap_err().to_string();
        assert!(e.contains("ref.safetensors") && e.contains("not a readable safetensors file"), "{e}");
        let e = init_encoder(&dir.path().join("none.safetensors"), &method(), &keys(), KeyRules::STRICT)
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.safetensors: no such weights file"), "{e}");
    }
}
