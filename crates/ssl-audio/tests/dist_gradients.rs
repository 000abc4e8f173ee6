//! COLA, BYOL-A and masked spectrogram modelling on two CPU ranks against
//! one process on the global batch (f64; BatchNorm synchronised): COLA's
//! negatives come from every rank, BYOL-A's and MSM's losses are per-rank
//! means. The wrong variants fail the same check. See
//! `ssl_core::dist_check`.

use ssl_audio::encoder::{AudioCnnConfig, AudioEncoderConfig};
use ssl_audio::methods;
use ssl_core::dist_check::{assert_outcomes, check_methods, Case};
use ssl_core::method::Batch;
use ssl_dist::Fault;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

fn cnn() -> AudioEncoderConfig {
    AudioEncoderConfig::Cnn(AudioCnnConfig { channels: 4, dropout: 0.0, ..AudioCnnConfig::byol_a(16, 16) })
}

/// Two global batches of 8 two-view log-mel windows `[1, 16, 24]`, f64.
fn batches() -> Vec<Batch> {
    (0..2)
        .map(|step| {
            let x = (Tensor::arange(8 * 384, (Kind::Double, Device::Cpu)).reshape([8, 1, 16, 24])
                * (0.21 + 0.05 * step as f64))
                .cos();
            let y = (&x * 0.7 - 0.2).flip([3]).contiguous();
            Batch { views: vec![x, y], labels: None }
        })
        .collect()
}

fn case(name: &str, encoder: AudioEncoderConfig, sync_bn: bool, draws: i64, wrong: Vec<Fault>) -> Case {
    let method = name.to_string();
    Case {
        name: name.to_string(),
        build: Box::new(move || {
            tch::manual_seed(5);
            let mut vs = VarStore::new(Device::Cpu);
            let m = methods::build(&method, &vs, &encoder, &[]).expect("building the method").method;
            vs.double();
            (vs, m)
        }),
        batches: batches(),
        sync_bn,
        compare_buffers: sync_bn,
        draws_per_sample: draws,
        wrong,
    }
}

#[test]
fn every_audio_method_has_the_global_batch_gradient_on_two_ranks() {
    use Fault::*;
    let outcomes = check_methods("every_audio_method_has_the_global_batch_gradient_on_two_ranks", &|| {
        vec![
            case("cola", cnn(), true, 0, vec![GatherLocalSliceBackward, LocalGather, LocalStatistics]),
            case("byol-a", cnn(), true, 0, vec![LocalStatistics, SkipGradSync]),
            // 8x8 patches of a 16x24 window: 6 mask draws per sample.
            case("msm", AudioEncoderConfig::transformer(16, 24, 8, 32, 1), false, 6, vec![SkipGradSync]),
        ]
    });
    assert_outcomes(&outcomes, 1e-10);
}
