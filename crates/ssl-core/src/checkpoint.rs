//! Checkpoints: a folder per checkpoint, `step-NNNNNNNN` after that many
//! optimizer steps, holding `model.safetensors` (every variable of the
//! run's `VarStore`, PyTorch-style names), `optimizer.safetensors`,
//! `trainer.safetensors` (the training loop's own tensors, when it has
//! any: the online probe, the features kept for the collapse figures) and
//! `state.json` (epoch, step, config, the loop's other state, and the size
//! and SHA-256 of every other file).
//!
//! Crash safety: a folder is written under a temporary name, every file and
//! the folder synced, then renamed into place; the `latest` pointer is
//! replaced atomically after that, and older checkpoints are removed only
//! once the new one is complete. [`find_resumable`] checks a checkpoint's
//! files against `state.json` and falls back to the newest older one that
//! passes, naming what was wrong with each one it skips, so a checkpoint
//! truncated or corrupted after it was written is never loaded.

use crate::metrics::{sync_path, write_atomic, write_json_atomic};
use crate::optim::Optimizer;
use crate::{Error, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Tensor};

/// What `state.json` holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CheckpointState {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps completed.
    pub step: usize,
    /// The run's whole resolved config.
    pub config: Value,
    /// The training loop's own state besides its tensors (partial epoch
    /// sums, the collapse alarm's history); see [`crate::trainer`].
    #[serde(default)]
    pub trainer: Value,
    /// Size and SHA-256 of each file of the folder but `state.json`,
    /// filled by [`save`]. Empty in checkpoints written before checksums
    /// existed, which are then loaded unchecked.
    #[serde(default)]
    pub files: BTreeMap<String, FileSum>,
}

/// A file's size and SHA-256 digest (lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileSum {
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the contents, lower-case hex.
    pub sha256: String,
}

impl FileSum {
    /// The size and digest of `path`, read in a stream.
    pub fn of(path: &Path) -> Result<Self> {
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut hasher = Sha256::new();
        let bytes = std::io::copy(&mut f, &mut hasher).map_err(|e| Error::io(path, e))?;
        let sha256 = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self { bytes, sha256 })
    }
}

/// The folder name of the checkpoint after `step` optimizer steps.
pub fn folder_name(step: usize) -> String {
    format!("step-{step:08}")
}

/// Writes a checkpoint after `state.step` steps into `dir/step-NNNNNNNN`
/// and points `dir/latest` at it: the weights of `vs`, the state of `opt`,
/// and `extra` (the loop's own tensors; no file when empty). Every file is
/// synced before the folder is renamed into place; a folder of the same
/// name is moved aside first and removed only afterwards. Other
/// checkpoints beyond `keep` are removed, never the one just written.
pub fn save(
    dir: &Path,
    vs: &VarStore,
    opt: &Optimizer,
    extra: Vec<(String, Tensor)>,
    state: &CheckpointState,
    keep: usize,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = folder_name(state.step);
    let final_dir = dir.join(&name);
    let tmp_dir = dir.join(format!(".{name}.tmp"));
    if tmp_dir.exists() {
        std::fs::remove_dir_all(&tmp_dir).map_err(|e| Error::io(&tmp_dir, e))?;
    }
    std::fs::create_dir_all(&tmp_dir).map_err(|e| Error::io(&tmp_dir, e))?;
    let mut files = vec!["model.safetensors", "optimizer.safetensors"];
    save_weights(vs, &tmp_dir.join("model.safetensors"))?;
    save_tensors(opt.state_tensors(), &tmp_dir.join("optimizer.safetensors"))?;
    if !extra.is_empty() {
        save_tensors(extra, &tmp_dir.join("trainer.safetensors"))?;
        files.push("trainer.safetensors");
    }
    let mut state = state.clone();
    state.files = files
        .into_iter()
        .map(|f| Ok((f.to_string(), FileSum::of(&tmp_dir.join(f))?)))
        .collect::<Result<_>>()?;
    let value = serde_json::to_value(&state)
        .map_err(|e| Error::Json { path: tmp_dir.join("state.json"), source: e })?;
    // Its folder synced too, with every file written into it before.
    write_json_atomic(&tmp_dir.join("state.json"), &value)?;
    let old = dir.join(format!(".{name}.old"));
    // Left by a save killed between its two renames (the step's folder was
    // already replaced): it would make the rename below fail for good.
    if old.exists() && final_dir.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    if final_dir.exists() {
        std::fs::rename(&final_dir, &old).map_err(|e| Error::io(&final_dir, e))?;
    }
    std::fs::rename(&tmp_dir, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
    sync_path(dir)?;
    write_atomic(&dir.join("latest"), name.as_bytes())?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    prune(dir, keep, &name)?;
    Ok(final_dir)
}

/// Checkpoint folders in `dir`, oldest first: `step-N` by step, after the
/// `epoch-N` folders of earlier versions by epoch.
fn checkpoint_folders(dir: &Path) -> Result<Vec<String>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut names: Vec<((u8, usize), String)> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let key = match (n.strip_prefix("step-"), n.strip_prefix("epoch-")) {
                (Some(s), _) => (1, s.parse().ok()?),
                (_, Some(s)) => (0, s.parse().ok()?),
                _ => return None,
            };
            Some((key, n))
        })
        .collect();
    names.sort();
    Ok(names.into_iter().map(|(_, n)| n).collect())
}

fn prune(dir: &Path, keep: usize, current: &str) -> Result<()> {
    let names: Vec<String> = checkpoint_folders(dir)?.into_iter().filter(|n| n != current).collect();
    let excess = names.len().saturating_sub(keep.max(1) - 1);
    for n in &names[..excess] {
        let p = dir.join(n);
        std::fs::remove_dir_all(&p).map_err(|e| Error::io(&p, e))?;
    }
    Ok(())
}

/// The folder `dir/latest` points to, if any (unchecked; see
/// [`find_resumable`]).
pub fn latest(dir: &Path) -> Result<Option<PathBuf>> {
    let pointer = dir.join("latest");
    if !pointer.exists() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&pointer).map_err(|e| Error::io(&pointer, e))?;
    let path = dir.join(name.trim());
    if !path.join("state.json").exists() {
        return Err(Error::Checkpoint { path, msg: "`latest` points to a folder without state.json".into() });
    }
    Ok(Some(path))
}

/// Reads a checkpoint's `state.json` and checks every file it lists
/// against its size and SHA-256.
pub fn verify(path: &Path) -> Result<CheckpointState> {
    let state_path = path.join("state.json");
    let text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
    let state: CheckpointState =
        serde_json::from_str(&text).map_err(|e| Error::Json { path: state_path.clone(), source: e })?;
    for (name, want) in &state.files {
        let file = path.join(name);
        let got = FileSum::of(&file)?;
        if got.bytes != want.bytes {
            return Err(Error::Checkpoint {
                path: file,
                msg: format!("{} bytes where state.json records {}: truncated?", got.bytes, want.bytes),
            });
        }
        if got.sha256 != want.sha256 {
            return Err(Error::Checkpoint {
                path: file,
                msg: format!(
                    "SHA-256 {} where state.json records {}: the file is corrupt",
                    got.sha256, want.sha256
                ),
            });
        }
    }
    Ok(state)
}

/// The checkpoint `--resume` continues from, and what was skipped.
#[derive(Debug, Default)]
pub struct Resumable {
    /// The newest checkpoint whose files pass [`verify`], if any.
    pub path: Option<PathBuf>,
    /// Its `state.json`, as [`verify`] read it (for [`load_verified`]).
    pub state: Option<CheckpointState>,
    /// One line per newer checkpoint that failed the check (the folder and
    /// the problem), newest first.
    pub skipped: Vec<String>,
}

/// The newest good checkpoint in `dir`: the one `latest` points to when it
/// passes [`verify`], else the newest older folder that does.
pub fn find_resumable(dir: &Path) -> Result<Resumable> {
    let mut order: Vec<String> = checkpoint_folders(dir)?;
    order.reverse();
    let pointer = dir.join("latest");
    if pointer.exists() {
        let name = std::fs::read_to_string(&pointer).map_err(|e| Error::io(&pointer, e))?;
        let name = name.trim().to_string();
        order.retain(|n| *n != name);
        order.insert(0, name);
    }
    let mut out = Resumable::default();
    for name in order {
        let path = dir.join(&name);
        match verify(&path) {
            Ok(state) => {
                out.path = Some(path);
                out.state = Some(state);
                break;
            }
            Err(e) => out.skipped.push(e.to_string()),
        }
    }
    Ok(out)
}

/// Loads a checkpoint folder into `vs` and `opt` after checking its files
/// ([`verify`]); returns its state and the loop's own tensors
/// (`trainer.safetensors`; none when absent). Every variable of `vs` must
/// be present with the same shape, so a checkpoint of another architecture
/// is refused with the offending name.
pub fn load(
    path: &Path,
    vs: &mut VarStore,
    opt: &mut Optimizer,
) -> Result<(CheckpointState, Vec<(String, Tensor)>)> {
    let state = verify(path)?;
    load_verified(path, state, vs, opt)
}

/// [`load`] of a checkpoint whose files [`verify`] has just checked and
/// whose `state` it returned (as [`find_resumable`] does), without reading
/// and hashing them a second time.
pub fn load_verified(
    path: &Path,
    state: CheckpointState,
    vs: &mut VarStore,
    opt: &mut Optimizer,
) -> Result<(CheckpointState, Vec<(String, Tensor)>)> {
    let model = path.join("model.safetensors");
    load_weights(&model, vs)?;
    let optim = path.join("optimizer.safetensors");
    let tensors =
        Tensor::read_safetensors(&optim).map_err(|e| Error::TorchFile { path: optim.clone(), source: e })?;
    opt.load_state_tensors(&tensors).map_err(|e| Error::Checkpoint { path: optim, msg: e.to_string() })?;
    let extra_path = path.join("trainer.safetensors");
    let extra = if extra_path.exists() {
        Tensor::read_safetensors(&extra_path).map_err(|e| Error::TorchFile { path: extra_path, source: e })?
    } else {
        Vec::new()
    };
    Ok((state, extra))
}

/// Writes every variable of `vs` to a safetensors file, atomically (a
/// temporary file, then a rename). Tensors are made contiguous on the way
/// (channels-last weights are not), so the file holds PyTorch's layout.
pub fn save_weights(vs: &VarStore, path: &Path) -> Result<()> {
    save_tensors(vs.variables().into_iter().collect(), path)
}

/// Writes named tensors to a safetensors file, atomically, sorted by name,
/// each made contiguous on the CPU (e.g. a var store's variables plus
/// aliases another framework expects).
pub fn save_tensors(named: Vec<(String, Tensor)>, path: &Path) -> Result<()> {
    let mut named: Vec<(String, Tensor)> =
        named.into_iter().map(|(n, t)| (n, t.to_device(tch::Device::Cpu).contiguous())).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let tmp = crate::metrics::tmp_path(path);
    Tensor::write_safetensors(&named, &tmp).map_err(|e| Error::TorchFile { path: tmp.clone(), source: e })?;
    sync_path(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Loads safetensors weights into `vs`, checking names and shapes first.
pub fn load_weights(file: &Path, vs: &mut VarStore) -> Result<()> {
    let tensors =
        Tensor::read_safetensors(file).map_err(|e| Error::TorchFile { path: file.into(), source: e })?;
    let found: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
    for (name, var) in vs.variables() {
        match found.get(&name) {
            None => {
                return Err(Error::Checkpoint {
                    path: file.into(),
                    msg: format!("no tensor `{name}`: is it a checkpoint of another architecture?"),
                })
            }
            Some(t) if t.size() != var.size() => {
                return Err(Error::Checkpoint {
                    path: file.into(),
                    msg: format!("`{name}` has shape {:?}, the model expects {:?}", t.size(), var.size()),
                })
            }
            Some(_) => {}
        }
    }
    vs.load(file).map_err(|e| Error::TorchFile { path: file.into(), source: e })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device, Kind};

    #[test]
    fn weights_with_any_strides_are_saved_and_loaded_back() {
        let dir = tempfile::tempdir().unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[3, 4], nn::Init::Randn { mean: 0.0, stdev: 1.0 });
        // Column-major strides, like a channels-last convolution weight.
        let mut handle = w.shallow_clone();
        tch::no_grad(|| handle.set_data(&w.tr().contiguous().tr()));
        assert!(!w.is_contiguous());
        let path = dir.path().join("m.safetensors");
        save_weights(&vs, &path).unwrap();
        let mut other = nn::VarStore::new(Device::Cpu);
        let w2 = other.root().var("w", &[3, 4], nn::Init::Const(0.0));
        load_weights(&path, &mut other).unwrap();
        assert!(w2.equal(&w));
        assert_eq!(w2.kind(), Kind::Float);
        assert!(!tmp_path_exists(&path));
    }

    #[test]
    fn a_save_killed_between_its_renames_does_not_block_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let _w = vs.root().var("w", &[2], nn::Init::Const(1.0));
        let opt = crate::optim::Optimizer::from_var_store(&crate::optim::OptimizerConfig::sgd(0.1, 0.0), &vs);
        let state = CheckpointState {
            epoch: 0,
            step: 3,
            config: serde_json::json!({}),
            trainer: Value::Null,
            files: BTreeMap::new(),
        };
        let first = save(dir.path(), &vs, &opt, vec![], &state, 2).unwrap();
        // What a kill after the step's folder was replaced leaves: the
        // moved-aside copy, not empty.
        let old = dir.path().join(format!(".{}.old", first.file_name().unwrap().to_string_lossy()));
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("model.safetensors"), b"stale").unwrap();
        let again = save(dir.path(), &vs, &opt, vec![], &state, 2).unwrap();
        assert_eq!(again, first);
        assert!(!old.exists(), "the stale copy is gone");
    }

    fn tmp_path_exists(path: &Path) -> bool {
        crate::metrics::tmp_path(path).exists()
    }
}
