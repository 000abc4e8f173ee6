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
