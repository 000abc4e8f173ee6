//! `train-vision` refuses bad flags and data with a message that says what
//! was expected, before any training starts.

use std::process::Command;

fn fails_with(args: &[&str], expected: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_train-vision"))
        .args(args)
        .args(["--out", std::env::temp_dir().join("ssl-rs-cli-test").to_str().unwrap()])
        .output()
        .expect("running train-vision");
    assert!(!out.status.success(), "{args:?} should fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for e in expected {
        assert!(stderr.contains(e), "{args:?}: stderr lacks {e:?}:\n{stderr}");
    }
}

#[test]
fn unknown_names_are_refused_with_the_choices() {
    fails_with(&["--method", "dino"], &["unknown method `dino`", "simclr, moco-v2"]);
    fails_with(
        &["--backbone", "vgg16", "--device", "cpu"],
        &["unknown backbone `vgg16`", "resnet50", "vit-small"],
    );
    fails_with(&["--optimizer", "lamb", "--device", "cpu"], &["unknown optimizer `lamb`"]);
    fails_with(&["--device", "tpu"], &["unknown device `tpu`"]);
    fails_with(&["--method", "mae", "--backbone", "small", "--device", "cpu"], &["mae needs a ViT"]);
}

#[test]
fn bad_data_is_refused_naming_it() {
    fails_with(&["--data", "mnist-idx:/no/such/dir", "--device", "cpu"], &["/no/such/dir", "does not exist"]);
    fails_with(&["--batch-size", "5000", "--device", "cpu"], &["larger than the 4000 training images"]);
    fails_with(&["--stream", "--device", "cpu"], &["--stream reads image folders", "bundled"]);
    fails_with(
        &["--backbone", "vit-mini", "--patch-size", "5", "--device", "cpu"],
        &["not a multiple of --patch-size 5"],
    );
}

#[test]
fn images_smaller_than_the_views_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for (split, class, side) in [("train", "a", 20), ("train", "b", 12), ("test", "a", 20), ("test", "b", 20)]
    {
        let p = dir.path().join(split).join(class);
        std::fs::create_dir_all(&p).unwrap();
        for i in 0..4 {
            let s = if i == 2 { side } else { 20 };
            image::GrayImage::from_pixel(s, s, image::Luma([i as u8 * 40]))
                .save(p.join(format!("{i}.png")))
                .unwrap();
        }
    }
    let data = format!("folder:{}", dir.path().display());
    let expected = ["2.png", "12x12, smaller than the 20x20 views", "--allow-upscale"];
    fails_with(&["--data", &data, "--device", "cpu", "--batch-size", "4"], &expected);
    fails_with(
        &[
            "--data",
            &data,
            "--device",
            "cpu",
            "--batch-size",
            "4",
            "--stream",
            "--image-size",
            "20",
            "--epochs",
            "1",
        ],
        &["2.png", "smaller than the 20 px views"],
    );
}
