//! Checkpoints: a folder per epoch holding `model.safetensors` (every
//! variable of the run's `VarStore`, PyTorch-style names),
//! `optimizer.safetensors` and `state.json` (epoch, step, config). A folder
//! is written under a temporary name and renamed into place, and the
//! `latest` pointer is replaced atomically, so a crash never leaves a
//! half-written checkpoint that `--resume` would pick up.

use crate::metrics::{write_atomic, write_json_atomic};
use crate::optim::Optimizer;
use crate::{Error, Result};
use serde_json::Value;
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
}

/// Writes a checkpoint of `epoch` into `dir/epoch-NNNN` and points
/// `dir/latest` at it. Every file is synced before the folder is renamed
/// into place; a folder of the same name is moved aside first and removed
/// only afterwards. Other checkpoints beyond `keep` are removed, never the
/// one just written.
pub fn save(
    dir: &Path,
    vs: &VarStore,
    opt: &Optimizer,
    state: &CheckpointState,
    keep: usize,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = format!("epoch-{:04}", state.epoch);
    let final_dir = dir.join(&name);
    let tmp_dir = dir.join(format!(".{name}.tmp"));
    if tmp_dir.exists() {
        std::fs::remove_dir_all(&tmp_dir).map_err(|e| Error::io(&tmp_dir, e))?;
    }
    std::fs::create_dir_all(&tmp_dir).map_err(|e| Error::io(&tmp_dir, e))?;
    save_weights(vs, &tmp_dir.join("model.safetensors"))?;
    let optim = tmp_dir.join("optimizer.safetensors");
    let tensors: Vec<(String, Tensor)> = opt
        .state_tensors()
        .into_iter()
        .map(|(n, t)| (n, t.to_device(tch::Device::Cpu).contiguous()))
        .collect();
    Tensor::write_safetensors(&tensors, &optim)
        .map_err(|e| Error::TorchFile { path: optim.clone(), source: e })?;
    sync_file(&optim)?;
    let value = serde_json::to_value(state)
        .map_err(|e| Error::Json { path: tmp_dir.join("state.json"), source: e })?;
    write_json_atomic(&tmp_dir.join("state.json"), &value)?;
    let old = dir.join(format!(".{name}.old"));
    if final_dir.exists() {
        std::fs::rename(&final_dir, &old).map_err(|e| Error::io(&final_dir, e))?;
    }
    std::fs::rename(&tmp_dir, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
    sync_file(dir)?;
    write_atomic(&dir.join("latest"), name.as_bytes())?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    prune(dir, keep, &name)?;
    Ok(final_dir)
}

/// Flushes a file (or, on Unix, a folder's entries) to disk.
fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| Error::io(path, e))
}

fn prune(dir: &Path, keep: usize, current: &str) -> Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("epoch-") && n != current)
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(keep.max(1) - 1);
    for n in &names[..excess] {
        let p = dir.join(n);
        std::fs::remove_dir_all(&p).map_err(|e| Error::io(&p, e))?;
    }
    Ok(())
}

/// The folder `dir/latest` points to, if any.
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

/// Loads a checkpoint folder into `vs` and `opt`; returns its state. Every
/// variable of `vs` must be present with the same shape, so a checkpoint of
/// another architecture is refused with the offending name.
pub fn load(path: &Path, vs: &mut VarStore, opt: &mut Optimizer) -> Result<CheckpointState> {
    let state_path = path.join("state.json");
    let text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
    let state: CheckpointState =
        serde_json::from_str(&text).map_err(|e| Error::Json { path: state_path.clone(), source: e })?;
    let model = path.join("model.safetensors");
    load_weights(&model, vs)?;
    let optim = path.join("optimizer.safetensors");
    let tensors =
        Tensor::read_safetensors(&optim).map_err(|e| Error::TorchFile { path: optim.clone(), source: e })?;
    opt.load_state_tensors(&tensors).map_err(|e| Error::Checkpoint { path: optim, msg: e.to_string() })?;
    Ok(state)
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
    sync_file(&tmp)?;
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

    fn tmp_path_exists(path: &Path) -> bool {
        crate::metrics::tmp_path(path).exists()
    }
}
