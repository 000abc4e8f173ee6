//! Loading a pretrained encoder from a transformers-style folder:
//! `config.json` (a `BertConfig`, or a `MegatronBertConfig` for the pre-LN
//! layout), `model.safetensors` and `tokenizer.json`, as `train-text` writes
//! into its run's `hf/` folder and as `save_pretrained` writes. Weights may
//! carry the `bert.` prefix (`BertForMaskedLM`, `BertForSequenceClassification`)
//! or not (`BertModel`); heads and poolers in the file are ignored.
//! [`save_weights`] writes the other direction.

use crate::bert::{BertConfig, BertModel};
use crate::error::{Error, Result};
use crate::tokenizer::TextTokenizer;
use std::collections::HashMap;
use std::path::Path;
use tch::{nn, Device, Tensor};

/// Writes a `BertForMaskedLM` var store as transformers' `model.safetensors`,
/// atomically. With an untied decoder (`tie_word_embeddings: false`)
/// transformers reads the decoder's bias from `cls.predictions.decoder.bias`
/// (tied, it is the same parameter as `cls.predictions.bias`), so that
/// name is written too, with the same values.
pub fn save_weights(vs: &nn::VarStore, cfg: &BertConfig, path: &Path) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    if !cfg.tie_word_embeddings {
        if let Some(b) =
            named.iter().find(|(n, _)| n == "cls.predictions.bias").map(|(_, t)| t.shallow_clone())
        {
            named.push(("cls.predictions.decoder.bias".into(), b));
        }
    }
    Ok(ssl_core::checkpoint::save_tensors(named, path)?)
}

/// Reads a transformers `config.json`; only BERT with exact GELU is
/// accepted.
pub fn read_config(path: &Path) -> Result<BertConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::file(path, format!("not valid JSON: {e}")))?;
    let model_type = v.get("model_type").and_then(|m| m.as_str()).unwrap_or("bert");
    let pre_ln = match model_type {
        "bert" => false,
        "megatron-bert" => true,
        other => {
            return Err(Error::file(
                path,
                format!("model_type `{other}` is not supported (bert or megatron-bert)"),
            ))
        }
    };
    if let Some(act) = v.get("hidden_act").and_then(|a| a.as_str()).filter(|a| *a != "gelu") {
        return Err(Error::file(path, format!("hidden_act `{act}` is not supported (gelu)")));
    }
    let mut cfg: BertConfig = serde_json::from_value(v.clone())
        .map_err(|e| Error::file(path, format!("not a BERT config: {e}")))?;
    cfg.pre_ln = pre_ln;
    cfg.validate()?;
    Ok(cfg)
}

/// Copies the tensors of a safetensors file into `vs`'s `bert.*` variables,
/// finding each under its name or without the `bert.` prefix. A missing
/// tensor or a shape mismatch is an error naming the file and the tensor.
pub fn load_encoder_weights(file: &Path, vs: &nn::VarStore) -> Result<()> {
    let found: HashMap<String, Tensor> = Tensor::read_safetensors(file)
        .map_err(|e| Error::file(file, format!("not a safetensors file: {e}")))?
        .into_iter()
        .collect();
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            let short = name.strip_prefix("bert.").unwrap_or(&name);
            let t = found.get(&name).or_else(|| found.get(short)).ok_or_else(|| {
                Error::file(file, format!("no tensor `{name}` (nor `{short}`): is it a BERT of this shape?"))
            })?;
            if t.size() != var.size() {
                return Err(Error::file(
                    file,
                    format!("`{name}` has shape {:?} in the file, {:?} in the model", t.size(), var.size()),
                ));
            }
            var.copy_(t);
        }
        Ok(())
    })
}

/// A pretrained encoder folder: its config, the `bert.*` weights in a new
/// var store on `device`, and its tokenizer.
pub fn load_pretrained(dir: &Path, device: Device) -> Result<(BertConfig, nn::VarStore, TextTokenizer)> {
    let cfg = read_config(&dir.join("config.json"))?;
    let tok = TextTokenizer::load(&dir.join("tokenizer.json"))?;
    if tok.vocab_size() > cfg.vocab_size {
        return Err(Error::file(
            dir,
            format!("the tokenizer has {} tokens but the model only {}", tok.vocab_size(), cfg.vocab_size),
        ));
    }
    let vs = nn::VarStore::new(device);
    let _bert = BertModel::new(&(vs.root() / "bert"), &cfg)?;
    load_encoder_weights(&dir.join("model.safetensors"), &vs)?;
    Ok((cfg, vs, tok))
}
