//! `embed-vision`: the embeddings of an image set under a trained backbone
//! (a `train-vision` run's `backbone.safetensors`, with the evaluation
//! transform its `backbone.json` records), written for numpy, and each
//! image's nearest neighbours by cosine similarity
//! ([`ssl_core::embed`]).
//!
//! Run through `cargo xtask embed --model RUN --data SPEC`, which picks
//! this binary for a vision run.

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::json;
use ssl_core::eval::{extract_features_from, InputChunks};
use ssl_vision::augment::ViewAugment;
use ssl_vision::backbone::{Backbone, BackboneConfig};
use ssl_vision::data::{self, DataSpec, ImageSet};
use ssl_vision::source::eval_tensor;
use ssl_vision::stream::{index_folder, StreamedEval};
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Embeddings and nearest neighbours of an image set under a trained backbone",
    mut_arg("model", |a| a.help("A train-vision run folder (its backbone.json and backbone.safetensors)")),
    mut_arg("data", |a| a.help("Data: bundled | mnist-idx:DIR | cifar10:DIR | cifar100:DIR | stl10:DIR | folder:DIR \
        (as train-vision's --data); a folder's rows name the files"))
)]
struct Args {
    #[command(flatten)]
    embed: ssl_cli::EmbedArgs,
}

/// A split to embed: its inputs and a row per image.
struct Part<'a> {
    inputs: Box<dyn InputChunks + 'a>,
    rows: Vec<serde_json::Value>,
}

fn main() -> Result<()> {
    let args = Args::parse().embed;
    let device = args.device()?;
    let meta = args.backbone_meta("train-vision")?;
    let cfg: BackboneConfig = serde_json::from_value(meta["backbone"].clone()).with_context(|| {
        format!(
            "{}: no vision backbone in its backbone.json (`cargo xtask embed` picks the modality)",
            args.model.display()
        )
    })?;
    let eval: ViewAugment = serde_json::from_value(meta["eval_transform"].clone())
        .with_context(|| format!("{}: no `eval_transform` in its backbone.json", args.model.display()))?;
    let in_channels = match &cfg {
        BackboneConfig::ResNet(c) => c.in_channels,
        BackboneConfig::Vit(c) => c.in_channels,
    };
    let vs = nn::VarStore::new(device);
    let net = ssl_core::error::catch_build(
        || "its backbone cannot be built".to_string(),
        || -> ssl_core::Result<Backbone> {
            if let BackboneConfig::Vit(v) = &cfg {
                v.check()?;
            }
            Ok(Backbone::new(&vs.root(), &cfg))
        },
    )
    .with_context(|| args.model.join("backbone.json").display().to_string())?;
    ssl_vision::weights::init_backbone(&args.model.join("backbone.safetensors"), &vs, &cfg)?;

    let spec: DataSpec = args.data.parse()?;
    let splits = args.splits()?;
    let memory;
    let index;
    let mut parts: Vec<Part> = Vec::new();
    match (&spec, in_channels) {
        // RGB folders are decoded chunk by chunk.
        (DataSpec::Folder(dir), 3) => {
            index = index_folder(dir)?;
            for split in &splits {
                let set = if *split == "train" { &index.train } else { &index.test };
                let rows = set
                    .files
                    .iter()
                    .zip(&set.labels)
                    .map(|(f, &l)| json!({"split": split, "path": f, "label": l, "class": index.classes[l as usize]}))
                    .collect();
                parts.push(Part { inputs: Box::new(StreamedEval { set, aug: &eval }), rows });
            }
        }
        _ => {
            memory = data::load(&spec)?;
            let paths = match &spec {
                DataSpec::Folder(dir) => Some(index_folder(dir)?),
                _ => None,
            };
            for split in &splits {
                let set: &ImageSet = if *split == "train" { &memory.train } else { &memory.test };
                if let Some(c) = set.images.first().map(|i| i.c as i64) {
                    if c != in_channels {
                        bail!(
                            "{}: its images have {c} channel(s), the backbone takes {in_channels}",
                            args.data
                        );
                    }
                }
                let files =
                    paths.as_ref().map(|p| if *split == "train" { &p.train.files } else { &p.test.files });
                let rows = set
                    .labels
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| {
                        let mut r = json!({"split": split, "label": l, "class": memory.classes[l as usize]});
                        if let Some(f) = files.and_then(|f| f.get(i)) {
                            r["path"] = json!(f);
                        }
                        r
                    })
                    .collect();
                parts.push(Part { inputs: Box::new(eval_tensor(set, &eval)), rows });
            }
        }
    }
    let mut features = Vec::new();
    let mut rows = Vec::new();
    for part in parts {
        let f = extract_features_from(
            &|x| net.forward_t(x, false),
            part.inputs.as_ref(),
            args.batch_size as usize,
            device,
        )?;
        features.push(f);
        rows.extend(part.rows);
    }
    args.write("images", &Tensor::cat(&features, 0), rows)?;
    Ok(())
}
