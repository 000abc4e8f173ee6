//! Image operations against `torchvision.transforms.v2.functional` 0.26 on
//! float tensors, from fixtures written by `tools/golden/transforms.py`.

use ssl_vision::transforms::{self as t, ImageF};
use std::collections::HashMap;
use tch::Tensor;

fn fixtures() -> HashMap<String, Tensor> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/transforms.safetensors");
    Tensor::read_safetensors(path).expect("reading the transform fixtures").into_iter().collect()
}

fn image(t: &Tensor) -> ImageF {
    let s = t.size();
    let data = Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
    ImageF { c: s[0] as usize, h: s[1] as usize, w: s[2] as usize, data }
}

fn assert_close(name: &str, got: &ImageF, want: &Tensor) {
    let w = image(want);
    assert_eq!((got.c, got.h, got.w), (w.c, w.h, w.w), "{name}: shape");
    let worst = got.data.iter().zip(&w.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 1e-5, "{name}: max difference {worst:e}");
}

fn check(key: &str, input: &str, op: impl Fn(&mut ImageF)) {
    let fx = fixtures();
    let mut img = image(&fx[input]);
    op(&mut img);
    assert_close(key, &img, &fx[key]);
}

#[test]
fn colour_operations_match_torchvision() {
    check("brightness_0.7", "img", |i| t::adjust_brightness(i, 0.7));
    check("contrast_1.3", "img", |i| t::adjust_contrast(i, 1.3));
    check("contrast_0.6", "img", |i| t::adjust_contrast(i, 0.6));
    check("saturation_0.6", "img", |i| t::adjust_saturation(i, 0.6));
    check("saturation_1.5", "img", |i| t::adjust_saturation(i, 1.5));
    check("hue_0.1", "img", |i| t::adjust_hue(i, 0.1));
    check("hue_-0.3", "img", |i| t::adjust_hue(i, -0.3));
    check("grayscale", "img", t::to_grayscale);
    check("solarize_0.5", "img", |i| t::solarize(i, 0.5));
    check("contrast_gray1_1.3", "img_gray1", |i| t::adjust_contrast(i, 1.3));
    check("brightness_gray1_0.7", "img_gray1", |i| t::adjust_brightness(i, 0.7));
}

#[test]
fn geometry_matches_torchvision() {
    check("hflip", "img", t::hflip);
    check("blur_k5_s1.0", "img", |i| t::gaussian_blur(i, 5, 1.0));
    let fx = fixtures();
    let img = image(&fx["img"]);
    assert_close(
        "crop 2,1,6,5 to 12x10",
        &t::resized_crop(&img, 2, 1, 6, 5, 12, 10),
        &fx["crop_t2_l1_h6_w5_to_12x10"],
    );
    assert_close(
        "identity crop",
        &t::resized_crop(&img, 0, 0, 12, 10, 12, 10),
        &fx["crop_t0_l0_h12_w10_to_12x10"],
    );
    assert_close(
        "crop 3,2,7,7 to 9x9",
        &t::resized_crop(&img, 3, 2, 7, 7, 9, 9),
        &fx["crop_t3_l2_h7_w7_to_9x9"],
    );
}
