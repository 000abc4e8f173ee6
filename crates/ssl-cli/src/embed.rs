//! The options every `embed-*` binary shares ([`EmbedArgs`], flattened into
//! each one's arguments), and what they do with them: the splits asked for,
//! the output folder, a run's `backbone.json`, and writing the result with
//! [`ssl_core::embed::write_embeddings`].

use clap::Args;
use ssl_core::{Error, Result};
use std::path::PathBuf;
use tch::{Device, Tensor};

/// `--model`, `--data`, `--split`, `--out`, `--neighbors`, `--device`,
/// `--batch-size`. Each binary rewords `--model` and `--data` for its
/// modality with `#[command(mut_arg(…))]`.
#[derive(Args, Debug, Clone)]
pub struct EmbedArgs {
    /// A run folder of the modality's trainer.
    #[arg(long, value_name = "RUN")]
    pub model: PathBuf,
    /// Data, as the trainer's --data takes it.
    #[arg(long)]
    pub data: String,
    /// Which split: train, test or all (train, then test).
    #[arg(long, default_value = "all")]
    pub split: String,
    /// Output folder (embeddings.npy, items.jsonl, neighbors.npy). Default: RUN/embeddings.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also find each item's K nearest other items by cosine similarity.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub neighbors: Option<u64>,
    /// auto | cpu | cuda | cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Items per forward pass.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
}

impl EmbedArgs {
    /// The device to run on.
    pub fn device(&self) -> Result<Device> {
        ssl_core::device::parse_device(&self.device)
    }

    /// The splits of `--split`, in order.
    pub fn splits(&self) -> Result<Vec<&'static str>> {
        match self.split.as_str() {
            "all" => Ok(vec!["train", "test"]),
            "train" => Ok(vec!["train"]),
            "test" => Ok(vec!["test"]),
            o => Err(Error::Config(format!("unknown --split `{o}`; expected train, test or all"))),
        }
    }

    /// `--out`, or `RUN/embeddings`.
    pub fn out_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| self.model.join("embeddings"))
    }

    /// The run's `backbone.json` (what `trainer` writes at the end of a
    /// run), with an error that says what `--model` takes.
    pub fn backbone_meta(&self, trainer: &str) -> Result<serde_json::Value> {
        let path = self.model.join("backbone.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::Config(format!(
                "{}: {e}; --model takes a {trainer} run folder holding backbone.json and backbone.safetensors \
                 (written at the end of a run)",
                path.display()
            ))
        })?;
        serde_json::from_str(&text).map_err(|e| Error::Json { path, source: e })
    }

    /// Writes the embeddings (a row each in `rows`) into [`Self::out_dir`],
    /// with the neighbours asked for, and says what was written on stderr.
    pub fn write(&self, what: &str, emb: &Tensor, rows: Vec<serde_json::Value>) -> Result<()> {
        let out = self.out_dir();
        let s = ssl_core::embed::write_embeddings(&out, emb, rows, self.neighbors.map(|k| k as usize))?;
        eprintln!(
            "embedded {} {what} ({} wide) with {} into {}{}",
            s.items,
            s.dim,
            self.model.display(),
            out.display(),
            s.neighbors.map_or(String::new(), |k| format!("; {k} nearest neighbours each (neighbors.npy)"))
        );
        Ok(())
    }
}
