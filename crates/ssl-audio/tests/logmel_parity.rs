//! The log-mel front end against torchaudio 2.11 (`tools/golden/logmel.py`):
//! the same filterbank, mel power spectrogram and log-mel, on a chirp with a
//! tone burst and on noise with a tone.

use ssl_audio::frontend::{mel_filterbank, LogMel, LogMelConfig};
use std::collections::HashMap;
use tch::{Device, Tensor};

fn fixture() -> HashMap<String, Tensor> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/logmel.safetensors");
    Tensor::read_safetensors(p).unwrap().into_iter().collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn filterbank_matches_torchaudio() {
    let f = fixture();
    let fb = mel_filterbank(&LogMelConfig::default());
    assert_eq!(fb.size(), [201, 64]);
    let d = max_diff(&fb, &f["fbank"]);
    eprintln!("filterbank: max |diff| {d:.2e}");
    assert!(d < 1e-6, "filterbank differs by {d}");
}

#[test]
fn mel_and_log_mel_match_torchaudio() {
    let f = fixture();
    let front = LogMel::new(&LogMelConfig::default(), Device::Cpu);
    let mel = front.mel(&f["wave"]);
    assert_eq!(mel.size(), [2, 64, 51]);
    // Relative to the largest value (power spectra span many decades).
    let scale = f["mel"].abs().max().double_value(&[]);
    let d = max_diff(&mel, &f["mel"]) / scale;
    eprintln!("mel: max |diff| / max {d:.2e}");
    assert!(d < 1e-5, "mel differs by {d} of its maximum");
    // The log turns the mel's rounding at its quietest bins into absolute
    // errors: 3.8e-5 on a 16-core AVX-512 machine (FFT code paths differ
    // with the CPU), under 1e-5 here. 1e-4 in natural log is a relative
    // error of 0.01% in the mel power.
    let log = front.forward(&f["wave"]);
    let d = max_diff(&log, &f["logmel"]);
    eprintln!("log-mel: max |diff| {d:.2e}");
    assert!(d < 1e-4, "log-mel differs by {d}");
}

#[cfg(feature = "cuda-tests")]
#[test]
fn mel_matches_torchaudio_on_cuda() {
    let f = fixture();
    let front = LogMel::new(&LogMelConfig::default(), Device::Cuda(0));
    let mel = front.mel(&f["wave"].to_device(Device::Cuda(0))).to_device(Device::Cpu);
    let d = max_diff(&mel, &f["mel"]) / f["mel"].abs().max().double_value(&[]);
    assert!(d < 1e-5, "CUDA mel differs by {d} of its maximum");
}
