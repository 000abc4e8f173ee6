//! Criterion benchmarks for ssl-rs (`cargo bench -p ssl-benches`), and the
//! inputs they share. Bench names carry the device: `cpu/ntxent/512x128`.
//! `cargo xtask bench-compare` runs them beside the PyTorch references in
//! `benches/reference/` and writes `BENCHMARKS.md` with the ratios.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ssl_text::pack::Packed;
use ssl_text::tokenizer::SpecialIds;
use ssl_vision::data::ImageSet;
use ssl_vision::transforms::ImageU8;

/// Whether to run the case `id` (its criterion full id): every case,
/// unless `$BENCH_ONLY` names one. `cargo xtask bench-compare` runs one case
/// per process this way, so that each process's peak memory is that case's
/// (criterion's own filter skips the timing but not the set-up).
pub fn wanted(id: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only == id)
}

/// `n` RGB images of `side × side` random bytes, labels 0.
pub fn random_images(n: usize, side: usize, seed: u64) -> ImageSet {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let images = (0..n)
        .map(|_| ImageU8 { c: 3, h: side, w: side, data: (0..3 * side * side).map(|_| rng.gen()).collect() })
        .collect();
    ImageSet { images, labels: vec![0; n] }
}

/// `n` full sequences of `seq_len` tokens: `[CLS]`, random ids in
/// `1000..30000`, `[SEP]`; every fourth token starts a word.
pub fn random_packed(n: usize, seq_len: usize, special: &SpecialIds, seed: u64) -> Packed {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ids = Vec::with_capacity(n * seq_len);
    let mut word_start = Vec::with_capacity(n * seq_len);
    for _ in 0..n {
        for j in 0..seq_len {
            let id = if j == 0 {
                special.cls
            } else if j == seq_len - 1 {
                special.sep
            } else {
                rng.gen_range(1000..30_000)
            };
            ids.push(id as u32);
            word_start.push(j % 4 == 1);
        }
    }
    Packed { seq_len, ids, word_start, tokens: n * seq_len }
}
