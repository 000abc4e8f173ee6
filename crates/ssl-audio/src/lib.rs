//! ssl-audio: self-supervised audio on ssl-core. So far: WAV files read
//! with `hound` into mono `f32` waveforms, band-limited resampling
//! ([`resample`], rubato) and the log-mel front end ([`frontend`],
//! torchaudio's `MelSpectrogram` on libtorch). Augmentations, the COLA/BYOL-A/masked-spectrogram methods and
//! `train-audio` come with the audio issue.

pub mod frontend;
pub mod resample;

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
/// not a shorter waveform.
pub fn read_wav(path: &Path) -> Result<Waveform> {
    let err = |msg: String| Error::Wav { path: path.to_path_buf(), msg };
    let mut reader = hound::WavReader::open(path).map_err(|e| err(format!("cannot open as WAV: {e}")))?;
    let spec = reader.spec();
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
    }
}
