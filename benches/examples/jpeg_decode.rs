//! The JPEG decoder's profile for the folder-pipeline bench (issue 17,
//! point 1): one thread, the files already in memory, per-file time of
//! `ssl_vision::data::decode_image` (the `image` crate, which decodes with
//! `zune-jpeg`, then RGB to channel-first bytes), of `zune-jpeg` alone to
//! interleaved RGB, and of the channel-first conversion alone.
//! `benches/reference/jpeg_decode.py` times PIL's decoder on the same files.
//!
//! `cargo run --release -p ssl-benches --example jpeg_decode [FILES]`

use std::time::Instant;

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(500);
    let root = ssl_benches::jpeg_folder(2000);
    let index = ssl_vision::stream::index_folder(&root).expect("the bench's JPEG folder");
    let files: Vec<_> = index.train.files.iter().take(n).cloned().collect();
    let bytes: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).expect("a bench JPEG")).collect();
    let per_file = |name: &str, f: &dyn Fn(usize)| {
        for i in 0..files.len().min(20) {
            f(i); // warm-up
        }
        let t = Instant::now();
        for i in 0..files.len() {
            f(i);
        }
        println!("RESULT {name} {:.3} ms per file", 1e3 * t.elapsed().as_secs_f64() / files.len() as f64);
    };
    per_file("decode_image (image crate, file to channel-first RGB)", &|i| {
        std::hint::black_box(ssl_vision::data::decode_image(&files[i]).expect("decodes"));
    });
    per_file("zune-jpeg alone (memory to interleaved RGB)", &|i| {
        let mut d = zune_jpeg::JpegDecoder::new(zune_jpeg::zune_core::bytestream::ZCursor::new(&bytes[i]));
        std::hint::black_box(d.decode().expect("decodes"));
    });
    let decoded: Vec<(usize, usize, Vec<u8>)> = bytes
        .iter()
        .map(|b| {
            let mut d = zune_jpeg::JpegDecoder::new(zune_jpeg::zune_core::bytestream::ZCursor::new(b));
            let px = d.decode().expect("decodes");
            let (w, h) = d.dimensions().expect("dimensions");
            (h, w, px)
        })
        .collect();
    per_file("interleaved to channel-first alone", &|i| {
        let (h, w, px) = &decoded[i];
        let mut out = vec![0u8; 3 * h * w];
        for (p, rgb) in px.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * h * w + p] = rgb[c];
            }
        }
        std::hint::black_box(out);
    });
}
