//! `decode_image` on JPEGs against PIL's decoder (what torchvision's
//! `ImageFolder` loader uses), from fixtures written by
//! `tools/golden/jpeg_decode.py`: a colour JPEG with 4:2:0 chroma
//! subsampling and a gray one, both at quality 90. The decoders differ in
//! their inverse DCT and chroma upsampling, so pixels agree within a stated
//! tolerance, not exactly: gray (no chroma) within 1 level everywhere;
//! colour within `MAX_DIFF` levels, `MEAN_DIFF` on average (measured
//! 2026-12-04 with zune-jpeg 0.5.15 against PIL 13.0.0: 9 and 0.24; gray 1
//! and 0.01).

use ssl_vision::data::decode_image;
use std::collections::HashMap;
use std::path::Path;
use tch::{Kind, Tensor};

const MAX_DIFF: f64 = 12.0;
const MEAN_DIFF: f64 = 0.5;

fn fixtures() -> HashMap<String, Tensor> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jpeg_pil.safetensors");
    Tensor::read_safetensors(path).expect("reading the JPEG fixtures").into_iter().collect()
}

/// (max, mean) absolute difference between our decode of `name.jpg` and PIL's.
fn difference(name: &str) -> (f64, f64) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/jpeg/{name}.jpg"));
    let ours = decode_image(&file).expect("decodes");
    let pil = &fixtures()[name];
    let size: Vec<i64> = pil.size();
    assert_eq!([ours.c as i64, ours.h as i64, ours.w as i64], size[..], "{name}: shape");
    let ours = Tensor::from_slice(&ours.data).view(size.as_slice()).to_kind(Kind::Float);
    let d = (ours - pil.to_kind(Kind::Float)).abs();
    (d.max().double_value(&[]), d.mean(Kind::Float).double_value(&[]))
}

#[test]
fn gray_jpegs_decode_as_pil_does_within_one_level() {
    let (max, mean) = difference("gray");
    eprintln!("gray: max |diff| {max}, mean {mean:.3}");
    assert!(max <= 1.0, "gray: max |diff| {max}");
}

#[test]
fn colour_jpegs_decode_as_pil_does_within_the_stated_tolerance() {
    let (max, mean) = difference("photo");
    eprintln!("photo: max |diff| {max}, mean {mean:.3}");
    assert!(max <= MAX_DIFF && mean <= MEAN_DIFF, "photo: max |diff| {max}, mean {mean}");
}
