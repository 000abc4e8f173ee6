//! The random equaliser's peaking filter against torchaudio's
//! `equalizer_biquad` (`tools/golden/equalizer.py`): four filters alone and
//! in cascade on tones plus noise, and a boost measured where it should be.

use ssl_audio::augment::{peaking_eq, EqBand};
use std::collections::HashMap;
use tch::Tensor;

fn fixture() -> HashMap<String, Vec<f32>> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/equalizer.safetensors");
    Tensor::read_safetensors(p)
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, Vec::<f32>::try_from(&t.flatten(0, -1)).unwrap()))
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max)
}

fn bands(f: &HashMap<String, Vec<f32>>) -> Vec<EqBand> {
    f["bands"]
        .chunks(3)
        .map(|b| EqBand { centre_hz: b[0].into(), gain_db: b[1].into(), q: b[2].into() })
        .collect()
}

#[test]
fn each_peaking_filter_matches_torchaudio() {
    let f = fixture();
    for (k, band) in bands(&f).iter().enumerate() {
        let y = peaking_eq(&f["wave"], 16_000.0, band);
        let d = max_diff(&y, &f[&format!("eq_{k}")]);
        assert!(d < 1e-6, "band {k} ({band:?}): max difference {d}");
        // The tolerance tells filters apart: 10% off in Q is far outside it.
        let off = peaking_eq(&f["wave"], 16_000.0, &EqBand { q: band.q * 1.1, ..band.clone() });
        assert!(max_diff(&off, &f[&format!("eq_{k}")]) > 1e-3, "band {k}");
    }
}

#[test]
fn the_cascade_matches_torchaudio() {
    let f = fixture();
    let y = bands(&f).iter().fold(f["wave"].clone(), |y, b| peaking_eq(&y, 16_000.0, b));
    let d = max_diff(&y, &f["cascade"]);
    assert!(d < 1e-5, "max difference {d}");
}

#[test]
fn a_boost_raises_its_centre_and_leaves_far_frequencies() {
    let rate = 16_000.0;
    let tone = |hz: f64| -> Vec<f32> {
        (0..16_000).map(|i| (2.0 * std::f64::consts::PI * hz * i as f64 / rate).sin() as f32 * 0.1).collect()
    };
    // Root mean square after the first 0.25 s (the filter's transient).
    let rms = |x: &[f32]| (x[4_000..].iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / 12_000.0).sqrt();
    let band = EqBand { centre_hz: 1_000.0, gain_db: 12.0, q: 1.0 };
    let gain_db = |hz| 20.0 * (rms(&peaking_eq(&tone(hz), rate, &band)) / rms(&tone(hz))).log10();
    assert!((gain_db(1_000.0) - 12.0).abs() < 0.05, "{}", gain_db(1_000.0));
    assert!(
        gain_db(60.0).abs() < 0.2 && gain_db(7_000.0).abs() < 0.3,
        "{} {}",
        gain_db(60.0),
        gain_db(7_000.0)
    );
    // A 0 dB band is the identity.
    let x = tone(440.0);
    assert!(max_diff(&peaking_eq(&x, rate, &EqBand { gain_db: 0.0, ..band }), &x) < 1e-6);
}
