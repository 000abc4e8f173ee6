//! The loaders on well-formed data: the bundled set, IDX raw and gzipped,
//! CIFAR-10 binary, and image folders.

use ssl_vision::data;
use std::io::Write;

#[test]
fn bundled_set_has_the_documented_split() {
    let d = data::bundled_mnist5k().unwrap();
    assert_eq!((d.train.len(), d.test.len()), (4000, 1000));
    for class in 0..10 {
        assert_eq!(d.train.labels.iter().filter(|&&l| l == class).count(), 400);
        assert_eq!(d.test.labels.iter().filter(|&&l| l == class).count(), 100);
    }
    let img = &d.train.images[0];
    assert_eq!((img.c, img.h, img.w), (1, 28, 28));
    // Real digits: mostly background with some ink.
    let ink = img.data.iter().filter(|&&p| p > 128).count();
    assert!((30..400).contains(&ink), "{ink}");
    // The pixel sum recorded in datasets/README.md.
    let sum: u64 = d.train.images.iter().flat_map(|i| &i.data).map(|&p| p as u64).sum();
    assert_eq!(sum, 105_185_801);
}

#[test]
fn idx_loads_raw_and_gzipped_alike() {
    let root = env!("CARGO_MANIFEST_DIR").to_string() + "/../../datasets/mnist5k";
    let gz = data::mnist_idx(root.as_ref()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        let bytes = std::fs::read(format!("{root}/{name}.gz")).unwrap();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut raw).unwrap();
        std::fs::write(dir.path().join(name), raw).unwrap();
    }
    let raw = data::mnist_idx(dir.path()).unwrap();
    assert_eq!(raw.train.labels, gz.train.labels);
    assert_eq!(raw.test.images, gz.test.images);
}

#[test]
fn cifar10_records_are_split_into_planes() {
    let dir = tempfile::tempdir().unwrap();
    let record = |label: u8, value: u8| {
        let mut r = vec![label];
        r.extend(vec![value; 1024]); // R
        r.extend(vec![value / 2; 1024]); // G
        r.extend(vec![0u8; 1024]); // B
        r
    };
    for i in 1..=5 {
        std::fs::File::create(dir.path().join(format!("data_batch_{i}.bin")))
            .unwrap()
            .write_all(&[record(i as u8, 200), record(0, 10)].concat())
            .unwrap();
    }
    std::fs::write(dir.path().join("test_batch.bin"), record(9, 50)).unwrap();
    let d = data::cifar10(dir.path()).unwrap();
    assert_eq!((d.train.len(), d.test.len()), (10, 1));
    assert_eq!(d.train.labels[..2], [1, 0]);
    let img = &d.train.images[0];
    assert_eq!((img.c, img.h, img.w), (3, 32, 32));
    assert_eq!((img.data[0], img.data[1024], img.data[2048]), (200, 100, 0));
    assert_eq!(d.test.labels, vec![9]);
}

#[test]
fn folders_of_mixed_gray_and_colour_become_rgb() {
    let dir = tempfile::tempdir().unwrap();
    for (split, class, name) in [
        ("train", "cat", "a.png"),
        ("train", "dog", "b.jpg"),
        ("test", "cat", "c.png"),
        ("test", "dog", "d.png"),
    ] {
        let p = dir.path().join(split).join(class);
        std::fs::create_dir_all(&p).unwrap();
        if name.ends_with(".jpg") {
            image::RgbImage::from_pixel(6, 5, image::Rgb([250, 10, 10])).save(p.join(name)).unwrap();
        } else {
            image::GrayImage::from_pixel(6, 5, image::Luma([77])).save(p.join(name)).unwrap();
        }
    }
    std::fs::write(dir.path().join("train").join("cat").join("notes.txt"), "ignored").unwrap();
    let d = data::folder(dir.path()).unwrap();
    assert_eq!(d.classes, vec!["cat", "dog"]);
    assert_eq!(d.train.labels, vec![0, 1]);
    let gray = &d.train.images[0];
    assert_eq!((gray.c, gray.h, gray.w), (3, 5, 6));
    assert_eq!((gray.data[0], gray.data[30], gray.data[60]), (77, 77, 77));
    assert!(d.train.images[1].data[0] > 200); // red plane of the JPEG
}

#[test]
fn cifar100_uses_fine_labels() {
    let dir = tempfile::tempdir().unwrap();
    let record = |coarse: u8, fine: u8| [vec![coarse, fine], vec![fine; 3072]].concat();
    std::fs::write(dir.path().join("train.bin"), [record(1, 42), record(2, 7)].concat()).unwrap();
    std::fs::write(dir.path().join("test.bin"), record(3, 99)).unwrap();
    let d = data::cifar100(dir.path()).unwrap();
    assert_eq!(d.train.labels, vec![42, 7]);
    assert_eq!(d.test.labels, vec![99]);
    assert_eq!(d.train.images[1].data[0], 7);
    assert_eq!(d.classes.len(), 100);
    std::fs::write(dir.path().join("test.bin"), vec![0u8; 3073]).unwrap();
    let err = data::cifar100(dir.path()).unwrap_err().to_string();
    assert!(err.contains("test.bin") && err.contains("3074-byte record"), "{err}");
}

#[test]
fn stl10_images_are_transposed_from_column_major() {
    let dir = tempfile::tempdir().unwrap();
    // One image whose red channel holds the column index (column-major:
    // the first 96 values are column 0).
    let mut img = vec![0u8; 3 * 96 * 96];
    for col in 0..96 {
        for row in 0..96 {
            img[col * 96 + row] = col as u8;
        }
    }
    for split in ["train", "test"] {
        std::fs::write(dir.path().join(format!("{split}_X.bin")), &img).unwrap();
        std::fs::write(dir.path().join(format!("{split}_y.bin")), [3u8]).unwrap();
    }
    let d = data::stl10(dir.path()).unwrap();
    let i = &d.train.images[0];
    assert_eq!((i.c, i.h, i.w), (3, 96, 96));
    // Row-major now: pixel (row 5, col 9) of the red plane is 9.
    assert_eq!(i.data[5 * 96 + 9], 9);
    assert_eq!(d.train.labels, vec![2]);
    std::fs::write(dir.path().join("test_y.bin"), [11u8]).unwrap();
    let err = data::stl10(dir.path()).unwrap_err().to_string();
    assert!(err.contains("test_y.bin") && err.contains("label 11"), "{err}");

    // The unlabelled split: the same layout, no labels.
    let spec = data::DataSpec::Stl10(dir.path().to_path_buf());
    let err = data::unlabeled(&spec).unwrap_err().to_string();
    assert!(err.contains("unlabeled_X.bin"), "a missing file is named: {err}");
    std::fs::write(dir.path().join("unlabeled_X.bin"), [img.clone(), img.clone()].concat()).unwrap();
    let u = data::unlabeled(&spec).unwrap();
    assert_eq!((u.len(), u.labels.clone()), (2, vec![-1, -1]));
    assert_eq!(u.images[1].data[5 * 96 + 9], 9);
    std::fs::write(dir.path().join("unlabeled_X.bin"), &img[..100]).unwrap();
    let err = data::unlabeled(&spec).unwrap_err().to_string();
    assert!(err.contains("unlabeled_X.bin") && err.contains("not a positive multiple"), "{err}");
    let err = data::unlabeled(&data::DataSpec::Bundled).unwrap_err().to_string();
    assert!(err.contains("no unlabelled split"), "{err}");
}

#[test]
fn a_validation_split_is_carved_from_training_data_per_class() {
    let full = data::bundled_mnist5k().unwrap();
    let all: std::collections::HashSet<Vec<u8>> = full.train.images.iter().map(|i| i.data.clone()).collect();
    let test: std::collections::HashSet<Vec<u8>> = full.test.images.iter().map(|i| i.data.clone()).collect();
    let d = data::bundled_mnist5k().unwrap().validation_split(0.2, 3).unwrap();
    assert_eq!(d.name, "mnist5k-val");
    assert_eq!((d.train.len(), d.test.len()), (3200, 800));
    for class in 0..10 {
        assert_eq!(d.test.labels.iter().filter(|&&l| l == class).count(), 80, "class {class}");
    }
    // Every validation image comes from the training split, none from the
    // test split, and none is also trained on.
    let train: std::collections::HashSet<&Vec<u8>> = d.train.images.iter().map(|i| &i.data).collect();
    for img in &d.test.images {
        assert!(all.contains(&img.data) && !test.contains(&img.data) && !train.contains(&img.data));
    }
    // Seeded: the same seed draws the same split, another seed another.
    let again = data::bundled_mnist5k().unwrap().validation_split(0.2, 3).unwrap();
    assert!(again.test.images.iter().zip(&d.test.images).all(|(a, b)| a.data == b.data));
    let other = data::bundled_mnist5k().unwrap().validation_split(0.2, 4).unwrap();
    assert!(other.test.images.iter().zip(&d.test.images).any(|(a, b)| a.data != b.data));
    for bad in [0.0, 1.0, -0.5, f64::NAN] {
        let e = data::bundled_mnist5k().unwrap().validation_split(bad, 0).err().unwrap().to_string();
        assert!(e.contains("between 0 and 1"), "{e}");
    }
}
