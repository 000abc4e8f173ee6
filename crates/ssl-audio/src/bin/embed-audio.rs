//! `embed-audio`: the embeddings of a set of clips under a trained encoder
//! (a `train-audio` run's `backbone.safetensors`, with the front end and
//! normalisation its `backbone.json` records), written for numpy, and each
//! clip's nearest neighbours by cosine similarity ([`ssl_core::embed`]).
//!
//! Run through `cargo xtask embed --model RUN --data SPEC`, which picks
//! this binary for an audio run.

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::json;
use ssl_audio::data;
use ssl_audio::encoder::{AudioEncoder, AudioEncoderConfig};
use ssl_audio::views::AudioInput;
use ssl_core::eval::extract_features;
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Embeddings and nearest neighbours of audio clips under a trained encoder",
    mut_arg("model", |a| a.help("A train-audio run folder (its backbone.json and backbone.safetensors)")),
    mut_arg("data", |a| a.help("Data: bundled | bundled-clean | folder:DIR | manifest:TRAIN,TEST (as \
        train-audio's --data; the bundled clips are written into OUT/data/)"))
)]
struct Args {
    #[command(flatten)]
    embed: ssl_cli::EmbedArgs,
}

fn main() -> Result<()> {
    let args = Args::parse().embed;
    let device = args.device()?;
    let meta = args.backbone_meta("train-audio")?;
    let cfg: AudioEncoderConfig = serde_json::from_value(meta["encoder"].clone()).with_context(|| {
        format!(
            "{}: no audio encoder in its backbone.json (`cargo xtask embed` picks the modality)",
            args.model.display()
        )
    })?;
    let input: AudioInput = serde_json::from_value(meta["input"].clone()).with_context(|| {
        format!("{}: no `input` (front end and normalisation) in its backbone.json", args.model.display())
    })?;
    let json = args.model.join("backbone.json");
    input.check().with_context(|| json.display().to_string())?;
    let vs = nn::VarStore::new(device);
    let net = ssl_core::error::catch_build(
        || "its encoder cannot be built".to_string(),
        || -> ssl_core::Result<AudioEncoder> {
            cfg.check().map_err(|e| {
                // The training flags' hint means nothing here.
                let e = e.to_string();
                ssl_core::Error::Config(format!(
                    "its encoder cannot be built: {}",
                    e.split("; set --").next().unwrap_or(&e)
                ))
            })?;
            Ok(AudioEncoder::new(&vs.root(), &cfg))
        },
    )
    .with_context(|| json.display().to_string())?;
    ssl_audio::weights::init_encoder(&args.model.join("backbone.safetensors"), &vs, &cfg)?;

    let splits = args.splits()?;
    let out = args.out_dir();
    if matches!(args.data.as_str(), "bundled" | "bundled-clean") {
        data::write_keywords(&out.join("data"))?;
    }
    let (set, _) = data::load_spec(&args.data, &out.join("data"))?;
    let rate = input.frontend.sample_rate;
    let mut features = Vec::new();
    let mut rows = Vec::new();
    for split in splits {
        let clips = if split == "train" { &set.train } else { &set.test };
        let waves = data::decode_spec(&args.data, clips, rate, split == "test")?;
        let x = input.spectrograms(&waves);
        features.push(extract_features(&|x| net.forward_t(x, false), &x, args.batch_size as usize, device));
        rows.extend(
            clips.files.iter().zip(&clips.labels).map(
                |(f, &l)| json!({"split": split, "path": f, "label": l, "class": set.classes[l as usize]}),
            ),
        );
    }
    args.write("clips", &Tensor::cat(&features, 0), rows)?;
    Ok(())
}
