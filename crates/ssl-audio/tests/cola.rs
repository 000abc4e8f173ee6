//! COLA learns on synthetic clips: two "words" (tone pairs) in noise. The
//! source makes two different crops per clip, and the pairing loss falls
//! well below chance.

use ssl_audio::augment::WaveAugment;
use ssl_audio::cola::{ClipSource, Cola, ColaConfig};
use ssl_audio::encoder::AudioCnnConfig;
use ssl_audio::frontend::LogMelConfig;
use ssl_core::optim::OptimizerConfig;
use ssl_core::trainer::{TrainConfig, Trainer};
use ssl_core::{BatchSource, Method};
use tch::{nn, Device, Tensor};

fn clips(n: usize) -> (Vec<Vec<f32>>, Vec<i64>) {
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
                    + 0.05 * rng.gen_range(-1.0f32..1.0)
            })
            .collect();
        xs.push(x);
        ys.push(label);
    }
    (xs, ys)
}

#[test]
fn cola_learns_to_pair_crops() {
    let (xs, ys) = clips(64);
    let aug = WaveAugment {
        crop_len: 4000,
        gain_db: (-3.0, 3.0),
        shift_max: 0,
        noise_p: 0.5,
        snr_db: (10.0, 30.0),
    };
    let source = ClipSource::new(&xs, &ys, aug, 16, 0);
    let b = source.batch(0, 0).unwrap();
    assert_eq!(b.views[0].size(), [16, 4000]);
    assert!(!b.views[0].equal(&b.views[1]), "two different crops");
    let cfg = ColaConfig {
        frontend: LogMelConfig { n_mels: 32, ..LogMelConfig::default() },
        encoder: AudioCnnConfig { n_mels: 32, channels: 8, dim: 32, dropout: 0.0 },
        projection: 16,
    };
    let mut vs = nn::VarStore::new(Device::Cpu);
    let mut cola = Cola::new(&vs.root(), &cfg);
    let dir = tempfile::tempdir().unwrap();
    let train = TrainConfig {
        epochs: 6,
        optimizer: OptimizerConfig::adamw(3e-3, 1e-4),
        warmup_epochs: 1,
        bf16: false,
        log_every: 1,
        ..TrainConfig::default()
    };
    let summary = Trainer::new(train, Device::Cpu, dir.path(), serde_json::json!({}))
        .fit(&mut cola, &mut vs, &source, false)
        .unwrap();
    // Chance for 16-way pairing is ln 16 = 2.77.
    assert!(summary.final_loss < 2.0, "final loss {}", summary.final_loss);
    let f = tch::no_grad(|| cola.features(&Tensor::from_slice(&xs[0]).view([1, 8000])));
    assert_eq!(f.size(), [1, 32]);
}
