//! Image operations on `f32` CHW images in `[0, 1]`, with the semantics of
//! `torchvision.transforms.v2.functional` on float tensors (checked by
//! `tests/transform_parity.rs` against `tools/golden/transforms.py`).

/// An 8-bit image, channels first (`[C, H, W]`), `C` = 1 or 3.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageU8 {
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// `c * h * w` bytes, channel-major.
    pub data: Vec<u8>,
}

/// A float image, channels first (`[C, H, W]`), values in `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageF {
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// `c * h * w` values, channel-major.
    pub data: Vec<f32>,
}

impl ImageF {
    /// Bytes to `[0, 1]` floats.
    pub fn from_u8(img: &ImageU8) -> Self {
        Self { c: img.c, h: img.h, w: img.w, data: img.data.iter().map(|&v| v as f32 / 255.0).collect() }
    }
    fn plane(&self, c: usize) -> &[f32] {
        &self.data[c * self.h * self.w..(c + 1) * self.h * self.w]
    }
    /// The grayscale value of each pixel (`[H * W]`).
    fn gray(&self) -> Vec<f32> {
        if self.c == 1 {
            return self.data.clone();
        }
        let (r, g, b) = (self.plane(0), self.plane(1), self.plane(2));
        (0..self.h * self.w).map(|i| 0.2989 * r[i] + 0.587 * g[i] + 0.114 * b[i]).collect()
    }
}

/// An image [`resized_crop`] reads: channel-major `[C, H, W]` values
/// that convert to floats in `[0, 1]`.
pub trait CropSource {
    /// The stored value type.
    type Value: Copy;
    /// `(c, h, w)`.
    fn dims(&self) -> (usize, usize, usize);
    /// The `c * h * w` values.
    fn values(&self) -> &[Self::Value];
    /// One value as a float in `[0, 1]`.
    fn to_f32(v: Self::Value) -> f32;
}

impl CropSource for ImageF {
    type Value = f32;
    fn dims(&self) -> (usize, usize, usize) {
        (self.c, self.h, self.w)
    }
    fn values(&self) -> &[f32] {
        &self.data
    }
    fn to_f32(v: f32) -> f32 {
        v
    }
}

/// Bytes are read directly, as [`ImageF::from_u8`] converts them: only the
/// crop's pixels are converted, and no float copy of the whole source
/// image is made (at 224 px from 256 px that copy and its page faults cost
/// a tenth of the view's time).
impl CropSource for ImageU8 {
    type Value = u8;
    fn dims(&self) -> (usize, usize, usize) {
        (self.c, self.h, self.w)
    }
    fn values(&self) -> &[u8] {
        &self.data
    }
    fn to_f32(v: u8) -> f32 {
        v as f32 / 255.0
    }
}

/// Crop `[top, top+height) × [left, left+width)` and resize to
/// `out_h × out_w` with bilinear interpolation, `align_corners=False`, no
/// antialiasing (as `F.resized_crop(..., antialias=False)`). Regions outside
/// the image are zero.
pub fn resized_crop<I: CropSource>(
    img: &I,
    top: i64,
    left: i64,
    height: usize,
    width: usize,
    out_h: usize,
    out_w: usize,
) -> ImageF {
    let (data, (c, h, w), value) = (img.values(), img.dims(), I::to_f32);
    let px = |ch: usize, y: i64, x: i64| -> f32 {
        let (yy, xx) = (top + y, left + x);
        if yy < 0 || xx < 0 || yy >= h as i64 || xx >= w as i64 {
            0.0
        } else {
            value(data[(ch * h + yy as usize) * w + xx as usize])
        }
    };
    // Source index and weight along one axis, as ATen's upsample_bilinear2d.
    let axis = |inp: usize, out: usize| -> Vec<(i64, i64, f32)> {
        let scale = inp as f32 / out as f32;
        (0..out)
            .map(|d| {
                let src = ((d as f32 + 0.5) * scale - 0.5).max(0.0);
                let i0 = src as i64;
                let i1 = if i0 < inp as i64 - 1 { i0 + 1 } else { i0 };
                (i0, i1, src - i0 as f32)
            })
            .collect()
    };
    let (ys, xs) = (axis(height, out_h), axis(width, out_w));
    let mut out = Vec::with_capacity(c * out_h * out_w);
    let inside = top >= 0 && left >= 0 && top as usize + height <= h && left as usize + width <= w;
    if inside {
        // The usual case (random resized crops lie inside the image), done
        // separably: each output row first blends its two source rows over
        // the crop's width (contiguous, so vectorised), then takes its two
        // horizontal taps from that blend. The same weights as ATen, summed
        // in the other order (vertical first): equal up to rounding.
        let (top, left) = (top as usize, left as usize);
        let mut blend = vec![0f32; width];
        for ch in 0..c {
            let plane = &data[ch * h * w..(ch + 1) * h * w];
            for &(y0, y1, ly) in &ys {
                let row = |y: i64| &plane[(top + y as usize) * w + left..][..width];
                let (r0, r1) = (row(y0), row(y1));
                for ((b, &a0), &a1) in blend.iter_mut().zip(r0).zip(r1) {
                    *b = (1.0 - ly) * value(a0) + ly * value(a1);
                }
                out.extend(
                    xs.iter().map(|&(x0, x1, lx)| (1.0 - lx) * blend[x0 as usize] + lx * blend[x1 as usize]),
                );
            }
        }
        return ImageF { c, h: out_h, w: out_w, data: out };
    }
    for ch in 0..c {
        for &(y0, y1, ly) in &ys {
            for &(x0, x1, lx) in &xs {
                let top_row = (1.0 - lx) * px(ch, y0, x0) + lx * px(ch, y0, x1);
                let bottom_row = (1.0 - lx) * px(ch, y1, x0) + lx * px(ch, y1, x1);
                out.push((1.0 - ly) * top_row + ly * bottom_row);
            }
        }
    }
    ImageF { c, h: out_h, w: out_w, data: out }
}

/// Mirror left-right.
pub fn hflip(img: &mut ImageF) {
    for row in img.data.chunks_mut(img.w) {
        row.reverse();
    }
}

/// `clamp(img * f)`.
pub fn adjust_brightness(img: &mut ImageF, f: f32) {
    img.data.iter_mut().for_each(|v| *v = (*v * f).clamp(0.0, 1.0));
}

/// Blend with the mean of the grayscale image: `clamp(f*img + (1-f)*mean)`.
pub fn adjust_contrast(img: &mut ImageF, f: f32) {
    let gray = img.gray();
    let mean = gray.iter().sum::<f32>() / gray.len().max(1) as f32;
    img.data.iter_mut().for_each(|v| *v = (f * *v + (1.0 - f) * mean).clamp(0.0, 1.0));
}

/// Blend with the per-pixel grayscale value (no-op on one channel).
pub fn adjust_saturation(img: &mut ImageF, f: f32) {
    if img.c == 1 {
        return;
    }
    let gray = img.gray();
    let n = img.h * img.w;
    for plane in img.data.chunks_mut(n.max(1)) {
        for (v, &g) in plane.iter_mut().zip(&gray) {
            *v = (f * *v + (1.0 - f) * g).clamp(0.0, 1.0);
        }
    }
}

/// `x.floor()` for `|x| < 2^31` without a libm call (the baseline x86-64
/// target has no rounding instruction, and `floorf` was a tenth of the
/// 224 px SimCLR pipeline's time).
#[inline]
fn floor(x: f32) -> f32 {
    let t = x as i32 as f32;
    if t > x {
        t - 1.0
    } else {
        t
    }
}

/// Shift the hue by `f` turns, `f` in `[-0.5, 0.5]` (no-op on one channel).
///
/// RGB → HSV as torchvision's `adjust_hue` on tensors, then HSV → RGB in
/// the branch-free form `v - v·s·clamp(min(k, 4 - k), 0, 1)` with
/// `k = (n + 6h) mod 6` (n = 5, 3, 1 for r, g, b), which picks the same of
/// torchvision's `v, p, q, t` as its sector switch, equal up to rounding
/// (a test checks 2e-6 against the switch). Without branches the loop
/// vectorises: the switch made hue a quarter of the 224 px view time.
pub fn adjust_hue(img: &mut ImageF, f: f32) {
    if img.c == 1 {
        return;
    }
    let n = img.h * img.w;
    let (red, rest) = img.data.split_at_mut(n);
    let (green, blue) = rest.split_at_mut(n);
    for ((r, g), b) in red.iter_mut().zip(green.iter_mut()).zip(blue.iter_mut()) {
        let (r2, g2, b2) = hue_pixel(*r, *g, *b, f);
        *r = r2;
        *g = g2;
        *b = b2;
    }
}

/// One pixel of [`adjust_hue`].
#[inline(always)]
fn hue_pixel(r: f32, g: f32, b: f32, f: f32) -> (f32, f32, f32) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let v = maxc;
    let cr = maxc - minc;
    let eqc = cr == 0.0;
    let s = if eqc { 0.0 } else { cr / maxc };
    let crd = if eqc { 1.0 } else { cr };
    let (rc, gc, bc) = ((maxc - r) / crd, (maxc - g) / crd, (maxc - b) / crd);
    // torchvision sums three masked terms; exactly one is selected.
    let hr = if maxc == r { bc - gc } else { 0.0 };
    let hg = if maxc == g && maxc != r { 2.0 + rc - bc } else { 0.0 };
    let hb = if maxc != g && maxc != r { 4.0 + gc - rc } else { 0.0 };
    // `x - floor(x)` equals `x % 1` and `rem_euclid(1)` exactly on these
    // ranges (Sterbenz), without libm's fmodf.
    let h = (hr + hg + hb) / 6.0 + 1.0;
    let h = h - floor(h);
    let h = h + f;
    let h = h - floor(h);
    let h6 = h * 6.0;
    let vs = v * s;
    let channel = |n: f32| {
        let k = n + h6;
        let k = if k >= 6.0 { k - 6.0 } else { k };
        (v - vs * k.min(4.0 - k).clamp(0.0, 1.0)).clamp(0.0, 1.0)
    };
    (channel(5.0), channel(3.0), channel(1.0))
}

/// Grayscale, keeping the number of channels (no-op on one channel).
pub fn to_grayscale(img: &mut ImageF) {
    if img.c == 1 {
        return;
    }
    let gray = img.gray();
    for plane in img.data.chunks_mut(img.h * img.w) {
        plane.copy_from_slice(&gray);
    }
}

/// `1 - x` where `x >= threshold`.
pub fn solarize(img: &mut ImageF, threshold: f32) {
    img.data.iter_mut().for_each(|v| {
        if *v >= threshold {
            *v = 1.0 - *v
        }
    });
}

/// Separable Gaussian blur with reflect padding (as `F.gaussian_blur`).
/// `kernel` is odd.
pub fn gaussian_blur(img: &mut ImageF, kernel: usize, sigma: f32) {
    let r = (kernel / 2) as i64;
    let mut k: Vec<f32> = (-r..=r).map(|i| (-((i * i) as f32) / (2.0 * sigma * sigma)).exp()).collect();
    let sum: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= sum);
    let reflect = |i: i64, n: i64| -> usize {
        let mut i = i;
        if n == 1 {
            return 0;
        }
        while i < 0 || i >= n {
            i = if i < 0 { -i } else { 2 * (n - 1) - i };
        }
        i as usize
    };
    let (h, w) = (img.h, img.w);
    // Separable, each pass as whole-row multiply-adds (which the compiler
    // vectorises): rows are reflect-padded once, then every tap adds a
    // shifted row; columns add whole reflected rows.
    let mut padded = vec![0f32; w + 2 * r as usize];
    let mut tmp = vec![0f32; h * w];
    for plane in img.data.chunks_mut(h * w) {
        for y in 0..h {
            let row = &plane[y * w..(y + 1) * w];
            for (i, p) in padded.iter_mut().enumerate() {
                *p = row[reflect(i as i64 - r, w as i64)];
            }
            let out = &mut tmp[y * w..(y + 1) * w];
            out.fill(0.0);
            for (j, &kj) in k.iter().enumerate() {
                for (o, &p) in out.iter_mut().zip(&padded[j..j + w]) {
                    *o += kj * p;
                }
            }
        }
        for y in 0..h {
            let out = &mut plane[y * w..(y + 1) * w];
            out.fill(0.0);
            for (j, &kj) in k.iter().enumerate() {
                let src = reflect(y as i64 + j as i64 - r, h as i64);
                for (o, &t) in out.iter_mut().zip(&tmp[src * w..(src + 1) * w]) {
                    *o += kj * t;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> ImageF {
        ImageF { c: 1, h: 2, w: 3, data: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0] }
    }

    #[test]
    fn flip_mirrors_rows() {
        let mut img = ramp();
        hflip(&mut img);
        assert_eq!(img.data, vec![0.4, 0.2, 0.0, 1.0, 0.8, 0.6]);
    }

    #[test]
    fn identity_crop_is_identity_and_upscale_interpolates() {
        let img = ramp();
        assert_eq!(resized_crop(&img, 0, 0, 2, 3, 2, 3), img);
        let up = resized_crop(&img, 0, 0, 1, 2, 1, 4);
        // src x = (d + 0.5) / 2 - 0.5 clamped: 0, 0.25, 0.75, 1.
        let want = [0.0, 0.05, 0.15, 0.2];
        for (a, b) in up.data.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{:?}", up.data);
        }
    }

    #[test]
    fn crop_from_bytes_equals_crop_of_the_float_image() {
        let img = ImageU8 { c: 3, h: 9, w: 11, data: (0..297).map(|i| (i * 37 % 256) as u8).collect() };
        let f = ImageF::from_u8(&img);
        // Inside the image (the slice path) and overlapping its border.
        for (top, left, ch, cw) in [(1, 2, 6, 7), (0, 0, 9, 11), (-2, 3, 8, 10), (4, 5, 9, 9)] {
            for (oh, ow) in [(5, 5), (12, 14)] {
                let a = resized_crop(&img, top, left, ch, cw, oh, ow);
                let b = resized_crop(&f, top, left, ch, cw, oh, ow);
                assert_eq!(a, b, "crop {top},{left} {ch}x{cw} -> {oh}x{ow}");
            }
        }
    }

    /// The previous per-pixel sector switch (torchvision's `_hsv2rgb`), as
    /// the reference for the branch-free [`adjust_hue`].
    fn hue_reference(img: &mut ImageF, f: f32) {
        if img.c == 1 {
            return;
        }
        let n = img.h * img.w;
        for i in 0..n {
            let (r, g, b) = (img.data[i], img.data[n + i], img.data[2 * n + i]);
            let maxc = r.max(g).max(b);
            let minc = r.min(g).min(b);
            let v = maxc;
            let cr = maxc - minc;
            let eqc = cr == 0.0;
            let s = if eqc { 0.0 } else { cr / maxc };
            let crd = if eqc { 1.0 } else { cr };
            let (rc, gc, bc) = ((maxc - r) / crd, (maxc - g) / crd, (maxc - b) / crd);
            let h = if maxc == r {
                bc - gc
            } else if maxc == g {
                2.0 + rc - bc
            } else {
                4.0 + gc - rc
            };
            // `x - floor(x)` equals `x % 1` and `rem_euclid(1)` exactly on these
            // ranges (Sterbenz), without libm's fmodf.
            let h = h / 6.0 + 1.0;
            let h = h - floor(h);
            let h = h + f;
            let h = h - floor(h);
            let i6 = floor(h * 6.0);
            let fr = h * 6.0 - i6;
            let p = (v * (1.0 - s)).clamp(0.0, 1.0);
            let q = (v * (1.0 - s * fr)).clamp(0.0, 1.0);
            let t = (v * (1.0 - s * (1.0 - fr))).clamp(0.0, 1.0);
            let (r2, g2, b2) = match (i6 as i64).rem_euclid(6) {
                0 => (v, t, p),
                1 => (q, v, p),
                2 => (p, v, t),
                3 => (p, q, v),
                4 => (t, p, v),
                _ => (v, p, q),
            };
            img.data[i] = r2;
            img.data[n + i] = g2;
            img.data[2 * n + i] = b2;
        }
    }

    #[test]
    fn branch_free_hue_equals_the_sector_switch() {
        // Every sector, grays, saturated and dark colours, both signs of f.
        let mut state = 12345u32;
        let mut next = || {
            state = state.wrapping_mul(1664525).wrapping_add(1013904223);
            (state >> 8) as f32 / (1u32 << 24) as f32
        };
        let n = 4096;
        let mut data: Vec<f32> = (0..3 * n).map(|_| next()).collect();
        for i in 0..64 {
            // Exact grays and channel ties.
            data[i] = data[n + i];
            data[2 * n + i] = if i % 2 == 0 { data[i] } else { 0.0 };
        }
        let img = ImageF { c: 3, h: 64, w: 64, data };
        for f in [-0.5f32, -0.37, -0.1, 0.0, 0.05, 0.25, 0.499] {
            let (mut a, mut b) = (img.clone(), img.clone());
            adjust_hue(&mut a, f);
            hue_reference(&mut b, f);
            let worst = a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(worst <= 2e-6, "f = {f}: differs by {worst:e}");
        }
    }

    #[test]
    fn fast_floor_is_floor() {
        for i in -4000..4000 {
            let x = i as f32 * 0.00137 - 0.5;
            assert_eq!(floor(x), x.floor(), "{x}");
        }
        for x in [-1.0f32, -0.0, 0.0, 1.0, 2.999_999_8, -2.000_000_2] {
            assert_eq!(floor(x), x.floor(), "{x}");
        }
    }

    #[test]
    fn blur_keeps_constant_images() {
        let mut img = ImageF { c: 1, h: 5, w: 6, data: vec![0.5; 30] };
        gaussian_blur(&mut img, 5, 1.0);
        assert!(img.data.iter().all(|v| (v - 0.5).abs() < 1e-6));
    }
}
