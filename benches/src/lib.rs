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

/// What every bench does first, as the `train-*` binaries do at start:
/// [`ssl_core::device::tune_cpu_allocator`] (`$SSL_RS_CPU_ALLOCATOR`).
///
/// # Panics
/// On an unknown `$SSL_RS_CPU_ALLOCATOR`, naming it.
pub fn init() {
    if let Err(e) = ssl_core::device::tune_cpu_allocator() {
        panic!("{e}");
    }
}

/// `n` RGB images of `side × side` random bytes, labels 0.
pub fn random_images(n: usize, side: usize, seed: u64) -> ImageSet {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let images = (0..n)
        .map(|_| ImageU8 { c: 3, h: side, w: side, data: (0..3 * side * side).map(|_| rng.gen()).collect() })
        .collect();
    ImageSet { images, labels: vec![0; n] }
}

/// The JPEG folder of the folder-pipeline bench: `n` photos-like images
/// (smooth gradients, overlapping shapes and mild noise, so that they
/// compress as photographs do, about 30–60 KB each) at ImageNet's typical
/// 500×375 (every fourth one 375×500), quality 90, under
/// `ROOT/target/bench-data/jpeg-folder/{train,test}/c0..c9/`: `n` training
/// and `n / 10` test files. Written once (a `.complete` marker holding `n`
/// says it is whole); `benches/reference/augment.py` reads the same files.
pub fn jpeg_folder(n: usize) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data/jpeg-folder");
    let marker = root.join(".complete");
    if std::fs::read_to_string(&marker).is_ok_and(|s| s.trim() == n.to_string()) {
        return root;
    }
    let _ = std::fs::remove_dir_all(&root);
    let write = |split: &str, count: usize, seed: u64| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for i in 0..count {
            let dir = root.join(split).join(format!("c{}", i % 10));
            std::fs::create_dir_all(&dir).expect("creating the bench's JPEG folder");
            let (w, h) = if i % 4 == 3 { (375u32, 500u32) } else { (500, 375) };
            let img = photo_like(w, h, &mut rng);
            let file = std::fs::File::create(dir.join(format!("{i:05}.jpg"))).expect("creating a bench JPEG");
            let mut enc =
                image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::BufWriter::new(file), 90);
            enc.encode_image(&img).expect("encoding a bench JPEG");
        }
    };
    write("train", n, 1);
    write("test", (n / 10).max(10), 2);
    std::fs::write(&marker, n.to_string()).expect("writing the bench folder's marker");
    root
}

/// A smooth random image: a two-colour gradient, a dozen filled ellipses
/// and rectangles, and ±6 levels of noise.
fn photo_like(w: u32, h: u32, rng: &mut ChaCha8Rng) -> image::RgbImage {
    let mut col =
        || [rng.gen_range(0..256) as f32, rng.gen_range(0..256) as f32, rng.gen_range(0..256) as f32];
    let (a, b) = (col(), col());
    let shapes: Vec<(bool, f32, f32, f32, f32, [f32; 3])> = (0..12)
        .map(|_| {
            let c =
                [rng.gen_range(0..256) as f32, rng.gen_range(0..256) as f32, rng.gen_range(0..256) as f32];
            (
                rng.gen_bool(0.5),
                rng.gen_range(0.0..w as f32),
                rng.gen_range(0.0..h as f32),
                rng.gen_range(10.0..w as f32 / 3.0),
                rng.gen_range(10.0..h as f32 / 3.0),
                c,
            )
        })
        .collect();
    let mut img = image::RgbImage::new(w, h);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let t = (x as f32 / w as f32 + y as f32 / h as f32) / 2.0;
        let mut c = [0f32; 3];
        for k in 0..3 {
            c[k] = a[k] * (1.0 - t) + b[k] * t;
        }
        for &(ellipse, cx, cy, rx, ry, sc) in &shapes {
            let (dx, dy) = ((x as f32 - cx) / rx, (y as f32 - cy) / ry);
            let inside = if ellipse { dx * dx + dy * dy <= 1.0 } else { dx.abs() <= 1.0 && dy.abs() <= 1.0 };
            if inside {
                c = sc;
            }
        }
        let noise = rng.gen_range(-6.0..6.0);
        *px = image::Rgb([0, 1, 2].map(|k| (c[k] + noise).clamp(0.0, 255.0) as u8));
    }
    img
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
