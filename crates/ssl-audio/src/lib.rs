//! ssl-audio: self-supervised audio on ssl-core.
//!
//! - Input: WAV files read with `hound` into mono `f32` waveforms (PCM
//!   8/16/24/32-bit and 32-bit float, any channels), band-limited
//!   resampling ([`resample`], rubato; matches torchaudio), data sets
//!   ([`data`]: Speech Commands folders, manifests, unlabelled files, the
//!   bundled spoken keywords made by [`synth`] with espeak-ng).
//! - Front end: log-mel on libtorch ([`frontend`]; torchaudio's
//!   `MelSpectrogram` to 1e-5 of its maximum, the log to 1e-4); windows, normalisation and each
//!   method's views ([`views`]).
//! - Augmentations ([`augment`]): speed, crop, gain, shift, noise at an SNR;
//!   SpecAugment; BYOL-A's log-mixup-exp and random resized crop.
//! - Encoders ([`encoder`]): BYOL-A's CNN, or ssl-core's patch transformer
//!   on the spectrogram.
//! - Methods ([`methods`]): COLA ([`cola`]), BYOL-A ([`byola`]) and masked
//!   spectrogram modelling (ssl-core's MAE, shared with vision).
//! - Weights ([`weights`]): `--init` from a file, and the trained encoder
//!   out (`backbone.safetensors`, TorchScript).
//!
//! `cargo xtask train-audio` (the `train-audio` binary) pretrains one and
//! compares it with random initialisation by kNN, linear probe and
//! fine-tuning.

pub mod augment;
pub mod byola;
pub mod cola;
pub mod data;
pub mod encoder;
pub mod frontend;
pub mod methods;
pub mod resample;
pub mod synth;
pub mod views;
pub mod weights;

use std::path::{Path, PathBuf};

/// Errors of ssl-audio; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is missing, not a WAV, truncated or in an unsupported format.
    #[error("{path}: {msg}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// An option or setting is invalid.
    #[error("{0}")]
    Config(String),
    /// An error of the shared core (checkpoints, training, evaluation).
    #[error(transparent)]
    Core(#[from] ssl_core::Error),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// A mono waveform.
#[derive(Clone, Debug, PartialEq)]
pub struct Waveform {
    /// Samples per second.
    pub sample_rate: u32,
    /// Samples in `[-1, 1]`, channels averaged.
    pub samples: Vec<f32>,
}

impl Waveform {
    /// The waveform at `rate` Hz (band-limited; see [`resample::resample`]).
    pub fn resampled(&self, rate: u32) -> Result<Waveform> {
        Ok(Waveform {
            sample_rate: rate,
            samples: resample::resample(&self.samples, self.sample_rate, rate)?,
        })
    }
}

/// Reads a PCM (8/16/24/32-bit integer) or 32-bit float WAV file and
/// averages its channels. A file whose data chunk ends early is an error,
/// not a shorter waveform; so is a float sample that is NaN or infinite.
pub fn read_wav(path: &Path) -> Result<Waveform> {
    let err = |msg: String| Error::Wav { path: path.to_path_buf(), msg };
    let mut reader = hound::WavReader::open(path).map_err(|e| match e {
        hound::Error::Unsupported => {
            err("unsupported encoding (PCM 8/16/24/32-bit integer and 32-bit float WAV are read; \
             convert others, e.g. mu-law or ADPCM, with `sox in.wav -e signed -b 16 out.wav`)"
                .into())
        }
        e => err(format!("cannot open as WAV: {e}")),
    })?;
    let spec = reader.spec();
    if spec.sample_rate == 0 {
        return Err(err("the header declares a sample rate of 0 Hz".into()));
    }
    let expected = reader.len() as usize;
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float if spec.bits_per_sample == 32 => {
            reader.samples::<f32>().collect::<std::result::Result<_, _>>()
        }
        hound::SampleFormat::Int if (8..=32).contains(&spec.bits_per_sample) => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<std::result::Result<_, _>>()
        }
        _ => {
            return Err(err(format!(
                "unsupported sample format {:?} with {} bits",
                spec.sample_format, spec.bits_per_sample
            )))
        }
    }
    .map_err(|e| err(format!("truncated or corrupt sample data: {e}")))?;
    if samples.len() != expected {
        return Err(err(format!("header announces {expected} samples, file holds {}", samples.len())));
    }
    if samples.is_empty() {
        return Err(err("zero-length clip: the data chunk holds no samples".into()));
    }
    if let Some(i) = samples.iter().position(|s| !s.is_finite()) {
        return Err(err(format!("sample {i} is {} (a float WAV must hold finite samples)", samples[i])));
    }
    let ch = spec.channels.max(1) as usize;
    if !samples.len().is_multiple_of(ch) {
        return Err(err(format!("{} samples is not a whole number of {ch}-channel frames", samples.len())));
    }
    let mono = samples.chunks(ch).map(|f| f.iter().sum::<f32>() / ch as f32).collect();
    Ok(Waveform { sample_rate: spec.sample_rate, samples: mono })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_stereo(path: &Path, frames: usize) {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 16000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..frames {
            w.write_sample((i as i16) * 100).unwrap();
            w.write_sample(-(i as i16) * 100 + 16384).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn reads_and_downmixes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.wav");
        write_stereo(&p, 100);
        let w = read_wav(&p).unwrap();
        assert_eq!(w.sample_rate, 16000);
        assert_eq!(w.samples.len(), 100);
        // (100 i + 16384 - 100 i) / 2 / 32768 = 0.25 for every frame.
        assert!(w.samples.iter().all(|&s| (s - 0.25).abs() < 1e-6));
    }

    #[test]
    fn truncated_and_foreign_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cut.wav");
        write_stereo(&p, 100);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 41]).unwrap();
        let e = read_wav(&p).unwrap_err().to_string();
        assert!(e.contains("cut.wav") && (e.contains("truncated") || e.contains("header announces")), "{e}");
        let q = dir.path().join("text.wav");
        std::fs::write(&q, "not audio").unwrap();
        let e = read_wav(&q).unwrap_err().to_string();
        assert!(e.contains("text.wav") && e.contains("cannot open as WAV"), "{e}");
        let e = read_wav(&dir.path().join("missing.wav")).unwrap_err().to_string();
        assert!(e.contains("missing.wav"), "{e}");
        let z = dir.path().join("empty.wav");
        write_stereo(&z, 0);
        let e = read_wav(&z).unwrap_err().to_string();
        assert!(e.contains("empty.wav") && e.contains("zero-length clip"), "{e}");
        // A float WAV holding NaN or infinity.
        for (name, bad) in [("nan.wav", f32::NAN), ("inf.wav", f32::INFINITY)] {
            let p = dir.path().join(name);
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: 16_000,
                bits_per_sample: 32,
                sample_format: hound::SampleFormat::Float,
            };
            let mut w = hound::WavWriter::create(&p, spec).unwrap();
            for s in [0.1, 0.2, bad, 0.3] {
                w.write_sample(s).unwrap();
            }
            w.finalize().unwrap();
            let e = read_wav(&p).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains("sample 2 is") && e.contains("finite samples"), "{e}");
        }
    }

    #[test]
    fn formats_and_channel_counts_are_read_as_mono() {
        let dir = tempfile::tempdir().unwrap();
        for (bits, fmt, channels) in [
            (8u16, hound::SampleFormat::Int, 1u16),
            (24, hound::SampleFormat::Int, 3),
            (32, hound::SampleFormat::Int, 2),
            (32, hound::SampleFormat::Float, 4),
        ] {
            let p = dir.path().join(format!("{bits}-{fmt:?}-{channels}.wav"));
            let spec =
                hound::WavSpec { channels, sample_rate: 22_050, bits_per_sample: bits, sample_format: fmt };
            let mut w = hound::WavWriter::create(&p, spec).unwrap();
            for _ in 0..50 {
                for c in 0..channels {
                    // Half of full scale on channel 0, silence elsewhere.
                    let v = if c == 0 { 0.5 } else { 0.0 };
                    match fmt {
                        hound::SampleFormat::Float => w.write_sample(v as f32).unwrap(),
                        hound::SampleFormat::Int => {
                            w.write_sample((v * (1u64 << (bits - 1)) as f64) as i32).unwrap()
                        }
                    }
                }
            }
            w.finalize().unwrap();
            let wav = read_wav(&p).unwrap();
            assert_eq!((wav.sample_rate, wav.samples.len()), (22_050, 50));
            let want = 0.5 / f32::from(channels);
            assert!(wav.samples.iter().all(|&s| (s - want).abs() < 1e-2), "{p:?}: {:?}", &wav.samples[..3]);
        }
        // Resampled to the model rate, the level holds.
        let w = Waveform { sample_rate: 22_050, samples: vec![0.25; 2205] };
        let r = w.resampled(16_000).unwrap();
        assert_eq!((r.sample_rate, r.samples.len()), (16_000, 1600));
        assert!(r.samples[200..1400].iter().all(|&s| (s - 0.25).abs() < 1e-3));
    }
}
