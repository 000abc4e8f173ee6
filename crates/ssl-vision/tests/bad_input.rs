//! Bad input gets an error that names the file and says what is wrong.

use ssl_vision::data::{self, DataSpec};
use std::io::Write;
use std::path::Path;

fn load_err(spec: &str) -> String {
    let spec: DataSpec = spec.parse().unwrap();
    data::load(&spec).expect_err("loading must fail").to_string()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::File::create(path).unwrap().write_all(bytes).unwrap();
}

fn idx_images(magic: u32, n: u32, body: usize) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [magic, n, 28, 28] {
        b.extend(v.to_be_bytes());
    }
    b.extend(vec![0u8; body]);
    b
}

fn idx_labels(n: u32) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0x801u32, n] {
        b.extend(v.to_be_bytes());
    }
    b.extend(vec![1u8; n as usize]);
    b
}

fn png(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_fn(w, h, |x, y| image::Luma([(x * 7 + y * 3) as u8])).save(path).unwrap();
}

#[test]
fn missing_dataset_path() {
    let err = load_err("mnist-idx:/no/such/folder");
    assert!(err.contains("/no/such/folder") && err.contains("does not exist"), "{err}");
    let err = load_err("folder:/no/such/images");
    assert!(err.contains("/no/such/images"), "{err}");
    let err = "imagenet:/x".parse::<DataSpec>().unwrap_err().to_string();
    assert!(err.contains("unknown kind `imagenet`"), "{err}");
}

#[test]
fn missing_idx_file() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("train-images-idx3-ubyte"), &idx_images(0x803, 2, 2 * 784));
    let err = load_err(&format!("mnist-idx:{}", dir.path().display()));
    assert!(err.contains("train-labels-idx1-ubyte") && err.contains("not found"), "{err}");
}

#[test]
fn idx_with_wrong_magic() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("train-images-idx3-ubyte"), &idx_images(0x802, 2, 2 * 784));
    write(&dir.path().join("train-labels-idx1-ubyte"), &idx_labels(2));
    let err = load_err(&format!("mnist-idx:{}", dir.path().display()));
    assert!(
        err.contains("train-images-idx3-ubyte") && err.contains("wrong magic number 0x00000802"),
        "{err}"
    );
}

#[test]
fn idx_with_truncated_body() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("train-images-idx3-ubyte"), &idx_images(0x803, 10, 3 * 784));
    write(&dir.path().join("train-labels-idx1-ubyte"), &idx_labels(10));
    let err = load_err(&format!("mnist-idx:{}", dir.path().display()));
    assert!(err.contains("train-images-idx3-ubyte") && err.contains("truncated"), "{err}");
    assert!(err.contains("10 images of 28x28"), "{err}");
}

#[test]
fn idx_with_corrupt_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    gz.extend([0xde, 0xad, 0xbe, 0xef]);
    write(&dir.path().join("train-images-idx3-ubyte.gz"), &gz);
    write(&dir.path().join("train-labels-idx1-ubyte"), &idx_labels(1));
    let err = load_err(&format!("mnist-idx:{}", dir.path().display()));
    assert!(err.contains("train-images-idx3-ubyte.gz") && err.contains("corrupt gzip"), "{err}");
}

#[test]
fn cifar_file_of_the_wrong_size() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("data_batch_1.bin"), &vec![0u8; 3073 * 2 + 5]);
    let err = load_err(&format!("cifar10:{}", dir.path().display()));
    assert!(
        err.contains("data_batch_1.bin") && err.contains("not a positive multiple of the 3073-byte record"),
        "{err}"
    );
}

#[test]
fn corrupt_png() {
    let dir = tempfile::tempdir().unwrap();
    for split in ["train", "test"] {
        png(&dir.path().join(split).join("a").join("ok.png"), 8, 8);
    }
    write(&dir.path().join("train").join("a").join("broken.png"), b"\x89PNG\r\n\x1a\nnot really a png");
    let err = load_err(&format!("folder:{}", dir.path().display()));
    assert!(err.contains("broken.png") && err.contains("cannot decode"), "{err}");
}

#[test]
fn png_declaring_enormous_dimensions_is_an_error_not_an_allocation() {
    let dir = tempfile::tempdir().unwrap();
    for split in ["train", "test"] {
        png(&dir.path().join(split).join("a").join("ok.png"), 8, 8);
    }
    // A valid 8x8 PNG whose header then claims 100000 x 100000 pixels (10 GB
    // decoded), with the header's checksum fixed so only the size is wrong.
    let huge = dir.path().join("train").join("a").join("huge.png");
    png(&huge, 8, 8);
    let mut b = std::fs::read(&huge).unwrap();
    assert_eq!(&b[12..16], b"IHDR");
    b[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    b[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&b[12..29]);
    b[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    std::fs::write(&huge, b).unwrap();
    let err = load_err(&format!("folder:{}", dir.path().display()));
    assert!(err.contains("huge.png") && err.contains("cannot decode") && err.contains("limit"), "{err}");
}

#[test]
fn empty_class_folder() {
    let dir = tempfile::tempdir().unwrap();
    png(&dir.path().join("train").join("a").join("x.png"), 8, 8);
    std::fs::create_dir_all(dir.path().join("train").join("b")).unwrap();
    let err = load_err(&format!("folder:{}", dir.path().display()));
    assert!(err.contains("train/b") && err.contains("no .png"), "{err}");
}

#[test]
fn test_split_missing_a_class() {
    let dir = tempfile::tempdir().unwrap();
    png(&dir.path().join("train").join("a").join("x.png"), 8, 8);
    png(&dir.path().join("train").join("b").join("x.png"), 8, 8);
    png(&dir.path().join("test").join("a").join("x.png"), 8, 8);
    let err = load_err(&format!("folder:{}", dir.path().display()));
    assert!(err.contains("test/b") && err.contains("does not exist"), "{err}");
}

#[test]
fn idx_with_zero_sized_images_or_empty_splits() {
    let dir = tempfile::tempdir().unwrap();
    let mut header = Vec::new();
    for v in [0x803u32, 5, 0, 28] {
        header.extend(v.to_be_bytes());
    }
    write(&dir.path().join("train-images-idx3-ubyte"), &header);
    write(&dir.path().join("train-labels-idx1-ubyte"), &idx_labels(5));
    let err = load_err(&format!("mnist-idx:{}", dir.path().display()));
    assert!(err.contains("train-images-idx3-ubyte") && err.contains("0x28 pixels"), "{err}");
    // Well-formed but empty test split.
    write(&dir.path().join("train-images-idx3-ubyte"), &idx_images(0x803, 2, 2 * 784));
    write(&dir.path().join("train-labels-idx1-ubyte"), &idx_labels(2));
    write(&dir.path().join("t10k-images-idx3-ubyte"), &idx_images(0x803, 0, 0));
    write(&dir.path().join("t10k-labels-idx1-ubyte"), &idx_labels(0));
    let err = load_err(&format!("mnist-idx:{}", dir.path().display()));
    assert!(err.contains("the test split has no image"), "{err}");
}

#[test]
fn labels_without_class_names() {
    let dir = tempfile::tempdir().unwrap();
    let record = |label: u8| [vec![label], vec![0u8; 3072]].concat();
    for i in 1..=5 {
        write(&dir.path().join(format!("data_batch_{i}.bin")), &record(7));
    }
    write(&dir.path().join("test_batch.bin"), &record(1));
    write(&dir.path().join("batches.meta.txt"), b"airplane\nautomobile\n");
    let err = load_err(&format!("cifar10:{}", dir.path().display()));
    assert!(err.contains("label 7 but only 2 class names"), "{err}");
}
