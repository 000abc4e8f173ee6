//! The methods learn on synthetic clips: two "words" (tone pairs) in
//! noise. COLA's pairing loss falls well below chance, and masked
//! spectrogram modelling reconstructs removed patches far better than
//! predicting the mean.

use ssl_audio::augment::WaveAugment;
use ssl_audio::cola::{Cola, ColaConfig};
use ssl_audio::encoder::{AudioCnnConfig, AudioEncoderConfig};
use ssl_audio::frontend::LogMelConfig;
use ssl_audio::methods;
use ssl_audio::views::{AudioInput, AudioViewSource, ViewRecipe};
use ssl_core::optim::OptimizerConfig;
use ssl_core::trainer::{TrainConfig, Trainer};
use ssl_core::{BatchSource, Method};
use tch::{nn, Device};

/// `n` clips of two tone-pair "words" with pitch jitter, plus uniform
/// noise of amplitude `noise`.
fn clips(n: usize, noise: f32) -> (Vec<Vec<f32>>, Vec<i64>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for i in 0..n {
        let label = (i % 2) as i64;
        let (f1, f2) = if label == 0 { (400.0, 1200.0) } else { (700.0, 2500.0) };
        let jitter: f32 = rng.gen_range(0.9..1.1);
        let x: Vec<f32> = (0..8000)
            .map(|t| {
                let s = t as f32 / 16_000.0;
                0.3 * (2.0 * std::f32::consts::PI * f1 * jitter * s).sin()
                    + 0.2 * (2.0 * std::f32::consts::PI * f2 * jitter * s).sin()
                    + noise * rng.gen_range(-1.0f32..1.0)
            })
            .collect();
        xs.push(x);
        ys.push(label);
    }
    (xs, ys)
}

fn input(clips: &[Vec<f32>]) -> AudioInput {
    AudioInput::fit(LogMelConfig { n_mels: 32, ..LogMelConfig::default() }, 32, clips)
}

fn train(epochs: usize, lr: f64) -> TrainConfig {
    TrainConfig {
        epochs,
        optimizer: OptimizerConfig::adamw(lr, 1e-4),
        warmup_epochs: 1,
        bf16: false,
        log_every: 1,
        ..TrainConfig::default()
    }
}

#[test]
fn cola_learns_to_pair_crops() {
    let (xs, ys) = clips(64, 0.05);
    let input = input(&xs);
    // COLA's views without speed perturbation: these clips differ from one
    // another only by their pitch jitter, which a speed change would erase.
    let ViewRecipe::Cola { wave } = ViewRecipe::cola(input.clip_len) else { panic!("cola views") };
    let recipe = ViewRecipe::Cola { wave: WaveAugment { speed: (1.0, 1.0), ..wave } };
    let source = AudioViewSource::new(&xs, &ys, &input, recipe, 16, 0);
    let b = source.batch(0, 0).unwrap();
    assert_eq!(b.views[0].size(), [16, 1, 32, 32]);
    assert!(!b.views[0].equal(&b.views[1]), "two different crops");
    let cfg = ColaConfig {
        encoder: AudioEncoderConfig::Cnn(AudioCnnConfig {
            channels: 8,
            dropout: 0.0,
            ..AudioCnnConfig::byol_a(32, 32)
        }),
        projection: 16,
    };
    let mut vs = nn::VarStore::new(Device::Cpu);
    let mut cola = Cola::new(&vs.root(), &cfg);
    let dir = tempfile::tempdir().unwrap();
    let summary = Trainer::new(train(8, 3e-3), Device::Cpu, dir.path(), serde_json::json!({}))
        .fit(&mut cola, &mut vs, &source, false)
        .unwrap();
    // Chance for 16-way pairing is ln 16 = 2.77.
    assert!(summary.final_loss < 2.0, "final loss {}", summary.final_loss);
    let f = tch::no_grad(|| cola.features(&input.spectrograms(&xs[..1])));
    assert_eq!(f.size(), [1, 32]);
}

#[test]
fn masked_spectrogram_modelling_reconstructs_removed_patches() {
    // Without noise: the log of white noise is unpredictable bin by bin.
    let (xs, ys) = clips(64, 0.0);
    let input = input(&xs);
    let source = AudioViewSource::new(&xs, &ys, &input, ViewRecipe::single(input.clip_len), 16, 0);
    let enc = AudioEncoderConfig::transformer(32, 32, 8, 32, 2);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let mut msm = methods::build("msm", &vs, &enc, &[]).unwrap().method;
    // Reconstruction error on every training batch, averaged (the masks
    // are random, so one batch would be noisy).
    let error = |m: &dyn Method| {
        tch::no_grad(|| {
            (0..source.batches_per_epoch())
                .map(|i| m.loss(&source.batch(0, i).unwrap(), false).unwrap().loss.double_value(&[]))
                .sum::<f64>()
                / source.batches_per_epoch() as f64
        })
    };
    let before = error(msm.as_ref());
    let dir = tempfile::tempdir().unwrap();
    Trainer::new(train(40, 3e-3), Device::Cpu, dir.path(), serde_json::json!({}))
        .fit(msm.as_mut(), &mut vs, &source, false)
        .unwrap();
    let after = error(msm.as_ref());
    // The harmonics run through time and across bands, so removed patches
    // are predictable from visible ones (the circular shift's click and
    // the gain are not).
    assert!(after < 0.5 * before, "reconstruction error {before} -> {after}");
}
