//! Operations on 1-D signals (waveforms, or any sampled series) that
//! augmentations of more than one modality build on: centring in a window,
//! speed perturbation, and additive noise at a signal-to-noise ratio. Each
//! is a pure function of its inputs (noise takes a seed), so callers keep
//! the per-sample seeding of [`crate::augment`].

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// `x` centred in `len` samples: zero-padded equally on both sides when
/// shorter, its middle `len` samples when longer.
pub fn centred(x: &[f32], len: usize) -> Vec<f32> {
    if x.len() >= len {
        let s = (x.len() - len) / 2;
        return x[s..s + len].to_vec();
    }
    let mut y = vec![0f32; len];
    let s = (len - x.len()) / 2;
    y[s..s + x.len()].copy_from_slice(x);
    y
}

/// Plays `x` `factor` times faster by linear interpolation: `y[i] =
/// x(i · factor)`, `round(len / factor)` samples. Pitch and formants rise
/// by `factor` (Kaldi's speed perturbation does the same with sox). Linear
/// interpolation leaves some aliasing above `rate / 2 / factor`, little
/// for speech at factors near 1.
pub fn change_speed(x: &[f32], factor: f64) -> Vec<f32> {
    assert!(factor > 0.0, "speed factor must be positive, got {factor}");
    let n = (x.len() as f64 / factor).round() as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 * factor;
            let k = t.floor() as usize;
            let frac = (t - k as f64) as f32;
            let a = x.get(k).copied().unwrap_or(0.0);
            let b = x.get(k + 1).copied().unwrap_or(0.0);
            a + (b - a) * frac
        })
        .collect()
}

/// Adds white Gaussian noise scaled so that the signal-to-noise power ratio
/// is `snr_db` (a silent signal is left as is).
pub fn add_noise(y: &mut [f32], snr_db: f64, seed: u64) {
    use rand_distr::{Distribution, StandardNormal};
    let power = y.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / y.len().max(1) as f64;
    if power == 0.0 {
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let noise: Vec<f64> = (0..y.len()).map(|_| StandardNormal.sample(&mut rng)).collect();
    let npow = noise.iter().map(|v| v * v).sum::<f64>() / noise.len() as f64;
    let scale = (power / npow / 10f64.powf(snr_db / 10.0)).sqrt();
    y.iter_mut().zip(noise).for_each(|(v, e)| *v += (e * scale) as f32);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centring_pads_and_crops_symmetrically() {
        assert_eq!(centred(&[1.0, 2.0], 6), vec![0.0, 0.0, 1.0, 2.0, 0.0, 0.0]);
        assert_eq!(centred(&[1.0, 2.0, 3.0, 4.0, 5.0], 3), vec![2.0, 3.0, 4.0]);
    }
}
