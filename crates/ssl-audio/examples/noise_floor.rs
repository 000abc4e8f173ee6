//! What a trained audio encoder's first principal direction follows: the
//! background noise floor of each clip, or something else.
//!
//! For the bundled keywords' 400 training clips (white noise at 0-20 dB
//! SNR), it prints, for a random-init encoder and for a `train-audio`
//! run's encoder: the share of the feature variance on the first principal
//! direction, and that direction's correlation (Pearson's r) with each
//! clip's noise floor (the mean normalised log-mel of its quietest quarter
//! of frames) and with its loudest quarter minus that floor (an SNR proxy).
//! The direction's sign is arbitrary, so the correlations are given as |r|.
//! It also prints which attribute of a clip its nearest neighbour shares
//! (leave-one-out 1-NN by cosine, over the same 400 clips): the word, the
//! voice's variant (`m1` … `f5`, `klatt`), its accent (`en-us`, …), its
//! speaking speed and its pitch (each cut into three bins), beside the
//! largest class's share (what a constant guess scores). The word's
//! agreement is also given after centring and standardising the features,
//! and with each BatchNorm normalising by the clips' own statistics
//! instead of its running ones.
//!
//! ```text
//! cargo xtask setup   # once
//! cargo run --release -p ssl-audio --example noise_floor -- RUN [PREFIX]
//! ```
//!
//! `RUN` is a run folder (its `backbone.json` and `model.safetensors`);
//! `PREFIX` names the encoder in `model.safetensors`: `online.encoder.`
//! (BYOL-A, the default), `target.encoder.` or `encoder.` (COLA).

use anyhow::{bail, Context, Result};
use ssl_audio::data;
use ssl_audio::encoder::{AudioEncoder, AudioEncoderConfig};
use ssl_audio::views::AudioInput;
use ssl_core::eval::extract_features;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

/// Pearson's r of two `[N]` tensors.
fn corr(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a - a.mean(Kind::Float), b - b.mean(Kind::Float));
    let den = (&a * &a).sum(Kind::Float).sqrt() * (&b * &b).sum(Kind::Float).sqrt();
    ((&a * &b).sum(Kind::Float) / den).double_value(&[])
}

/// Share of the variance on the first principal direction, and the
/// samples' coordinates along it.
///
/// # Shapes
/// `f: [N, D]` → `[N]`
fn first_component(f: &Tensor) -> (f64, Tensor) {
    let centred = f - f.mean_dim([0i64].as_slice(), true, Kind::Float);
    let (_, s, v) = centred.svd(true, true);
    let var = s.square();
    let share = (var.get(0) / var.sum(Kind::Float)).double_value(&[]);
    (share, centred.matmul(&v.narrow(1, 0, 1)).squeeze_dim(1))
}

/// Leave-one-out 1-NN accuracy by cosine similarity: for each row, whether
/// its most similar other row has the same label.
///
/// # Shapes
/// `f: [N, D]`, `labels: [N]`
fn nearest_neighbour_agreement(f: &Tensor, labels: &[i64]) -> f64 {
    let f = f / f.norm_scalaropt_dim(2, [1i64].as_slice(), true).clamp_min(1e-12);
    let sim = f.matmul(&f.tr()) - Tensor::eye(labels.len() as i64, (Kind::Float, Device::Cpu)) * 1e9;
    let nearest = Vec::<i64>::try_from(sim.argmax(1, false)).unwrap_or_default();
    let same = nearest.iter().enumerate().filter(|&(i, &j)| labels[i] == labels[j as usize]).count();
    same as f64 / labels.len() as f64
}

/// Integer labels for string attributes, in order of first appearance.
fn label_ids(values: &[String]) -> Vec<i64> {
    let mut seen: Vec<&String> = Vec::new();
    values
        .iter()
        .map(|v| match seen.iter().position(|s| *s == v) {
            Some(i) => i as i64,
            None => {
                seen.push(v);
                seen.len() as i64 - 1
            }
        })
        .collect()
}

/// The share of the most common label.
fn largest_class(labels: &[i64]) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for l in labels {
        *counts.entry(l).or_insert(0usize) += 1;
    }
    counts.values().max().copied().unwrap_or(0) as f64 / labels.len().max(1) as f64
}

/// Each attribute of the training clips, from the bundled `clips.tsv`
/// (`split word voice speed pitch file`), as labels: voice variant,
/// accent, speed bin, pitch bin (thirds of the sorted values).
fn attributes(tsv: &std::path::Path, files: &[std::path::PathBuf]) -> Result<Vec<(&'static str, Vec<i64>)>> {
    let text = std::fs::read_to_string(tsv).with_context(|| format!("reading {}", tsv.display()))?;
    let rows: std::collections::HashMap<&str, Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|c| c.len() == 6)
        .map(|c| (c[5], c))
        .collect();
    let mut cols: [Vec<String>; 2] = Default::default();
    let mut numbers: [Vec<f64>; 2] = Default::default();
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let Some(c) = rows.get(name) else { bail!("{}: {name} is not listed", tsv.display()) };
        let (accent, variant) = c[2].split_once('+').unwrap_or((c[2], ""));
        cols[0].push(variant.to_string());
        cols[1].push(accent.to_string());
        for (k, col) in [3, 4].into_iter().enumerate() {
            numbers[k]
                .push(c[col].parse().with_context(|| format!("{}: {name}: column {col}", tsv.display()))?);
        }
    }
    let thirds = |v: &[f64]| -> Vec<i64> {
        let mut sorted = v.to_vec();
        sorted.sort_by(f64::total_cmp);
        let (a, b) = (sorted[sorted.len() / 3], sorted[2 * sorted.len() / 3]);
        v.iter().map(|&x| i64::from(x >= a) + i64::from(x >= b)).collect()
    };
    Ok(vec![
        ("voice variant", label_ids(&cols[0])),
        ("accent", label_ids(&cols[1])),
        ("speed third", thirds(&numbers[0])),
        ("pitch third", thirds(&numbers[1])),
    ])
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(run) = args.next().map(std::path::PathBuf::from) else {
        bail!("usage: noise_floor RUN [PREFIX]");
    };
    let prefix = args.next().unwrap_or_else(|| "online.encoder.".into());
    let meta_file = run.join("backbone.json");
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&meta_file).with_context(|| format!("reading {}", meta_file.display()))?,
    )
    .with_context(|| format!("{}: not JSON", meta_file.display()))?;
    let cfg: AudioEncoderConfig =
        serde_json::from_value(meta["encoder"].clone()).context("backbone.json: no audio encoder")?;
    let input: AudioInput =
        serde_json::from_value(meta["input"].clone()).context("backbone.json: no input")?;

    let dir = tempfile::tempdir()?;
    data::write_keywords(dir.path())?;
    let (set, _) = data::load_spec("bundled", dir.path())?;
    let clips = data::decode_spec("bundled", &set.train, input.frontend.sample_rate, false)?;
    let mut attrs = vec![("word", set.train.labels.clone())];
    attrs.extend(attributes(&dir.path().join("keywords/clips.tsv"), &set.train.files)?);
    let x = input.spectrograms(&clips);
    // Each frame's mean over the bands, sorted per clip, on the training
    // set's normalisation alone (a run with `--per-clip-norm` feeds its
    // encoder each clip standardised by its own statistics).
    let levels = AudioInput { per_clip: false, ..input.clone() }.spectrograms(&clips);
    let (frames, _) = levels.squeeze_dim(1).mean_dim([1i64].as_slice(), false, Kind::Float).sort(1, false);
    let q = frames.size()[1] / 4;
    let floor = frames.narrow(1, 0, q).mean_dim([1i64].as_slice(), false, Kind::Float);
    let snr = frames.narrow(1, 4 * q - q, q).mean_dim([1i64].as_slice(), false, Kind::Float) - &floor;

    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    // No dropout: the BatchNorm check below runs in training mode.
    let cfg = match cfg {
        AudioEncoderConfig::Cnn(c) => {
            AudioEncoderConfig::Cnn(ssl_audio::encoder::AudioCnnConfig { dropout: 0.0, ..c })
        }
        other => other,
    };
    let net = AudioEncoder::new(&vs.root(), &cfg);
    let report = |name: &str| {
        let f = extract_features(&|x| net.forward_t(x, false), &x, 64, Device::Cpu);
        let (share, pc1) = first_component(&f);
        println!(
            "{name}: first direction {:.0}% of the variance; |r| with the noise floor {:.2}, with the SNR proxy {:.2}",
            100.0 * share,
            corr(&pc1, &floor).abs(),
            corr(&pc1, &snr).abs()
        );
        let shared: Vec<String> = attrs
            .iter()
            .map(|(what, labels)| {
                format!(
                    "{what} {:.1}% (largest class {:.1}%)",
                    100.0 * nearest_neighbour_agreement(&f, labels),
                    100.0 * largest_class(labels)
                )
            })
            .collect();
        println!("  nearest neighbour shares: {}", shared.join(", "));
        // The same for the words after centring the features on their mean,
        // and after standardising each dimension: how much of the loss is
        // a shared offset or a few loud dimensions rather than lost content.
        let mean = f.mean_dim([0i64].as_slice(), true, Kind::Float);
        let centred = &f - &mean;
        let std = centred.std_dim([0i64].as_slice(), true, true).clamp_min(1e-6);
        println!(
            "  words: centred {:.1}%, standardised {:.1}%",
            100.0 * nearest_neighbour_agreement(&centred, &attrs[0].1),
            100.0 * nearest_neighbour_agreement(&(&centred / std), &attrs[0].1)
        );
        // BatchNorm on these clips' own statistics (one batch of all of
        // them, in training mode without dropout) instead of the running
        // statistics gathered on augmented views in pretraining (random
        // init's are the identity).
        let g = tch::no_grad(|| net.forward_t(&x, true));
        println!(
            "  words with BatchNorm on the clips' own statistics: {:.1}%",
            100.0 * nearest_neighbour_agreement(&g, &attrs[0].1)
        );
    };
    report("random init");
    let named: Vec<(String, Tensor)> = ssl_core::weights::read_tensors(&run.join("model.safetensors"))?
        .into_iter()
        .filter_map(|(n, t)| n.strip_prefix(&prefix).map(|s| (s.to_string(), t)))
        .collect();
    if named.is_empty() {
        bail!("{}: no tensors under `{prefix}`", run.join("model.safetensors").display());
    }
    ssl_core::weights::copy_named(&vs, &named)?;
    report(&format!("{} ({prefix})", run.display()));
    Ok(())
}
