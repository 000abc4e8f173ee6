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
        &["--method", "dino", "--local-crops", "2", "--augment-on", "device", "--device", "cpu"],
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
    // A validation split re-orders the images: the file is still the one named.
    fails_with(
        &["--data", &data, "--device", "cpu", "--batch-size", "2", "--val-fraction", "0.5"],
        &["train/b/2.png"],
    );
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

/// `train-vision` for one epoch on the CPU, without the kNN monitor.
fn one_epoch(spec: &str, batch_size: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_train-vision"));
    cmd.args([
        "--data",
        spec,
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--batch-size",
        batch_size,
        "--knn-every",
        "0",
    ]);
    cmd
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

#[test]
fn seeds_overrides_and_label_fractions_reach_the_reports() {
    let data = tempfile::tempdir().unwrap();
    tiny_folder(data.path());
    let out = data.path().join("run");
    let spec = format!("folder:{}", data.path().display());
    let o = Command::new(env!("CARGO_BIN_EXE_train-vision"))
        .args(["--data", &spec, "--device", "cpu", "--epochs", "1", "--batch-size", "8", "--knn-every", "0"])
        .args(["--seeds", "2", "--seed", "5", "--set", "head_out=16", "--set", "temperature=0.3"])
        .args(["--finetune-epochs", "1", "--finetune-fractions", "0.5,1", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read = |p: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    for seed in [5, 6] {
        let dir = out.join(format!("seed-{seed}"));
        let config = read(&dir.join("config.json"));
        assert_eq!(config["seed"], seed);
        assert_eq!(config["model"]["head_out"], 16, "--set reaches the method's config");
        assert_eq!(config["model"]["temperature"], 0.3);
        let r = read(&dir.join("report.json"));
        // 1% and 10% of 8 images per class: one image per class each.
        assert_eq!(r["label_efficiency"]["ssl"][0]["labels"], 2, "{r}");
        for side in ["ssl", "random_init"] {
            for key in ["linear_top1_1pct", "linear_top1_10pct", "finetune_top1_50pct", "finetune_top1"] {
                assert!(r[side][key].as_f64().is_some(), "{side}.{key} in {r}");
            }
        }
        assert_eq!(r["finetune"]["fractions"][0]["plan"]["labels"], 8);
        let c = &r["train"]["collapse"];
        assert!(c["rankme"].as_f64().is_some() && c["normalized_std"].as_f64().is_some(), "{r}");
    }
    let summary = read(&out.join("report.json"));
    assert_eq!(summary["seeds"], serde_json::json!([5, 6]));
    let f = &summary["figures"];
    for key in ["ssl.knn_top1", "random_init.linear_top1_1pct", "difference.finetune_top1_50pct", "wall_s"] {
        assert_eq!(f[key]["values"].as_array().map(Vec::len), Some(2), "{key} in {summary}");
    }
    assert!(stdout.contains("over 2 seeds") && stdout.contains("difference.knn_top1"), "{stdout}");
    assert!(stdout.contains("linear 1%") && stdout.contains("fine-tuned, 50% of the labels"), "{stdout}");
}

#[test]
fn resume_keeps_the_seeds_that_finished_and_trains_the_rest() {
    let data = tempfile::tempdir().unwrap();
    tiny_folder(data.path());
    let out = data.path().join("run");
    let spec = format!("folder:{}", data.path().display());
    let sweep = |extra: &[&str]| {
        one_epoch(&spec, "8")
            .args(["--finetune-epochs", "0", "--seeds", "2", "--out"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = sweep(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Seed 0 finished; seed 1 was stopped after its checkpoint, before its
    // report. Mark seed 0's report to see whether it is kept.
    let report = out.join("seed-0/report.json");
    let mut r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    r["wall_s"] = 12345.0.into();
    std::fs::write(&report, r.to_string()).unwrap();
    std::fs::remove_file(out.join("seed-1/report.json")).unwrap();
    let o = sweep(&["--resume"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("seed 0: ") && err.contains("kept, not run again"), "{err}");
    assert!(!err.contains("seed 1: "), "seed 1 had no report: {err}");
    assert!(err.contains("resuming from"), "seed 1 resumes from its checkpoint: {err}");
    assert!(out.join("seed-1/report.json").is_file(), "seed 1 is run again");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let walls = &summary["figures"]["wall_s"]["values"];
    assert_eq!(walls[0], 12345.0, "seed 0's report is the one kept: {summary}");
    assert!(walls[1].as_f64().is_some_and(|w| w < 12345.0), "{summary}");
    // A report that does not parse is named, not skipped or overwritten.
    std::fs::write(&report, "{\"wall_s\": 1").unwrap();
    let o = sweep(&["--resume"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains(&report.display().to_string()) && err.contains("delete the seed's folder"), "{err}");
}

#[test]
fn vit_fine_tuning_regularisers_are_off_unless_asked_for() {
    let data = tempfile::tempdir().unwrap();
    tiny_folder(data.path());
    let out = data.path().join("run");
    let spec = format!("folder:{}", data.path().display());
    let o = Command::new(env!("CARGO_BIN_EXE_train-vision"))
        .args(["--data", &spec, "--device", "cpu", "--method", "mae", "--epochs", "1", "--batch-size", "8"])
        .args([
            "--knn-every",
            "0",
            "--finetune-epochs",
            "1",
            "--finetune-fractions",
            "1",
            "--finetune-mixup",
            "0.8",
        ])
        .args(["--finetune-drop-path", "0.1", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let c = &r["finetune"]["config"];
    assert_eq!(c["drop_path"], 0.1, "{c}");
    assert_eq!(c["mixup"]["mixup_alpha"], 0.8, "{c}");
    assert_eq!(c["mixup"]["label_smoothing"], 0.0, "off by default: {c}");
    assert_eq!(c["mixup"]["cutmix_alpha"], 0.0, "off by default: {c}");
    assert_eq!(c["pool"], "mean", "MAE fine-tunes on the mean of its patch tokens: {c}");
    assert!(r["ssl"]["finetune_top1"].as_f64().is_some(), "{r}");
}

#[test]
fn resume_refuses_changed_settings_and_says_when_epochs_grow() {
    let data = tempfile::tempdir().unwrap();
    tiny_folder(data.path());
    let out = data.path().join("run");
    let spec = format!("folder:{}", data.path().display());
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_train-vision"))
            .args(["--data", &spec, "--device", "cpu", "--batch-size", "8", "--knn-every", "0"])
            .args(extra)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    let o = run(&["--epochs", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["--epochs", "1", "--resume", "--lr", "0.1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("train.optimizer.lr") && err.contains("→ 0.1"), "{err}");
    let o = run(&["--epochs", "1", "--resume", "--method", "byol"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("method: \"simclr\" → \"byol\""), "{err}");
    let o = run(&["--epochs", "2", "--resume"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("epochs 1 → 2"), "{err}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["epochs"], 2, "{r}");
}

#[test]
fn bad_overrides_and_fractions_are_refused_naming_them() {
    fails_with(
        &["--set", "head_outs=16", "--device", "cpu"],
        &["--set head_outs", "no field `head_outs`", "head_out"],
    );
    fails_with(&["--set", "head_out=wide", "--device", "cpu"], &["--set head_out", "does not take"]);
    fails_with(&["--set", "head_out", "--device", "cpu"], &["not key=value"]);
    fails_with(&["--set", "backbone.width=8", "--device", "cpu"], &["--set backbone.width", "--backbone"]);
    // Values the config takes but the model cannot be built with: an
    // error naming the override, not a panic.
    fails_with(
        &["--method", "mae", "--backbone", "vit-mini", "--set", "decoder_heads=5", "--device", "cpu"],
        &["--set decoder_heads=5: mae's model cannot be built with this value", "not divisible by 5 heads"],
    );
    fails_with(
        &["--set", "head_out=-4", "--device", "cpu"],
        &["--set head_out=-4: simclr's model cannot be built"],
    );
    fails_with(
        &["--method", "moco-v2", "--set", "queue_size=0", "--device", "cpu"],
        &["a queue of at least 1 key", "(with --set queue_size=0)"],
    );
    fails_with(&["--finetune-fractions", "0.1,0.1", "--device", "cpu"], &["given twice"]);
    fails_with(
        &["--finetune-fractions", "0,1", "--device", "cpu"],
        &["--finetune-fractions", "0 is not a fraction"],
    );
    fails_with(&["--seeds", "0", "--device", "cpu"], &["--seeds"]);
    fails_with(
        &["--finetune-drop-path", "0.1", "--device", "cpu"],
        &["--finetune-drop-path", "ViT backbones only"],
    );
    fails_with(
        &["--method", "mae", "--finetune-drop-path", "1.5", "--device", "cpu"],
        &["--finetune-drop-path must be in [0, 1)"],
    );
    fails_with(
        &["--finetune-label-smoothing", "1", "--device", "cpu"],
        &["label smoothing must be in [0, 1)"],
    );
    fails_with(&["--unlabeled", "--device", "cpu"], &["--unlabeled", "no unlabelled split"]);
}

#[test]
fn stl10s_unlabelled_split_joins_pretraining_only() {
    let dir = tempfile::tempdir().unwrap();
    let img: Vec<u8> = (0..3 * 96 * 96).map(|i| (i * 7 % 251) as u8).collect();
    let imgs = |n: usize| img.repeat(n);
    for (split, n) in [("train", 4), ("test", 2)] {
        std::fs::write(dir.path().join(format!("{split}_X.bin")), imgs(n)).unwrap();
        std::fs::write(
            dir.path().join(format!("{split}_y.bin")),
            (0..n).map(|i| 1 + (i % 2) as u8).collect::<Vec<_>>(),
        )
        .unwrap();
    }
    let spec = format!("stl10:{}", dir.path().display());
    let out = dir.path().join("run");
    let run = |extra: &[&str]| {
        one_epoch(&spec, "4")
            .args(["--image-size", "32", "--allow-upscale", "--out"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&["--unlabeled"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unlabeled_X.bin"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::write(dir.path().join("unlabeled_X.bin"), imgs(8)).unwrap();
    let o = run(&["--unlabeled"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!((r["pretrain_images"].as_u64(), r["train_images"].as_u64()), (Some(12), Some(4)), "{r}");
    // 12 images in batches of 4: three steps; without them, one.
    assert_eq!(r["train"]["steps"], 3, "{r}");
    let o = run(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!((r["pretrain_images"].as_u64(), r["train"]["steps"].as_u64()), (Some(4), Some(1)), "{r}");
}

#[test]
fn a_named_recipe_sets_its_flags_and_the_command_line_overrides_them() {
    let list = Command::new(env!("CARGO_BIN_EXE_train-vision")).args(["--recipe", "list"]).output().unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("solo-learn/cifar/byol") && text.contains("lightly/cifar10/dino"), "{text}");
    fails_with(
        &["--recipe", "solo-learn/cifar/swav", "--device", "cpu"],
        &["unknown recipe", "solo-learn/cifar/simclr"],
    );

    let data = tempfile::tempdir().unwrap();
    tiny_folder(data.path());
    let out = data.path().join("run");
    let spec = format!("folder:{}", data.path().display());
    // The recipe's ResNet-18 at 32 px, 1000 epochs and batch 256 are
    // overridden to fit the tiny set; its optimizer and heads stay.
    let o = Command::new(env!("CARGO_BIN_EXE_train-vision"))
        .args([
            "--recipe",
            "solo-learn/cifar/simclr",
            "--data",
            &spec,
            "--device",
            "cpu",
            "--backbone",
            "small",
        ])
        .args([
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--image-size",
            "12",
            "--knn-every",
            "0",
            "--set",
            "head_out=64",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["recipe"], "solo-learn/cifar/simclr");
    assert_eq!(config["batch_size"], 8, "the command line wins");
    assert_eq!(config["model"]["head_hidden"], 2048, "the recipe's head");
    assert_eq!(config["model"]["head_out"], 64, "a later --set wins");
    assert_eq!(config["model"]["temperature"], 0.2);
    let opt = &config["train"]["optimizer"];
    assert!(opt.to_string().contains("\"clip_lr\":true") && opt.to_string().contains("0.02"), "{opt}");
    // 0.4 per 256, scaled to the command line's batch of 8.
    assert!((opt["lr"].as_f64().unwrap() - 0.4 * 8.0 / 256.0).abs() < 1e-12, "{opt}");
    assert_eq!(config["train"]["warmup_epochs"], 0, "the recipe's 10, capped at epochs - 1");
    assert_eq!(config["augment"]["preset"], "simclr");
}

/// A tiny SimCLR or MAE run: 5 epochs of 2 steps, evaluations on.
fn resumable_args<'a>(spec: &'a str, method: &'a str) -> Vec<&'a str> {
    vec![
        "--data",
        spec,
        "--device",
        "cpu",
        "--method",
        method,
        "--epochs",
        "5",
        "--batch-size",
        "8",
        "--knn-every",
        "2",
        "--checkpoint-every",
        "1",
    ]
}

#[test]
fn a_run_killed_or_stopped_by_sigterm_resumes_to_identical_files() {
    use ssl_cli::testing::{kill_and_resume, sigterm_and_resume, uninterrupted};
    let data = tempfile::tempdir().unwrap();
    tiny_folder(data.path());
    let spec = format!("folder:{}", data.path().display());
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_train-vision"));
    // MAE draws its masks from libtorch's generator every step.
    for method in ["simclr", "mae"] {
        let args = resumable_args(&spec, method);
        let dir = data.path().join(method);
        let full = uninterrupted(binary, &args, &dir);
        let at = kill_and_resume(binary, &args, &dir, &full);
        eprintln!("{method}: killed after step {at}, resumed to identical files");
        if method == "simclr" {
            let at = sigterm_and_resume(binary, &args, &dir, &full);
            eprintln!("{method}: stopped by SIGTERM after step {at} (exit 75), resumed to identical files");
        }
    }
}

#[test]
fn a_run_exports_its_backbone_and_another_starts_from_it() {
    let data = tempfile::tempdir().unwrap();
    tiny_folder(data.path());
    let spec = format!("folder:{}", data.path().display());
    let train = |out: &std::path::Path, extra: &[&str]| {
        one_epoch(&spec, "8").args(extra).arg("--out").arg(out).output().unwrap()
    };
    let first = data.path().join("first");
    let o = train(&first, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("backbone.json")).unwrap()).unwrap();
    assert_eq!(meta["library"], "torchvision", "{meta}");
    for f in ["backbone.safetensors", "backbone.pt", "check_features.safetensors"] {
        assert!(first.join(f).is_file(), "{f}");
    }
    let exported = first.join("backbone.safetensors");
    let names: Vec<String> =
        tch::Tensor::read_safetensors(&exported).unwrap().into_iter().map(|(n, _)| n).collect();
    assert!(
        names.contains(&"layer4.1.bn2.num_batches_tracked".to_string())
            && !names.iter().any(|n| n.contains("online"))
    );

    // Embeddings of both splits (train first); the test split's first four
    // are the export's check features.
    let emb = data.path().join("emb");
    let embed = || {
        Command::new(env!("CARGO_BIN_EXE_embed-vision"))
            .args([
                "--model",
                first.to_str().unwrap(),
                "--data",
                &spec,
                "--device",
                "cpu",
                "--neighbors",
                "3",
            ])
            .arg("--out")
            .arg(&emb)
            .output()
            .unwrap()
    };
    // A backbone.json edited into a backbone that cannot be built is
    // named, not a panic.
    let json = first.join("backbone.json");
    let good = std::fs::read_to_string(&json).unwrap();
    let mut meta: serde_json::Value = serde_json::from_str(&good).unwrap();
    meta["backbone"]["width"] = (-4).into();
    std::fs::write(&json, meta.to_string()).unwrap();
    let o = embed();
    let err = String::from_utf8_lossy(&o.stderr);
    let named = err.contains("backbone.json") && err.contains("its backbone cannot be built");
    assert!(!o.status.success() && named, "{err}");
    std::fs::write(&json, good).unwrap();
    let o = embed();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = tch::Tensor::read_npy(emb.join("embeddings.npy")).unwrap();
    assert_eq!(e.size(), [24, 128]);
    let check: std::collections::HashMap<String, tch::Tensor> =
        tch::Tensor::read_safetensors(first.join("check_features.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let diff = (e.narrow(0, 16, 4) - &check["features"]).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "embeddings of the test images differ from the run's by {diff}");
    assert_eq!(tch::Tensor::read_npy(emb.join("neighbors.npy")).unwrap().size(), [24, 3]);
    let items = std::fs::read_to_string(emb.join("items.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = items.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 24);
    assert_eq!(
        (rows[16]["split"].as_str(), rows[16]["class"].as_str()),
        (Some("test"), Some("dark")),
        "{}",
        rows[16]
    );
    assert!(rows[16]["path"].as_str().unwrap().ends_with("test/dark/0.png"), "{}", rows[16]);
    assert_eq!(rows[0]["neighbors"].as_array().map(Vec::len), Some(3));
    let o = Command::new(env!("CARGO_BIN_EXE_embed-vision"))
        .args(["--model", data.path().to_str().unwrap(), "--data", &spec, "--device", "cpu"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains("backbone.json") && stderr.contains("run folder"),
        "{stderr}"
    );

    // BYOL from SimCLR's backbone: both copies start from the file.
    let second = data.path().join("second");
    let o = train(&second, &["--method", "byol", "--init", exported.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("init: 120 encoder tensors from")
            && stderr.contains("into online.backbone, target.backbone"),
        "{stderr}"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(second.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["init"]["loaded"], 120, "{config}");

    // Another architecture, and a truncated file, are refused by name.
    let o = train(&data.path().join("third"), &["--method", "mae", "--init", exported.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("first/backbone.safetensors")
            && stderr.contains("missing")
            && stderr.contains("`blocks.0.attn.qkv.weight`"),
        "{stderr}"
    );
    let cut = data.path().join("cut.safetensors");
    let bytes = std::fs::read(&exported).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let o = train(&data.path().join("fourth"), &["--init", cut.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && stderr.contains("cut.safetensors")
            && stderr.contains("not a readable safetensors file"),
        "{stderr}"
    );
}

/// `train-vision ARGS`, its status, standard output and standard error.
fn vision(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_train-vision")).args(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

#[test]
fn a_runs_config_json_or_a_toml_file_sets_the_options_and_flags_override_them() {
    let data = tempfile::tempdir().unwrap();
    tiny_folder(data.path());
    let spec = format!("folder:{}", data.path().display());
    let run = data.path().join("run");
    let run_s = run.to_str().unwrap();
    let (ok, _, err) = vision(&[
        "--data",
        &spec,
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--knn-every",
        "0",
        "--method",
        "byol",
        "--lr",
        "0.05",
        "--set",
        "out=64",
        "--finetune-fractions",
        "1",
        "--out",
        run_s,
    ]);
    assert!(ok, "{err}");
    let saved = std::fs::read_to_string(run.join("config.json")).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(saved["args"]["method"], "byol", "{saved}");
    assert!(saved["args"].get("resume").is_none() && saved["args"].get("config").is_none(), "{saved}");

    // The run's own config.json resolves to the same config, and
    // --print-config neither trains nor makes the folder it names.
    let config = run.join("config.json");
    let (ok, out, err) = vision(&["--config", config.to_str().unwrap(), "--print-config"]);
    assert!(ok, "{err}");
    let printed: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(printed, saved, "--config of a run's config.json resolves to another config");
    let elsewhere = data.path().join("not-made");
    let (ok, out, err) = vision(&[
        "--config",
        config.to_str().unwrap(),
        "--print-config",
        "--out",
        elsewhere.to_str().unwrap(),
    ]);
    assert!(ok && out.contains("\"byol\""), "{err}");
    assert!(!elsewhere.exists(), "--print-config made the run folder");
    // The warmup is the recipe's (SimSiam's 10 epochs, the others' 2)
    // unless --warmup-epochs says otherwise.
    for (method, more, warmup) in
        [("simsiam", None, 10), ("byol", None, 2), ("simsiam", Some("3"), 3), ("byol", Some("5"), 5)]
    {
        let mut a = vec![
            "--config",
            config.to_str().unwrap(),
            "--print-config",
            "--method",
            method,
            "--epochs",
            "20",
        ];
        a.extend(more.map(|w| ["--warmup-epochs", w]).into_iter().flatten());
        let (ok, out, err) = vision(&a);
        assert!(ok, "{err}");
        let printed: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(printed["train"]["warmup_epochs"], warmup, "{method} {more:?}: {}", printed["train"]);
    }

    // A TOML file, and flags that override it (a later --set wins too).
    let toml = data.path().join("run.toml");
    let text = format!(
        "data = \"{spec}\"\ndevice = \"cpu\"\nepochs = 3\nbatch-size = 8\nmethod = \"vicreg\"\n\
         finetune_fractions = [0.5, 1]\nprint-config = false\n[set]\nwidth = 32\n"
    );
    std::fs::write(&toml, text).unwrap();
    let toml_s = toml.to_str().unwrap();
    let (ok, out, err) =
        vision(&["--config", toml_s, "--epochs", "2", "--set", "width=48", "--print-config"]);
    assert!(ok, "{err}");
    let c: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&c["method"], &c["batch_size"], &c["train"]["epochs"]),
        (&"vicreg".into(), &8.into(), &2.into())
    );
    assert_eq!(c["model"]["width"], 48, "the command line's --set comes after the file's");
    assert_eq!(c["args"]["finetune_fractions"], serde_json::json!([0.5, 1.0]));

    // Bad files and keys are named.
    std::fs::write(&toml, "epoch = 3\n").unwrap();
    let (ok, _, err) = vision(&["--config", toml_s, "--print-config"]);
    assert!(
        !ok && err.contains("run.toml") && err.contains("`epoch` is not an option of train-vision"),
        "{err}"
    );
    assert!(err.contains("did you mean `epochs`?") && err.contains("batch-size"), "the known options: {err}");
    std::fs::write(&toml, "epochs = \"three\"\n").unwrap();
    let (ok, _, err) = vision(&["--config", toml_s, "--print-config"]);
    assert!(!ok && err.contains("run.toml: `epochs`") && err.contains("three"), "{err}");
}

#[test]
fn report_html_draws_every_chart_in_headless_chromium() {
    let data = tempfile::tempdir().unwrap();
    tiny_folder(data.path());
    let spec = format!("folder:{}", data.path().display());
    let run = data.path().join("run");
    // Two epochs with the kNN monitor each, and fine-tuning on half and
    // all of the labels (later flags override one_epoch's).
    let o = one_epoch(&spec, "8")
        .args([
            "--epochs",
            "2",
            "--knn-every",
            "1",
            "--finetune-epochs",
            "1",
            "--finetune-fractions",
            "0.5,1",
        ])
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    let (ok, out, err) =
        (o.status.success(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(ok, "{err}");
    let page = run.join("report.html");
    assert!(out.contains(page.to_str().unwrap()), "the run names its page: {out}");
    let html = std::fs::read_to_string(&page).unwrap();
    // Loss, learning rate, accuracies (online probe, kNN), RankMe, spread,
    // fine-tuning on 50% and 100%, and the two embedding plots.
    let charts = html.matches("<figure class=\"chart\"").count();
    assert_eq!(charts, 9, "{html}");
    for text in [
        "Pretrained encoder against its baseline",
        "kNN top-1",
        "Accuracy during training",
        "Fine-tuning on 50% of the labels",
        "Test embeddings, simclr encoder",
        "Nearest training images (simclr encoder)",
        "data:image/png;base64,",
        "Resolved config",
    ] {
        assert!(html.contains(text), "report.html lacks {text:?}");
    }
    // Every class named in the embedding plots' legends.
    assert!(html.contains("\ndark\n") && html.contains("\nlight\n"), "no class legend");

    let shown = ssl_cli::testing::render_in_chromium(&page, data.path(), (1400, 1800));
    assert!(shown.console.is_empty(), "console messages: {:?}", shown.console);
    let body = shown.dom.lines().find(|l| l.contains("<body")).unwrap_or_default().to_string();
    assert!(body.contains(&format!("data-charts=\"{charts}\"")), "not every chart drew: {body}");
    assert!(body.contains("data-empty=\"0\"") && body.contains("data-errors=\"\""), "{body}");
    // The screenshot holds drawn charts: dark text and axes, coloured curves.
    let img = image::open(&shown.screenshot).unwrap().to_rgb8();
    let n = (img.width() * img.height()) as f64;
    let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 90)).count() as f64 / n;
    let coloured =
        img.pixels().filter(|p| p.0.iter().max().unwrap() - p.0.iter().min().unwrap() > 100).count() as f64
            / n;
    assert!(dark > 0.005 && coloured > 0.001, "a blank page? dark {dark:.4}, coloured {coloured:.4}");
}

#[test]
fn shared_run_options_resolve_as_in_every_binary() {
    let data = tempfile::tempdir().unwrap();
    tiny_folder(data.path());
    let spec = format!("folder:{}", data.path().display());
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_train-vision"));
    let args = ["--data", &spec, "--device", "cpu", "--batch-size", "8"];
    // SimCLR, the default method: 2 warmup epochs.
    ssl_cli::testing::shared_options_resolve_alike(binary, &args, "1000", 2, true);
}
