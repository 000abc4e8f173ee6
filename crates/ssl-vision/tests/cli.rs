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
    fails_with(&["--method", "swav"], &["unknown method `swav`", "simclr, moco-v2", "dino"]);
    fails_with(
        &["--backbone", "vgg16", "--device", "cpu"],
        &["unknown backbone `vgg16`", "resnet50", "vit-small"],
    );
    fails_with(&["--optimizer", "lamb", "--device", "cpu"], &["unknown optimizer `lamb`"]);
    fails_with(&["--device", "tpu"], &["unknown device `tpu`"]);
    fails_with(&["--method", "mae", "--backbone", "small", "--device", "cpu"], &["mae needs a ViT"]);
    fails_with(
        &["--local-crops", "2", "--device", "cpu"],
        &["simclr trains on two views", "multi-crop is for dino"],
    );
    fails_with(&["--val-fraction", "1.5", "--device", "cpu"], &["between 0 and 1, not 1.5"]);
    fails_with(
        &["--method", "dino", "--augment-on", "device", "--device", "cpu"],
        &["multi-crop (--local-crops) runs on the CPU"],
    );
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

/// A small labelled folder: 2 classes of 12 px grey squares.
fn tiny_folder(dir: &std::path::Path) {
    for (split, n) in [("train", 8), ("test", 4)] {
        for (c, level) in [("dark", 40u8), ("light", 200u8)] {
            let p = dir.join(split).join(c);
            std::fs::create_dir_all(&p).unwrap();
            for i in 0..n {
                let img = image::GrayImage::from_fn(12, 12, |x, y| {
                    image::Luma([level.wrapping_add((x * 7 + y * 3 + i) as u8)])
                });
                img.save(p.join(format!("{i}.png"))).unwrap();
            }
        }
    }
}

#[test]
fn two_ranks_train_and_rank_zero_alone_reports() {
    let data = tempfile::tempdir().unwrap();
    tiny_folder(data.path());
    let out = data.path().join("run");
    let spec = format!("folder:{}", data.path().display());
    let run = ssl_dist::testing::launch(2, std::time::Duration::from_secs(300), None, |_, _| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_train-vision"));
        cmd.args([
            "--data",
            &spec,
            "--device",
            "cpu",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--knn-every",
            "1",
        ])
        .args(["--sync-bn", "--accumulate", "2", "--dist-timeout", "60", "--out"])
        .arg(&out);
        cmd
    });
    run.assert_success();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["train"]["steps"], 4, "{report}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["world_size"], 2);
    assert_eq!(config["train"]["accumulate"], 2);
    // Rank 0 prints the table; rank 1 prints nothing of the run.
    assert!(run.logs[0].contains("random init"), "{}", run.logs[0]);
    assert!(!run.logs[1].contains("random init") && !run.logs[1].contains("epoch 1/2"), "{}", run.logs[1]);
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains("\"epoch_loss\":")).count(), 2, "{log}");
}

#[test]
fn inconsistent_launch_variables_are_refused_naming_them() {
    let out = Command::new(env!("CARGO_BIN_EXE_train-vision"))
        .args(["--device", "cpu"])
        .env("WORLD_SIZE", "2")
        .env("RANK", "5")
        .env_remove("MASTER_ADDR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("RANK=5 is not below WORLD_SIZE=2"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_train-vision"))
        .args(["--device", "cpu"])
        .env("WORLD_SIZE", "2")
        .env("RANK", "1")
        .env_remove("MASTER_ADDR")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MASTER_ADDR is not set"), "{err}");
}
