//! Audio augmentations, split like the vision pipeline into sampling
//! ([`WaveAugment::sample`], [`SpecAugment::sample`]) and application, so
//! the distributions and the operations are tested separately:
//!
//! - on the waveform: speed perturbation (Ko et al., "Audio Augmentation
//!   for Speech Recognition", Interspeech 2015: resampling by a factor
//!   near 1, which shifts pitch and formants and stretches time, as a
//!   different speaker would), a random parametric equaliser (a cascade of
//!   peaking filters with random centres, gains and widths: the spectral
//!   envelope of another voice or microphone, the speaker perturbation of
//!   NANSY, Choi et al. 2021, <https://arxiv.org/abs/2110.14513>, and
//!   ContentVec, Qian et al. 2022, <https://arxiv.org/abs/2204.09224>),
//!   random crop to a fixed length (zero-padded when the clip is
//!   shorter), gain in dB, circular time shift, and additive Gaussian noise
//!   at a target signal-to-noise ratio (COLA and BYOL-A style);
//! - on the log-mel spectrogram: SpecAugment's frequency and time masks
//!   (Park et al., <https://arxiv.org/abs/1904.08779>), filled with the
//!   spectrogram's mean; and BYOL-A's (Niizumi et al.,
//!   <https://arxiv.org/abs/2103.06695>) log-mixup-exp and random resized
//!   crop, as batched tensor operations.

use rand::Rng;
use serde::{Deserialize, Serialize};
pub use ssl_core::signal::{add_noise, change_speed};

/// Waveform augmentation settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WaveAugment {
    /// Samples per crop.
    pub crop_len: usize,
    /// Gain range in dB (uniform).
    pub gain_db: (f64, f64),
    /// Largest circular shift in samples (uniform in `±shift_max`).
    pub shift_max: usize,
    /// Probability of adding noise.
    pub noise_p: f64,
    /// Signal-to-noise ratio range in dB (uniform).
    pub snr_db: (f64, f64),
    /// Speed factor range (uniform; 1 = unchanged, 1.1 = 10% faster and
    /// higher).
    #[serde(default = "unit_speed")]
    pub speed: (f64, f64),
    /// A random equaliser applied after the speed change, before the noise
    /// (so that it colours the voice, not the background); `None`: off.
    #[serde(default)]
    pub eq: Option<RandomEq>,
}

fn unit_speed() -> (f64, f64) {
    (1.0, 1.0)
}

impl WaveAugment {
    /// One-second crops at 16 kHz, ±6 dB gain, shifts up to 100 ms, noise
    /// at 5–40 dB SNR half of the time.
    pub fn default_16k() -> Self {
        Self {
            crop_len: 16_000,
            gain_db: (-6.0, 6.0),
            shift_max: 1_600,
            noise_p: 0.5,
            snr_db: (5.0, 40.0),
            speed: unit_speed(),
            eq: None,
        }
    }
}

/// Everything random about one waveform view.
#[derive(Clone, Debug, PartialEq)]
pub struct WaveParams {
    /// Start of the crop (0 when the clip is shorter than the crop).
    pub crop_start: usize,
    /// Gain in dB.
    pub gain_db: f64,
    /// Circular shift in samples (positive: later).
    pub shift: i64,
    /// Target SNR and the noise generator's seed, when noise is added.
    pub noise: Option<(f64, u64)>,
    /// Speed factor (applied first, about the clip's centre).
    pub speed: f64,
    /// The equaliser's peaking filters, applied in order after the speed
    /// change (empty: none).
    pub eq: Vec<EqBand>,
}

impl WaveAugment {
    /// Samples the parameters for a clip of `len` samples.
    pub fn sample(&self, len: usize, rng: &mut impl Rng) -> WaveParams {
        let crop_start = if len > self.crop_len { rng.gen_range(0..=len - self.crop_len) } else { 0 };
        let gain_db = rng.gen_range(self.gain_db.0..=self.gain_db.1);
        let m = self.shift_max as i64;
        let shift = rng.gen_range(-m..=m);
        let noise =
            rng.gen_bool(self.noise_p).then(|| (rng.gen_range(self.snr_db.0..=self.snr_db.1), rng.gen()));
        // Drawn last, and only when it varies, so that other draws stay as
        // they were without it.
        let speed = if self.speed.0 < self.speed.1 {
            rng.gen_range(self.speed.0..=self.speed.1)
        } else {
            self.speed.0
        };
        let eq = self.eq.as_ref().map_or_else(Vec::new, |e| e.sample(rng));
        WaveParams { crop_start, gain_db, shift, noise, speed, eq }
    }

    /// Applies sampled parameters; returns `crop_len` samples.
    pub fn apply(&self, x: &[f32], p: &WaveParams) -> Vec<f32> {
        let stretched;
        let x = if p.speed != 1.0 {
            // Same length, centred: the word stays where it was.
            stretched = ssl_core::signal::centred(&change_speed(x, p.speed), x.len());
            &stretched[..]
        } else {
            x
        };
        let equalised;
        let x = match (&self.eq, &p.eq[..]) {
            (Some(e), bands @ [_, ..]) => {
                equalised = bands.iter().fold(x.to_vec(), |y, b| peaking_eq(&y, e.sample_rate, b));
                &equalised[..]
            }
            _ => x,
        };
        let mut y = vec![0f32; self.crop_len];
        let end = (p.crop_start + self.crop_len).min(x.len());
        y[..end - p.crop_start].copy_from_slice(&x[p.crop_start..end]);
        let n = y.len() as i64;
        if p.shift != 0 && n > 0 {
            y.rotate_right(p.shift.rem_euclid(n) as usize);
        }
        let g = 10f64.powf(p.gain_db / 20.0) as f32;
        y.iter_mut().for_each(|v| *v *= g);
        if let Some((snr, seed)) = p.noise {
            add_noise(&mut y, snr, seed);
        }
        y
    }
}

/// A random parametric equaliser: `bands` peaking filters in cascade,
/// each with its centre drawn log-uniformly in `centre_hz`, its gain
/// uniformly in `±gain_db` and its quality factor log-uniformly in `q`.
/// Boosting and cutting bands at random changes a clip's spectral envelope
/// (where its energy sits across frequency) as another vocal tract or
/// microphone would, while the words stay the same.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandomEq {
    /// The waveform's sample rate in Hz.
    pub sample_rate: f64,
    /// Peaking filters per view.
    pub bands: usize,
    /// Range of the centre frequencies in Hz (log-uniform).
    pub centre_hz: (f64, f64),
    /// Largest boost or cut in dB (uniform in `±gain_db`).
    pub gain_db: f64,
    /// Range of the quality factors (log-uniform; 0.5 spans about two
    /// octaves, 4 a third of one).
    pub q: (f64, f64),
}

/// One peaking filter of [`RandomEq`].
#[derive(Clone, Debug, PartialEq)]
pub struct EqBand {
    /// Centre frequency in Hz.
    pub centre_hz: f64,
    /// Gain at the centre in dB.
    pub gain_db: f64,
    /// Quality factor.
    pub q: f64,
}

impl RandomEq {
    /// `bands` filters of up to `±gain_db` with centres from 100 Hz to
    /// 6 kHz (below 0.45 × `sample_rate`) and Q from 0.5 to 4.
    pub fn new(sample_rate: f64, bands: usize, gain_db: f64) -> Self {
        Self {
            sample_rate,
            bands,
            centre_hz: (100.0, 6_000f64.min(0.45 * sample_rate)),
            gain_db,
            q: (0.5, 4.0),
        }
    }

    /// Draws the filters of one view.
    pub fn sample(&self, rng: &mut impl Rng) -> Vec<EqBand> {
        let log_uniform = |rng: &mut _, (lo, hi): (f64, f64)| -> f64 {
            if lo < hi {
                Rng::gen_range(rng, lo.ln()..=hi.ln()).exp()
            } else {
                lo
            }
        };
        (0..self.bands)
            .map(|_| EqBand {
                centre_hz: log_uniform(rng, self.centre_hz),
                gain_db: rng.gen_range(-self.gain_db..=self.gain_db),
                q: log_uniform(rng, self.q),
            })
            .collect()
    }
}

/// `x` through one peaking filter: the biquad of the Audio EQ Cookbook
/// (R. Bristow-Johnson), with the coefficients and the zero initial state of
/// torchaudio's `equalizer_biquad`, computed in f64. Unlike torchaudio's
/// default, the output is not clamped to `[-1, 1]`.
pub fn peaking_eq(x: &[f32], sample_rate: f64, band: &EqBand) -> Vec<f32> {
    let w0 = 2.0 * std::f64::consts::PI * band.centre_hz / sample_rate;
    let a = 10f64.powf(band.gain_db / 40.0);
    let alpha = w0.sin() / 2.0 / band.q;
    let (b0, b1, b2) = (1.0 + alpha * a, -2.0 * w0.cos(), 1.0 - alpha * a);
    let (a0, a1, a2) = (1.0 + alpha / a, -2.0 * w0.cos(), 1.0 - alpha / a);
    let (b0, b1, b2, a1, a2) = (b0 / a0, b1 / a0, b2 / a0, a1 / a0, a2 / a0);
    let (mut x1, mut x2, mut y1, mut y2) = (0f64, 0f64, 0f64, 0f64);
    x.iter()
        .map(|&v| {
            let v = f64::from(v);
            let y = b0 * v + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2;
            (x2, x1, y2, y1) = (x1, v, y1, y);
            y as f32
        })
        .collect()
}

/// SpecAugment settings: `freq_masks` masks of up to `max_freq` bands and
/// `time_masks` masks of up to `max_time` frames (widths uniform from 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpecAugment {
    /// Number of frequency masks.
    pub freq_masks: usize,
    /// Widest frequency mask in bands.
    pub max_freq: usize,
    /// Number of time masks.
    pub time_masks: usize,
    /// Widest time mask in frames.
    pub max_time: usize,
}

/// Masks as `(start, width)`: frequency masks then time masks.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecMasks {
    /// Frequency masks.
    pub freq: Vec<(usize, usize)>,
    /// Time masks.
    pub time: Vec<(usize, usize)>,
}

impl SpecAugment {
    /// Samples masks for a `[bands, frames]` spectrogram.
    pub fn sample(&self, bands: usize, frames: usize, rng: &mut impl Rng) -> SpecMasks {
        let mut draw = |count: usize, max: usize, size: usize| {
            (0..count)
                .map(|_| {
                    let w = rng.gen_range(0..=max.min(size));
                    (rng.gen_range(0..=size - w), w)
                })
                .collect()
        };
        SpecMasks {
            freq: draw(self.freq_masks, self.max_freq, bands),
            time: draw(self.time_masks, self.max_time, frames),
        }
    }

    /// Fills the masked bands and frames of `spec` (`[bands, frames]`,
    /// row-major) with its mean.
    pub fn apply(spec: &mut [f32], bands: usize, frames: usize, m: &SpecMasks) {
        let mean = spec.iter().sum::<f32>() / spec.len().max(1) as f32;
        for &(f0, w) in &m.freq {
            spec[f0 * frames..(f0 + w) * frames].iter_mut().for_each(|v| *v = mean);
        }
        for &(t0, w) in &m.time {
            for b in 0..bands {
                spec[b * frames + t0..b * frames + t0 + w].iter_mut().for_each(|v| *v = mean);
            }
        }
    }
}

/// BYOL-A's log-mixup-exp: `ln((1 - λ) e^x + λ e^y)` per sample, with
/// `y = x[partners[b]]` another clip of the batch (BYOL-A draws it from a
/// FIFO memory of past clips, independently for each view) and
/// `lambdas[b] = λ` (BYOL-A: uniform in `[0, 0.4]`).
///
/// # Shapes
/// `x: [B, F, T]`, `partners: [B]` (int64 rows of `x`), `lambdas: [B]` → `[B, F, T]`
pub fn log_mixup_exp(x: &tch::Tensor, partners: &tch::Tensor, lambdas: &tch::Tensor) -> tch::Tensor {
    let y = x.index_select(0, &partners.to_device(x.device()));
    let l = lambdas.to_kind(x.kind()).view([-1, 1, 1]);
    // logaddexp(ln(1-λ) + x, ln(λ) + y), stable for λ at 0 or 1.
    ((-&l + 1.0).log() + x).logaddexp(&(l.log() + y))
}

/// BYOL-A's random resized crop on a spectrogram: a box of
/// `(F·sf, T·st)` with `sf, st` uniform in `scale` is cut from a virtual
/// canvas `virtual_scale` times as wide as the input (the input centred,
/// zeros around it, at a uniform random position) and resized back to
/// `[F, T]` bilinearly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpecResizedCrop {
    /// Range of the box's size relative to the input (BYOL-A: 0.6–1.5).
    pub scale: (f64, f64),
    /// Width of the virtual canvas relative to the input (BYOL-A: 1.5).
    pub virtual_scale: f64,
}

/// One crop box on the virtual canvas: top, left, height, width.
pub type CropBox = (i64, i64, i64, i64);

impl SpecResizedCrop {
    /// Samples a box for an `[F, T]` spectrogram.
    pub fn sample(&self, f: i64, t: i64, rng: &mut impl Rng) -> CropBox {
        let vt = (t as f64 * self.virtual_scale).round() as i64;
        let h = ((f as f64 * rng.gen_range(self.scale.0..=self.scale.1)).round() as i64).clamp(1, f);
        let w = ((t as f64 * rng.gen_range(self.scale.0..=self.scale.1)).round() as i64).clamp(1, vt);
        (rng.gen_range(0..=f - h), rng.gen_range(0..=vt - w), h, w)
    }

    /// Applies one box per sample.
    ///
    /// # Shapes
    /// `x: [B, F, T]` → `[B, F, T]`
    pub fn apply(&self, x: &tch::Tensor, boxes: &[CropBox]) -> tch::Tensor {
        let (_, f, t) = x.size3().expect("spectrograms are [B, F, T]");
        let vt = (t as f64 * self.virtual_scale).round() as i64;
        let left_pad = (vt - t) / 2;
        let canvas = x.constant_pad_nd([left_pad, vt - t - left_pad]);
        let crops: Vec<tch::Tensor> = boxes
            .iter()
            .enumerate()
            .map(|(b, &(top, left, h, w))| {
                let c = canvas.get(b as i64).narrow(0, top, h).narrow(1, left, w).view([1, 1, h, w]);
                c.upsample_bilinear2d([f, t], false, None, None).view([f, t])
            })
            .collect();
        tch::Tensor::stack(&crops, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn tone(n: usize) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.05).sin() * 0.5).collect()
    }

    #[test]
    fn noise_reaches_the_target_snr() {
        for snr in [0.0, 10.0, 30.0] {
            let x = tone(16_000);
            let mut y = x.clone();
            add_noise(&mut y, snr, 7);
            let p_sig = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>();
            let p_noise = x.iter().zip(&y).map(|(&a, &b)| f64::from(b - a).powi(2)).sum::<f64>();
            let got = 10.0 * (p_sig / p_noise).log10();
            assert!((got - snr).abs() < 0.01, "target {snr} dB, got {got}");
        }
        let mut silent = vec![0f32; 100];
        add_noise(&mut silent, 10.0, 1);
        assert!(silent.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn crop_gain_and_shift_do_what_they_say() {
        let aug = WaveAugment {
            crop_len: 1000,
            gain_db: (6.0, 6.0),
            shift_max: 0,
            noise_p: 0.0,
            snr_db: (0.0, 0.0),
            speed: (1.0, 1.0),
            eq: None,
        };
        let x = tone(5000);
        let p = WaveParams { crop_start: 1234, gain_db: 6.0, shift: 0, noise: None, speed: 1.0, eq: vec![] };
        let y = aug.apply(&x, &p);
        assert_eq!(y.len(), 1000);
        let g = 10f32.powf(0.3);
        assert!((y[10] - x[1244] * g).abs() < 1e-6);
        let shifted = aug.apply(&x, &WaveParams { shift: 3, gain_db: 0.0, ..p.clone() });
        assert_eq!(shifted[3], x[1234]);
        assert_eq!(shifted[0], x[1234 + 997]);
        // A short clip is zero-padded.
        let short = aug.apply(&x[..300], &WaveParams { crop_start: 0, ..p });
        assert_eq!(short.len(), 1000);
        assert!(short[300..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn speed_perturbation_scales_pitch_and_length() {
        // A 200 Hz tone at 16 kHz played 1.25x faster is a 250 Hz tone,
        // 0.8 times as long.
        let rate = 16_000.0;
        let x: Vec<f32> =
            (0..8_000).map(|i| (2.0 * std::f32::consts::PI * 200.0 * i as f32 / rate).sin()).collect();
        let y = change_speed(&x, 1.25);
        assert_eq!(y.len(), 6_400);
        let crossings = |v: &[f32]| v.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
        // 0.5 s of 200 Hz: 100 periods; 0.4 s of 250 Hz: also 100.
        assert!((crossings(&y) as i64 - crossings(&x) as i64).abs() <= 1);
        let seconds = y.len() as f32 / rate;
        assert!(((crossings(&y) as f32 / seconds) - 250.0).abs() < 3.0);
        assert_eq!(change_speed(&x, 1.0), x);
        // Through apply: same length, centred.
        let aug = WaveAugment {
            crop_len: 8_000,
            shift_max: 0,
            noise_p: 0.0,
            gain_db: (0.0, 0.0),
            ..WaveAugment::default_16k()
        };
        let p = WaveParams { crop_start: 0, gain_db: 0.0, shift: 0, noise: None, speed: 0.8, eq: vec![] };
        // A window with 4000 samples of tone in the middle (as the views
        // make them): at 0.8x the tone lasts 5000 samples, still centred.
        let window = ssl_core::signal::centred(&x[2_000..6_000], 8_000);
        let slow = aug.apply(&window, &p);
        assert_eq!(slow.len(), 8_000);
        assert!(
            slow[1_400..1_490].iter().all(|&v| v == 0.0) && slow[1_600..6_400].iter().any(|&v| v.abs() > 0.5)
        );
        assert!(slow[6_520..].iter().all(|&v| v == 0.0));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let wide = WaveAugment { speed: (0.9, 1.1), ..WaveAugment::default_16k() };
        let speeds: Vec<f64> = (0..2000).map(|_| wide.sample(16_000, &mut rng).speed).collect();
        assert!(speeds.iter().all(|s| (0.9..=1.1).contains(s)));
        let mean = speeds.iter().sum::<f64>() / 2000.0;
        assert!((mean - 1.0).abs() < 0.005, "{mean}");
    }

    #[test]
    fn sampled_parameters_follow_the_settings() {
        let aug = WaveAugment::default_16k();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let ps: Vec<WaveParams> = (0..4000).map(|_| aug.sample(48_000, &mut rng)).collect();
        assert!(ps.iter().all(|p| p.crop_start <= 32_000 && p.shift.unsigned_abs() <= 1_600));
        assert!(ps.iter().all(|p| (-6.0..=6.0).contains(&p.gain_db)));
        let noisy = ps.iter().filter(|p| p.noise.is_some()).count() as f64 / 4000.0;
        assert!((noisy - 0.5).abs() < 0.03, "{noisy}");
        let mean_gain = ps.iter().map(|p| p.gain_db).sum::<f64>() / 4000.0;
        assert!(mean_gain.abs() < 0.2, "{mean_gain}");
        assert!(ps.iter().flat_map(|p| p.noise).all(|(s, _)| (5.0..=40.0).contains(&s)));
    }

    #[test]
    fn equaliser_draws_follow_the_settings_and_leave_other_draws_alone() {
        let eq = RandomEq::new(16_000.0, 3, 12.0);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let bands: Vec<EqBand> = (0..2000).flat_map(|_| eq.sample(&mut rng)).collect();
        assert_eq!(bands.len(), 6000);
        assert!(bands.iter().all(|b| (100.0..=6_000.0).contains(&b.centre_hz)
            && (-12.0..=12.0).contains(&b.gain_db)
            && (0.5..=4.0).contains(&b.q)));
        // Log-uniform: the geometric mean of the centres is sqrt(100 * 6000).
        let log_mean = bands.iter().map(|b| b.centre_hz.ln()).sum::<f64>() / 6000.0;
        assert!((log_mean.exp() - 774.6).abs() < 30.0, "{}", log_mean.exp());
        let mean_gain = bands.iter().map(|b| b.gain_db).sum::<f64>() / 6000.0;
        assert!(mean_gain.abs() < 0.4, "{mean_gain}");
        // Centres stay below 0.45 of the rate at 8 kHz.
        assert_eq!(RandomEq::new(8_000.0, 1, 6.0).centre_hz, (100.0, 3_600.0));
        // With the equaliser on, the other draws are those without it, and
        // apply changes the waveform; with it off, nothing is drawn.
        let plain = WaveAugment { noise_p: 0.0, ..WaveAugment::default_16k() };
        let coloured = WaveAugment { eq: Some(eq), ..plain.clone() };
        let (mut r1, mut r2) = (ChaCha8Rng::seed_from_u64(5), ChaCha8Rng::seed_from_u64(5));
        let (p, q) = (plain.sample(20_000, &mut r1), coloured.sample(20_000, &mut r2));
        assert_eq!((p.crop_start, p.gain_db, p.shift), (q.crop_start, q.gain_db, q.shift));
        assert!(p.eq.is_empty() && q.eq.len() == 3);
        // Off, the equaliser draws nothing: the generator is where the
        // draws without the field left it.
        let mut r3 = ChaCha8Rng::seed_from_u64(5);
        r3.gen_range(0..=4_000usize); // crop start
        r3.gen_range(-6.0..=6.0); // gain
        r3.gen_range(-1_600i64..=1_600); // shift
        r3.gen_bool(0.0); // noise (off, but drawn)
        assert_eq!(r1.get_word_pos(), r3.get_word_pos());
        let x = tone(20_000);
        assert_ne!(plain.apply(&x, &p), coloured.apply(&x, &q));
        assert_eq!(plain.apply(&x, &p), coloured.apply(&x, &WaveParams { eq: vec![], ..q }));
    }

    #[test]
    fn spec_augment_masks_the_sampled_bands_and_frames() {
        let (bands, frames) = (8, 20);
        let mut spec: Vec<f32> = (0..bands * frames).map(|i| i as f32).collect();
        let mean = spec.iter().sum::<f32>() / spec.len() as f32;
        let masks = SpecMasks { freq: vec![(2, 3)], time: vec![(10, 4)] };
        SpecAugment::apply(&mut spec, bands, frames, &masks);
        for b in 0..bands {
            for t in 0..frames {
                let masked = (2..5).contains(&b) || (10..14).contains(&t);
                let v = spec[b * frames + t];
                assert_eq!(v == mean, masked, "band {b} frame {t}");
            }
        }
        let sa = SpecAugment { freq_masks: 2, max_freq: 8, time_masks: 2, max_time: 10 };
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for _ in 0..500 {
            let m = sa.sample(64, 101, &mut rng);
            assert_eq!((m.freq.len(), m.time.len()), (2, 2));
            assert!(m.freq.iter().all(|&(s, w)| w <= 8 && s + w <= 64));
            assert!(m.time.iter().all(|&(s, w)| w <= 10 && s + w <= 101));
        }
    }

    #[test]
    fn log_mixup_exp_mixes_in_linear_power() {
        use tch::{Device, Kind, Tensor};
        let x = Tensor::randn([3, 4, 5], (Kind::Float, Device::Cpu));
        let partners = Tensor::from_slice(&[2i64, 0, 0]);
        let none = log_mixup_exp(&x, &partners, &Tensor::zeros([3], (Kind::Float, Device::Cpu)));
        assert!((&none - &x).abs().max().double_value(&[]) < 1e-6);
        let lam = Tensor::from_slice(&[0.1f32, 0.25, 0.4]);
        let got = log_mixup_exp(&x, &partners, &lam);
        let y = Tensor::stack(&[x.get(2), x.get(0), x.get(0)], 0);
        let l = lam.view([-1, 1, 1]);
        let want = ((-&l + 1.0) * x.exp() + &l * y.exp()).log();
        assert!((got - want).abs().max().double_value(&[]) < 1e-5);
    }

    #[test]
    fn spec_resized_crop_keeps_shape_and_a_centred_full_box_is_the_input() {
        use tch::{Device, Kind, Tensor};
        let rrc = SpecResizedCrop { scale: (0.6, 1.5), virtual_scale: 1.5 };
        let x = Tensor::randn([2, 8, 20], (Kind::Float, Device::Cpu));
        // The input sits at columns 5..25 of the 30-wide canvas.
        let same = rrc.apply(&x, &[(0, 5, 8, 20), (0, 5, 8, 20)]);
        assert!((&same - &x).abs().max().double_value(&[]) < 1e-5);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let boxes: Vec<CropBox> = (0..2000).map(|_| rrc.sample(8, 20, &mut rng)).collect();
        assert!(boxes.iter().all(|&(t0, l0, h, w)| t0 >= 0
            && l0 >= 0
            && t0 + h <= 8
            && l0 + w <= 30
            && h >= 1));
        let mean_w = boxes.iter().map(|b| b.3 as f64).sum::<f64>() / 2000.0;
        assert!((mean_w - 21.0).abs() < 0.5, "{mean_w}"); // 20 * mean(0.6..1.5) = 21
        let out = rrc.apply(&x, &boxes[..2]);
        assert_eq!(out.size(), [2, 8, 20]);
    }
}
