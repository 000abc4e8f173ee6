//! `train-audio` end to end on a tiny folder: every method writes the
//! report in the vision shape, a run resumes from its checkpoint, manifests
//! and unlabelled folders are read, and bad input stops the run with the
//! file's name before any training.

use std::path::Path;
use std::process::{Command, Output};

/// A 22.05 kHz 16-bit clip (resampled by the binary): a tone whose pitch
/// depends on the class, 0.3 s long.
fn write_clip(path: &Path, class: usize, k: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 22_050,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let f = 300.0 * (class + 1) as f32 + 10.0 * k as f32;
    for i in 0..6_615 {
        let s = (2.0 * std::f32::consts::PI * f * i as f32 / 22_050.0).sin() * 0.4;
        w.write_sample((s * 32_767.0) as i16).unwrap();
    }
    w.finalize().unwrap();
}

fn write_data(dir: &Path) {
    for class in 0..2 {
        for k in 0..6 {
            write_clip(&dir.join(format!("kw/train/c{class}/{k}.wav")), class, k);
        }
        for k in 0..3 {
            write_clip(&dir.join(format!("kw/test/c{class}/{k}.wav")), class, k + 7);
        }
    }
    for k in 0..4 {
        write_clip(&dir.join(format!("extra/sub/{k}.wav")), k % 2, k + 20);
    }
}

const SMALL: [&str; 12] = [
    "--epochs",
    "2",
    "--batch-size",
    "4",
    "--device",
    "cpu",
    "--knn-every",
    "1",
    "--checkpoint-every",
    "1",
    "--finetune-epochs",
    "0",
];

fn train_audio(dir: &Path, data: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train-audio"))
        .args(["--data", data, "--out", dir.join("run").to_str().unwrap()])
        .args(SMALL)
        .args(extra)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("run/report.json")).unwrap()).unwrap()
}

#[test]
fn every_method_reports_in_the_vision_shape_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_data(d);
    let folder = format!("folder:{}", d.join("kw").display());
    for method in ["cola", "byol-a", "msm"] {
        // BYOL-A fine-tunes too: in evaluation mode, as it pretrains.
        let mut args = vec!["--method", method];
        if method == "byol-a" {
            args.extend(["--finetune-epochs", "1", "--finetune-fractions", "1"]);
        }
        let o = train_audio(d, &folder, &args);
        assert!(o.status.success(), "{method}: {}", stderr(&o));
        let r = report(d);
        if method == "byol-a" {
            assert_eq!(r["finetune"]["config"]["encoder_eval_mode"], true, "{}", r["finetune"]);
        }
        assert_eq!(r["method"], method);
        assert_eq!(r["dataset"], folder.as_str());
        assert_eq!(r["epochs"], 2);
        assert!(r["wall_s"].as_f64().unwrap() > 0.0);
        for side in ["ssl", "random_init"] {
            for key in ["knn_top1", "linear_top1"] {
                let v = r[side][key].as_f64().unwrap_or_else(|| panic!("{method}: {side}.{key}"));
                assert!((0.0..=1.0).contains(&v));
            }
        }
        let log = std::fs::read_to_string(d.join("run/metrics.jsonl")).unwrap();
        assert!(log.contains("knn_top1"), "{method}: the kNN monitor logs");
        // The page, with both embedding plots and their class legend.
        let html = std::fs::read_to_string(d.join("run/report.html")).unwrap();
        for text in [
            format!("Test embeddings, {method} encoder"),
            "Test embeddings, random init".into(),
            "\nc1\n".into(),
        ] {
            assert!(html.contains(&text), "{method}: report.html lacks {text:?}");
        }
        assert!(d.join("run/pca_ssl.png").is_file() && d.join("run/pca_random_init.png").is_file());
        // The collapse figures of the last epoch, and the label fractions.
        let c = &r["train"]["collapse"];
        assert!(c["rankme"].as_f64().is_some() && c["normalized_std"].as_f64().is_some(), "{method}: {r}");
        assert!(r["train"]["collapse_warnings"].is_array(), "{method}");
        assert!(r["ssl"]["linear_top1_1pct"].as_f64().is_some(), "{method}");
        if method != "byol-a" {
            embeds_like_the_run(d, &folder, method);
        }
    }

    // Resume the last run (msm) for a third epoch: it continues from the
    // end of the second (3 steps of 4 clips an epoch), not from scratch;
    // `a_run_killed_at_a_random_step_resumes_to_identical_files` checks
    // that resuming changes nothing.
    let o = train_audio(d, &folder, &["--method", "msm", "--epochs", "3", "--resume"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(report(d)["epochs"], 3);
    assert!(
        stderr(&o).contains("resuming from") && stderr(&o).contains("(step 6 of 9, epoch 2)"),
        "{}",
        stderr(&o)
    );
    let log = std::fs::read_to_string(d.join("run/metrics.jsonl")).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains("epoch_loss")).count(), 3, "one row per epoch: {log}");

    // BYOL-A's views as flags (COLA's waveform draws for each view, no
    // mixup, a wider speed range), on a validation split of held-out
    // "speakers" (file names).
    let o = train_audio(
        d,
        &folder,
        &[
            "--method",
            "byol-a",
            "--byol-a-waves",
            "cola",
            "--mixup",
            "0",
            "--view-speed",
            "0.7,1.4",
            "--spec-crop",
            "1,1",
            "--view-snr",
            "0,20",
            "--view-eq",
            "3,12",
            "--val-speakers",
            "4.wav,5.wav",
            "--finetune-epochs",
            "1",
            "--finetune-fractions",
            "1",
            "--finetune-eval-mode",
            "false",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = report(d);
    assert_eq!(r["finetune"]["config"]["encoder_eval_mode"], false, "{}", r["finetune"]);
    assert_eq!(r["dataset"], format!("{folder}-val-speakers"));
    assert_eq!((r["train_clips"].as_u64(), r["test_clips"].as_u64()), (Some(8), Some(4)), "{r}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("run/config.json")).unwrap()).unwrap();
    let views = &config["views"];
    assert_eq!(
        (views["wave_per_view"].as_bool(), views["mixup"].as_f64()),
        (Some(true), Some(0.0)),
        "{views}"
    );
    assert_eq!(
        (views["wave"]["speed"][0].as_f64(), views["wave"]["speed"][1].as_f64()),
        (Some(0.7), Some(1.4))
    );
    assert_eq!(views["wave"]["noise_p"].as_f64(), Some(1.0), "noise on every view: {views}");
    assert_eq!(views["wave"]["snr_db"], serde_json::json!([0.0, 20.0]), "{views}");
    assert_eq!(views["crop"]["scale"], serde_json::json!([1.0, 1.0]), "{views}");
    let eq = &views["wave"]["eq"];
    assert_eq!((eq["bands"].as_u64(), eq["gain_db"].as_f64()), (Some(3), Some(12.0)), "{views}");

    // BYOL-A's momentum (target) encoder out of that run's model, by its
    // prefix, evaluated without pretraining.
    std::fs::copy(d.join("run/model.safetensors"), d.join("byol-a.safetensors")).unwrap();
    let model = d.join("byol-a.safetensors");
    let o = train_audio(
        d,
        &folder,
        &[
            "--method",
            "byol-a",
            "--init",
            model.to_str().unwrap(),
            "--init-prefix",
            "target.encoder.",
            "--epochs",
            "0",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("the file's `target.encoder.` prefix removed"), "{}", stderr(&o));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("run/config.json")).unwrap()).unwrap();
    assert_eq!(config["init"]["file_prefix"], "target.encoder.", "{}", config["init"]);
    std::fs::remove_dir_all(d.join("run")).unwrap();
    fails_with(
        d,
        &folder,
        &["--method", "byol-a", "--init", model.to_str().unwrap(), "--init-prefix", "teacher.encoder."],
        &["byol-a.safetensors", "no tensor name starts with the prefix `teacher.encoder.`"],
    );

    // Each clip standardised by its own statistics: recorded in
    // backbone.json, and `embed` reproduces the run's features with it.
    let o = train_audio(d, &folder, &["--method", "cola", "--per-clip-norm"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("run/backbone.json")).unwrap()).unwrap();
    assert_eq!(meta["input"]["per_clip"], true, "{meta}");
    embeds_like_the_run(d, &folder, "cola-per-clip");

    // Manifests, unlabelled clips and fine-tuning.
    let mut train = String::new();
    let mut test = String::new();
    for class in 0..2 {
        for k in 0..6 {
            train += &format!("kw/train/c{class}/{k}.wav\tc{class}\n");
        }
        for k in 0..3 {
            test += &format!("kw/test/c{class}/{k}.wav,c{class}\n");
        }
    }
    std::fs::write(d.join("train.tsv"), train).unwrap();
    std::fs::write(d.join("test.csv"), test).unwrap();
    let manifest = format!("manifest:{},{}", d.join("train.tsv").display(), d.join("test.csv").display());
    let extra = d.join("extra");
    let o = train_audio(
        d,
        &manifest,
        &["--method", "cola", "--unlabeled", extra.to_str().unwrap(), "--finetune-epochs", "1"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = report(d);
    assert_eq!((r["pretrain_clips"].as_u64(), r["train_clips"].as_u64()), (Some(16), Some(12)));
    // COLA pretrains in training mode, so it fine-tunes in it.
    assert_eq!(r["finetune"]["config"]["encoder_eval_mode"], false, "{}", r["finetune"]);
    for side in ["ssl", "random_init"] {
        for key in [
            "finetune_top1",
            "finetune_top1_1pct",
            "finetune_top1_10pct",
            "linear_top1_1pct",
            "linear_top1_10pct",
        ] {
            assert!(r[side][key].as_f64().is_some(), "{side}.{key} in {}", r[side]);
        }
    }
    // 1% and 10% of 6 clips per class: one clip per class.
    assert_eq!(r["finetune"]["fractions"][0]["plan"]["labels"], 2);
}

/// `embed-audio` on the run in `dir/run`: a row per clip (train, then
/// test), and the test split's first four are the export's check features.
fn embeds_like_the_run(dir: &Path, data: &str, method: &str) {
    let run = dir.join("run");
    let out = dir.join(format!("emb-{method}"));
    let embed = || {
        Command::new(env!("CARGO_BIN_EXE_embed-audio"))
            .args(["--model", run.to_str().unwrap(), "--data", data, "--device", "cpu", "--neighbors", "2"])
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    // A backbone.json edited into an input that cannot be computed is
    // named, not a division by zero.
    let json = run.join("backbone.json");
    let good = std::fs::read_to_string(&json).unwrap();
    let mut meta: serde_json::Value = serde_json::from_str(&good).unwrap();
    meta["input"]["frontend"]["hop_length"] = 0.into();
    std::fs::write(&json, meta.to_string()).unwrap();
    let o = embed();
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("backbone.json") && e.contains("`frontend.hop_length`"), "{e}");
    std::fs::write(&json, good).unwrap();
    let o = embed();
    assert!(o.status.success(), "{method}: {}", stderr(&o));
    let e = tch::Tensor::read_npy(out.join("embeddings.npy")).unwrap();
    let rows = std::fs::read_to_string(out.join("items.jsonl")).unwrap();
    assert_eq!(e.size()[0] as usize, rows.lines().count(), "{method}");
    let first_test = rows.lines().position(|l| l.contains("\"split\":\"test\"")).unwrap() as i64;
    let check: std::collections::HashMap<String, tch::Tensor> =
        tch::Tensor::read_safetensors(run.join("check_features.safetensors")).unwrap().into_iter().collect();
    let want = &check["features"];
    let diff = (e.narrow(0, first_test, want.size()[0]) - want).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "{method}: embeddings differ from the run's by {diff}");
    assert_eq!(tch::Tensor::read_npy(out.join("neighbors.npy")).unwrap().size(), [e.size()[0], 2]);
}

fn fails_with(dir: &Path, data: &str, extra: &[&str], expected: &[&str]) {
    let o = train_audio(dir, data, extra);
    assert!(!o.status.success(), "{data} {extra:?} should fail");
    let e = stderr(&o);
    for want in expected {
        assert!(e.contains(want), "{data} {extra:?}: stderr lacks {want:?}:\n{e}");
    }
    assert!(!dir.join("run/metrics.jsonl").exists(), "{data} {extra:?}: refused before training");
}

#[test]
fn bad_input_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_data(d);
    let folder = format!("folder:{}", d.join("kw").display());
    let clip = d.join("kw/train/c1/3.wav");
    let good = std::fs::read(&clip).unwrap();

    // A truncated file.
    std::fs::write(&clip, &good[..good.len() - 1001]).unwrap();
    fails_with(d, &folder, &[], &["3.wav", "truncated"]);
    fails_with(d, &folder, &["--val-fraction", "1.5"], &["between 0 and 1, not 1.5"]);
    // An encoding hound cannot decode (mu-law).
    let mut mulaw = b"RIFF\x28\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x07\x00\x01\x00\x40\x1f\x00\x00".to_vec();
    mulaw.extend(b"\x40\x1f\x00\x00\x01\x00\x08\x00data\x04\x00\x00\x00\x01\x02\x03\x04");
    std::fs::write(&clip, &mulaw).unwrap();
    fails_with(d, &folder, &[], &["3.wav", "unsupported encoding"]);
    // A zero-length clip.
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    hound::WavWriter::create(&clip, spec).unwrap().finalize().unwrap();
    fails_with(d, &folder, &[], &["3.wav", "zero-length clip"]);
    std::fs::write(&clip, &good).unwrap();

    // A manifest that points to a missing file.
    std::fs::write(d.join("train.tsv"), "kw/train/c0/0.wav\tc0\nkw/train/c0/nope.wav\tc0\n").unwrap();
    std::fs::write(d.join("test.tsv"), "kw/test/c0/0.wav\tc0\n").unwrap();
    let manifest = format!("manifest:{},{}", d.join("train.tsv").display(), d.join("test.tsv").display());
    fails_with(d, &manifest, &[], &["train.tsv", "line 2", "nope.wav", "does not exist"]);

    // A missing folder, a missing class in test, and bad options.
    fails_with(d, &format!("folder:{}", d.join("none").display()), &[], &["none", "no such folder"]);
    std::fs::remove_dir_all(d.join("kw/test/c1")).unwrap();
    fails_with(d, &folder, &[], &["c1", "missing from the test split"]);
    std::fs::create_dir_all(d.join("kw/test/c1")).unwrap();
    write_clip(&d.join("kw/test/c1/0.wav"), 1, 0);
    // A class that only the test split has is named, not left out.
    std::fs::create_dir_all(d.join("kw/test/c9")).unwrap();
    write_clip(&d.join("kw/test/c9/0.wav"), 1, 0);
    fails_with(d, &folder, &[], &["c9", "in the test split but not in"]);
    std::fs::remove_dir_all(d.join("kw/test/c9")).unwrap();
    fails_with(d, &folder, &["--method", "wav2vec"], &["unknown --method `wav2vec`"]);
    fails_with(d, &folder, &["--method", "msm", "--encoder", "cnn"], &["--encoder transformer"]);
    fails_with(d, &folder, &["--n-mels", "60"], &["multiple of 8"]);
    fails_with(d, &folder, &["--pool", "stacked"], &["--pool is the transformer's"]);
    fails_with(d, &folder, &["--mixup", "0.2"], &["--mixup is BYOL-A's", "not cola's"]);
    fails_with(d, &folder, &["--method", "byol-a", "--mixup", "2"], &["--mixup 2", "ratio in [0, 1]"]);
    fails_with(d, &folder, &["--byol-a-waves", "cola"], &["--byol-a-waves is BYOL-A's"]);
    for bad in ["1.2,0.9", "1,inf", "1e-9,1e-9", "NaN,1"] {
        fails_with(d, &folder, &[&format!("--view-speed={bad}")], &["--view-speed expects LO,HI"]);
    }
    fails_with(d, &folder, &["--view-snr", "20,0"], &["--view-snr expects LO,HI"]);
    for bad in ["2.5,6", "-1,6", "3,NaN", "0.5,0", "0,50", "3"] {
        fails_with(d, &folder, &[&format!("--view-eq={bad}")], &["--view-eq expects BANDS,DB"]);
    }
    fails_with(d, &folder, &["--spec-crop", "1,1"], &["--spec-crop is BYOL-A's", "not cola's"]);
    fails_with(d, &folder, &["--method", "byol-a", "--spec-crop", "0"], &["--spec-crop expects LO,HI"]);
    fails_with(d, &folder, &["--method", "byol-a", "--spec-crop", "1,inf"], &["--spec-crop expects LO,HI"]);
    fails_with(
        d,
        &folder,
        &["--method", "msm", "--set", "decoder_heads=5"],
        &["--set decoder_heads=5: msm's model cannot be built", "not divisible by 5 heads"],
    );
    // SMALL's batch of 4: micro-batches must be equal, of 2 samples or more.
    fails_with(
        d,
        &folder,
        &["--accumulate", "3"],
        &["batch size 4 is not a multiple of 1 rank(s) x --accumulate 3"],
    );
    fails_with(
        d,
        &folder,
        &["--accumulate", "4"],
        &["leaves 1 sample(s) per micro-batch; cola needs at least 2"],
    );
    for (flag, bad) in [("--lr", "-1"), ("--finetune-lr", "nan"), ("--mixup", "-0.1")] {
        fails_with(
            d,
            &folder,
            &[&format!("{flag}={bad}")],
            &[&format!("invalid value '{bad}' for '{flag}"), "expected a finite number"],
        );
    }
    fails_with(d, &folder, &["--init-prefix", "target.encoder."], &["required", "--init <FILE>"]);
    fails_with(d, &folder, &["--val-speakers", "_nobody_"], &["--val-speakers _nobody_", "class `c0`"]);
    fails_with(d, &folder, &["--val-speakers", "4.wav", "--val-fraction", "0.2"], &["cannot be used with"]);
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    fails_with(d, &folder, &["--unlabeled", empty.to_str().unwrap()], &["empty", "no .wav file"]);
}

#[test]
fn make_keywords_refuses_a_bad_noise_range_before_synthesising() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [&["--noise-snr", "20,0"][..], &["--noise-snr", "5"], &["--noise-snr", "0,inf"]] {
        let o = Command::new(env!("CARGO_BIN_EXE_make-keywords"))
            .args(bad)
            .arg("--out")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(!o.status.success(), "{bad:?} should fail");
        let e = stderr(&o);
        assert!(e.contains("--noise-snr expects LO,HI"), "{bad:?}: {e}");
    }
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing written");
}

#[test]
fn a_run_killed_at_a_random_step_resumes_to_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_data(d);
    let folder = format!("folder:{}", d.join("kw").display());
    let binary = Path::new(env!("CARGO_BIN_EXE_train-audio"));
    // The audio CNN's dropout and MSM's masks draw from libtorch's
    // generator every step.
    for method in ["cola", "msm"] {
        let args = [
            "--data",
            &folder,
            "--method",
            method,
            "--epochs",
            "4",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--knn-every",
            "2",
            "--finetune-epochs",
            "1",
        ];
        let full = ssl_cli::testing::uninterrupted(binary, &args, &d.join(method));
        let at = ssl_cli::testing::kill_and_resume(binary, &args, &d.join(method), &full);
        eprintln!("{method}: killed after step {at}, resumed to identical files");
    }
}

#[test]
fn print_config_writes_no_run_and_its_output_starts_the_same_run() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    let data = format!("folder:{}", dir.path().join("kw").display());
    let out = dir.path().join("run");
    let mut args = vec!["--data", &data, "--out", out.to_str().unwrap()];
    args.extend(["--method", "msm", "--set", "mask_ratio=0.5"]);
    args.extend(SMALL);
    let first = ssl_cli::testing::print_config_round_trips(
        std::path::Path::new(env!("CARGO_BIN_EXE_train-audio")),
        &args,
        dir.path(),
    );
    assert_eq!((&first["method"], &first["model"]["mask_ratio"]), (&"msm".into(), &0.5.into()), "{first}");
    assert!(!out.exists(), "--print-config made the run folder");
}

/// BYOL-A's recipe (no mixup, each view from its own waveform draw with
/// noise on every view, each clip standardised, the encoder's BatchNorm
/// statistics kept at their start) and the flags that undo it, read from
/// `--print-config`; other methods keep the global normalisation.
#[test]
fn byol_a_recipe_defaults_and_the_flags_that_undo_them() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    let data = format!("folder:{}", dir.path().join("kw").display());
    let binary = env!("CARGO_BIN_EXE_train-audio");
    let config = |extra: &[&str]| -> serde_json::Value {
        let o = Command::new(binary)
            .args(["--data", &data, "--print-config", "--batch-size", "4", "--out"])
            .arg(dir.path().join("run"))
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let summary = |c: &serde_json::Value| {
        (
            c["input"]["per_clip"].as_bool(),
            c["views"]["mixup"].as_f64(),
            c["model"]["encoder_eval_mode"].as_bool(),
        )
    };
    // Which waveform views: each its own (with noise on every one) or one
    // for both.
    let waves = |c: &serde_json::Value| {
        (c["views"]["wave_per_view"].as_bool(), c["views"]["wave"]["noise_p"].as_f64())
    };
    let recipe = config(&["--method", "byol-a"]);
    assert_eq!(summary(&recipe), (Some(true), Some(0.0), Some(true)));
    assert_eq!(waves(&recipe), (Some(true), Some(1.0)), "{}", recipe["views"]);
    assert_eq!(recipe["views"]["wave"]["snr_db"], serde_json::json!([0.0, 20.0]), "{}", recipe["views"]);
    // `--byol-a-waves` keeps the recipe's mixup; the flags override it.
    let paper = config(&["--method", "byol-a", "--byol-a-waves", "paper"]);
    assert_eq!(summary(&paper), (Some(true), Some(0.0), Some(true)));
    assert_eq!(waves(&paper), (Some(false), Some(0.0)), "{}", paper["views"]);
    assert_eq!(
        summary(&config(&[
            "--method",
            "byol-a",
            "--per-clip-norm",
            "false",
            "--mixup",
            "0.4",
            "--set",
            "encoder_eval_mode=false"
        ])),
        (Some(false), Some(0.4), Some(false))
    );
    let cola = config(&["--method", "cola"]);
    assert_eq!(cola["input"]["per_clip"].as_bool(), Some(false), "{cola}");
    let cola = config(&["--method", "cola", "--per-clip-norm"]);
    assert_eq!(cola["input"]["per_clip"].as_bool(), Some(true), "{cola}");
}

#[test]
fn shared_run_options_resolve_as_in_every_binary() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    let data = format!("folder:{}", dir.path().join("kw").display());
    let out = dir.path().join("run");
    let mut args = vec!["--data", &data, "--out", out.to_str().unwrap()];
    args.extend(SMALL);
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_train-audio"));
    // 12 training clips: a batch of 13 was cut to 12 without a word.
    ssl_cli::testing::shared_options_resolve_alike(binary, &args, "13", 2, true);
}
