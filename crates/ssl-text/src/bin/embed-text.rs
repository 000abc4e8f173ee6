//! `embed-text`: the embeddings of a set of texts under a trained encoder
//! (a `train-text` run's `hf/` folder, or any transformers BERT folder),
//! mean-pooled over the real tokens as the downstream evaluation pools
//! them, written for numpy, and each text's nearest neighbours by cosine
//! similarity ([`ssl_core::embed`]).
//!
//! Run through `cargo xtask embed --model RUN --data SPEC`, which picks
//! this binary for a text run.

use anyhow::{bail, Result};
use clap::Parser;
use serde_json::json;
use ssl_text::bert::BertModel;
use ssl_text::corpus::{read_labeled, Example};
use ssl_text::finetune::{encode_examples, labeled_files, pooled_features};
use ssl_text::tokenizer::TextTokenizer;
use std::path::{Path, PathBuf};
use tch::{nn, Tensor};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Embeddings and nearest neighbours of texts under a trained text encoder",
    mut_arg("model", |a| a.help("A train-text run folder (its hf/ is read) or a transformers BERT folder \
        (config.json, model.safetensors, tokenizer.json)")),
    mut_arg("data", |a| a.help("Data: a labelled folder (train.jsonl or train.csv and test.jsonl or test.csv, \
        as train-text's --labeled), one labelled JSONL or CSV file, or lines:FILE (one text per line)")),
    mut_arg("batch_size", |a| a.default_value("64"))
)]
struct Args {
    #[command(flatten)]
    embed: ssl_cli::EmbedArgs,
}

/// One split of `--data`: its name, file, texts, and whether they carry
/// labels.
type Split = (String, PathBuf, Vec<Example>, bool);

/// The texts of `--data`, by split name, each with its file.
fn read_data(spec: &str, splits: &[&str]) -> Result<Vec<Split>> {
    if let Some(file) = spec.strip_prefix("lines:") {
        let path = PathBuf::from(file);
        let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let ex: Vec<Example> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| Example { text: l.to_string(), label: String::new() })
            .collect();
        if ex.is_empty() {
            bail!("{}: no text in it (one text per line)", path.display());
        }
        return Ok(vec![("all".into(), path, ex, false)]);
    }
    let path = Path::new(spec);
    if path.is_dir() {
        let (train, test) = labeled_files(path)?;
        return splits
            .iter()
            .map(|&s| {
                let p = if s == "train" { train.clone() } else { test.clone() };
                Ok((s.to_string(), p.clone(), read_labeled(&p)?, true))
            })
            .collect();
    }
    Ok(vec![("all".into(), path.to_path_buf(), read_labeled(path)?, true)])
}

fn main() -> Result<()> {
    let args = Args::parse().embed;
    let device = args.device()?;
    let dir = if args.model.join("hf").is_dir() { args.model.join("hf") } else { args.model.clone() };
    if !dir.join("config.json").is_file() || !dir.join("model.safetensors").is_file() {
        bail!(
            "{}: no config.json and model.safetensors; --model takes a train-text run folder (its hf/) or a \
             transformers BERT folder",
            dir.display()
        );
    }
    let cfg = ssl_text::hf::read_config(&dir.join("config.json"))?;
    let tok = TextTokenizer::load(&dir.join("tokenizer.json"))?;
    let vs = nn::VarStore::new(device);
    let bert = BertModel::new(&(vs.root() / "bert"), &cfg)?;
    ssl_text::hf::load_encoder_weights(&dir.join("model.safetensors"), &vs)?;
    let max_len = cfg.max_position_embeddings as usize;
    let mut features = Vec::new();
    let mut rows = Vec::new();
    for (split, path, examples, labelled) in read_data(&args.data, &args.splits()?)? {
        let mut classes: Vec<String> = examples.iter().map(|e| e.label.clone()).collect();
        classes.sort();
        classes.dedup();
        let set = encode_examples(&tok, &examples, &classes, max_len, &path)?;
        features.push(pooled_features(&bert, &set, tok.special.pad, args.batch_size as usize)?);
        rows.extend(examples.iter().map(|e| {
            let mut r = json!({"split": split, "file": path, "text": e.text});
            if labelled {
                r["class"] = json!(e.label);
            }
            r
        }));
    }
    args.write("texts", &Tensor::cat(&features, 0), rows)?;
    Ok(())
}
