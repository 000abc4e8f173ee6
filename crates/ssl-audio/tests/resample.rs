//! The resampler against torchaudio's high-quality sinc resampling
//! (`tools/golden/resample.py`): the same 16 kHz signal from 44.1 kHz tones
//! away from the edges, the expected length, and a 12 kHz tone (above the
//! new Nyquist) removed.

use ssl_audio::resample::resample;
use std::collections::HashMap;
use tch::Tensor;

fn fixture() -> HashMap<String, Vec<f32>> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resample.safetensors");
    Tensor::read_safetensors(p)
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, Vec::<f32>::try_from(&t).unwrap()))
        .collect()
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64).sqrt()
}

#[test]
fn matches_torchaudio_on_band_limited_tones() {
    let f = fixture();
    let y = resample(&f["wave44k"], 44_100, 16_000).unwrap();
    assert_eq!(y.len(), f["wave16k"].len());
    // Away from the first and last 20 ms, where the two pad differently.
    let (a, b) = (320, y.len() - 320);
    let diff: Vec<f32> = y[a..b].iter().zip(&f["wave16k"][a..b]).map(|(p, q)| p - q).collect();
    let max = diff.iter().fold(0f32, |m, d| m.max(d.abs()));
    let rel = rms(&diff) / rms(&f["wave16k"][a..b]);
    eprintln!("max |diff| {max:.2e}, relative rms {rel:.2e}");
    assert!(max < 1e-5 && rel < 1e-5, "max {max}, relative rms {rel}");
}

#[test]
fn tones_above_the_new_nyquist_are_removed() {
    let f = fixture();
    let y = resample(&f["alias44k"], 44_100, 16_000).unwrap();
    let ratio = rms(&y[320..y.len() - 320]) / rms(&f["alias44k"]);
    eprintln!("12 kHz tone kept at {:.1} dB", 20.0 * ratio.log10());
    assert!(ratio < 1e-3, "alias rejection only {:.1} dB", 20.0 * ratio.log10());
}

#[test]
fn lengths_and_trivial_cases() {
    let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.01).sin()).collect();
    assert_eq!(resample(&x, 16_000, 16_000).unwrap(), x);
    assert_eq!(resample(&x, 8_000, 16_000).unwrap().len(), 2000);
    assert_eq!(resample(&x, 48_000, 16_000).unwrap().len(), 334);
    assert!(resample(&[], 44_100, 16_000).unwrap().is_empty());
    assert!(resample(&x, 0, 16_000).unwrap_err().to_string().contains("positive"));
}
