//! Modality-agnostic augmentation plumbing: every sample's randomness comes
//! from its own RNG, derived from (seed, epoch, sample index), so a batch is
//! the same whatever the thread count, and a resumed run sees the same views.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// SplitMix64's finaliser: a good 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The sample order of `epoch`: `0..n` shuffled by a generator seeded from
/// (`seed`, `epoch`). Every batch source of every modality uses it, so two
/// sources over the same data see the same batches, and a resumed run the
/// same order.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    use rand::seq::SliceRandom;
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(epoch as u64 + 1)));
    idx.shuffle(&mut rng);
    idx
}

/// The RNG for one sample of one epoch.
pub fn sample_rng(seed: u64, epoch: usize, index: usize) -> ChaCha8Rng {
    let s = mix(mix(mix(seed) ^ epoch as u64) ^ index as u64);
    ChaCha8Rng::seed_from_u64(s)
}

/// The seed of libtorch's generators for optimizer step `step` (0-based)
/// of rank `rank` in a run seeded with `seed`: the trainer reseeds before
/// every step, so the step's random draws (dropout, MAE's masks, drop
/// path) depend on nothing but these three numbers, and a run resumed at
/// any step draws what an uninterrupted one does. Non-negative.
pub fn step_seed(seed: u64, rank: usize, step: usize) -> i64 {
    (mix(mix(mix(seed ^ 0x5eed) ^ rank as u64) ^ step as u64) >> 1) as i64
}

/// Maps `f` over `items` in parallel with rayon, keeping order; the first
/// error (in item order) is returned.
pub fn par_map<T: Sync, U: Send, E: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<U, E> + Sync + Send,
) -> Result<Vec<U>, E> {
    items.par_iter().map(f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn rngs_are_reproducible_and_distinct() {
        let a: u64 = sample_rng(1, 2, 3).gen();
        assert_eq!(a, sample_rng(1, 2, 3).gen::<u64>());
        assert_ne!(a, sample_rng(1, 2, 4).gen::<u64>());
        assert_ne!(a, sample_rng(1, 3, 3).gen::<u64>());
        assert_ne!(a, sample_rng(2, 2, 3).gen::<u64>());
    }

    #[test]
    fn par_map_keeps_order_and_errors() {
        let v: Vec<usize> = (0..100).collect();
        assert_eq!(par_map(&v, |x| Ok::<_, ()>(x * 2)).unwrap()[99], 198);
        assert_eq!(par_map(&v, |&x| if x == 50 { Err(x) } else { Ok(x) }), Err(50));
    }
}
