//! `train-text` and `finetune-text` end to end on a small generated corpus
//! (the report has the documented fields, the `hf/` export loads back), and
//! their refusals of bad input, each naming the file (and line).

use std::path::Path;
use std::process::{Command, Output};

fn write_data(dir: &Path) {
    let topics = [
        ("space", ["rocket", "orbit", "planet", "star", "launch"]),
        ("food", ["bread", "cheese", "soup", "apple", "bake"]),
    ];
    let mut corpus = String::new();
    let (mut train, mut test) = (String::new(), String::new());
    for i in 0..240 {
        let (label, words) = topics[i % 2];
        let text: Vec<&str> =
            (0..9).map(|k| if k % 3 == 0 { "the" } else { words[(i * 7 + k) % 5] }).collect();
        let text = text.join(" ");
        corpus.push_str(&text);
        corpus.push('\n');
        let line = serde_json::json!({"text": text, "label": label}).to_string() + "\n";
        if i % 5 == 0 {
            test.push_str(&line);
        } else {
            train.push_str(&line);
        }
    }
    std::fs::write(dir.join("corpus.txt"), corpus).unwrap();
    std::fs::create_dir_all(dir.join("labeled")).unwrap();
    std::fs::write(dir.join("labeled/train.jsonl"), train).unwrap();
    std::fs::write(dir.join("labeled/test.jsonl"), test).unwrap();
}

const SMALL: [&str; 16] = [
    "--epochs",
    "1",
    "--seq-len",
    "32",
    "--batch-size",
    "8",
    "--vocab-size",
    "200",
    "--finetune-epochs",
    "1",
    "--finetune-seeds",
    "2",
    "--device",
    "cpu",
    "--model",
    "tiny",
];

fn train_text(dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train-text"))
        .args(["--corpus", dir.join("corpus.txt").to_str().unwrap()])
        .args(["--labeled", dir.join("labeled").to_str().unwrap()])
        .args(["--out", dir.join("run").to_str().unwrap()])
        .args(SMALL)
        .args(extra)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// With no --corpus, the bundled fortunes (written into the run folder)
/// are the corpus and their categories the task, as the README's first
/// command runs it.
#[test]
fn train_text_runs_on_the_bundled_corpus_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_train-text"))
        .args(["--out", out.to_str().unwrap(), "--max-docs", "300", "--finetune-epochs", "0"])
        .args(["--epochs", "1", "--seq-len", "32", "--vocab-size", "300", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["classes"].as_array().unwrap().len(), 5, "{r}");
    assert!(r["ssl"]["linear_top1"].as_f64().is_some() && r.get("finetune").is_none(), "{r}");
    assert!(out.join("data/fortunes/corpus.txt").is_file());
}

/// A corpus of fewer than 20 documents holds none out: the headline says
/// so instead of a NaN accuracy.
#[test]
fn a_corpus_too_small_to_hold_text_out_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("small.txt");
    let text: String =
        (0..10).map(|i| format!("line {i} of a small corpus with a few words in it\n")).collect();
    std::fs::write(&corpus, text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_train-text"))
        .args(["--corpus", corpus.to_str().unwrap(), "--out", dir.path().join("run").to_str().unwrap()])
        .args(["--epochs", "1", "--seq-len", "32", "--batch-size", "2", "--vocab-size", "100"])
        .args(["--device", "cpu", "--model", "tiny"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("no held-out text: every 20th document is held out, and the corpus has 10"),
        "{out}"
    );
    assert!(!out.contains("NaN"), "{out}");
}

#[test]
fn train_text_reports_and_exports_a_loadable_model() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    let o = train_text(dir.path(), &["--finetune-fractions", "0.1,1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = dir.path().join("run");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["objective"], "mlm");
    for key in ["mlm_top1", "wall_s"] {
        assert!(r[key].as_f64().is_some(), "{key}");
    }
    // The report every modality writes: the pretrained encoder (`ssl`)
    // against random initialisation, frozen and fine-tuned.
    for enc in ["ssl", "random_init"] {
        for key in [
            "knn_top1",
            "linear_top1",
            "linear_top1_1pct",
            "linear_top1_10pct",
            "finetune_top1",
            "finetune_top1_10pct",
        ] {
            assert!(r[enc][key].as_f64().is_some(), "{enc}.{key} in {}", r[enc]);
        }
        assert!(r[enc].get("finetune_top1_1pct").is_none(), "1% was not fine-tuned");
        assert!(r["linear_probe"][enc]["test_macro_f1"].as_f64().is_some(), "{enc}'s probe F1");
    }
    assert_eq!(r["label_efficiency"]["ssl"].as_array().unwrap().len(), 2);
    // --finetune-fractions 0.1,1: two rows; two paired fine-tuning runs
    // per encoder, reported one by one and as their mean, with one test
    // score and one training loss per epoch.
    let rows = r["finetune"]["fractions"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        for enc in ["ssl", "random_init"] {
            let f = &row[enc];
            let runs: Vec<f64> = f["runs"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(runs.len(), 2, "{enc}");
            let mean = f["test_top1"].as_f64().unwrap();
            assert!(
                (mean - (runs[0] + runs[1]) / 2.0).abs() < 1e-9,
                "{enc}: {mean} is not the mean of {runs:?}"
            );
            assert_eq!(
                f["test_top1_curve"].as_array().unwrap().len(),
                row["plan"]["epochs"].as_u64().unwrap() as usize
            );
            assert!(
                f["test_macro_f1"].as_f64().is_some() && f["train_loss_curve"].as_array().is_some(),
                "{f}"
            );
        }
    }
    assert!(r["finetune_ssl_ahead"].as_u64().unwrap() <= 2);
    assert_eq!(r["classes"].as_array().unwrap().len(), 2);
    // The page: both encoders' embedding plots and the fine-tuning curves.
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    for text in [
        "Test embeddings, pretrained encoder",
        "Test embeddings, random init",
        "Fine-tuning on 100% of the labels: test top-1 after each epoch",
    ] {
        assert!(html.contains(text), "report.html lacks {text:?}");
    }
    let c = &r["train"]["collapse"];
    assert!(c["rankme"].as_f64().is_some() && c["normalized_std"].as_f64().is_some(), "{r}");
    for f in
        ["hf/config.json", "hf/model.safetensors", "hf/tokenizer.json", "metrics.jsonl", "tokenizer.json"]
    {
        assert!(run.join(f).is_file(), "{f}");
    }
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(log.contains("heldout_top1"));

    let ft = Command::new(env!("CARGO_BIN_EXE_finetune-text"))
        .args(["--model", run.join("hf").to_str().unwrap()])
        .args(["--labeled", dir.path().join("labeled").to_str().unwrap()])
        .args(["--out", dir.path().join("ft").to_str().unwrap(), "--epochs", "1", "--device", "cpu"])
        .args(["--head-init", "probe", "--seeds", "1"])
        .output()
        .unwrap();
    assert!(ft.status.success(), "{}", stderr(&ft));
    let r2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("ft/report.json")).unwrap()).unwrap();
    // The same encoder, probed the same way, scores the same.
    assert_eq!(r2["ssl"]["linear_top1"], r["ssl"]["linear_top1"]);
    assert!(r2.to_string().contains(r#""head_init":"probe""#), "{r2}");
    // A batch of one text cannot be standardised: refused before any work.
    let one = Command::new(env!("CARGO_BIN_EXE_finetune-text"))
        .args(["--model", run.join("hf").to_str().unwrap()])
        .args(["--labeled", dir.path().join("labeled").to_str().unwrap()])
        .args(["--out", dir.path().join("ft1").to_str().unwrap(), "--batch-size", "1", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(
        !one.status.success() && stderr(&one).contains("a batch size of 1 is too small"),
        "{}",
        stderr(&one)
    );

    // Embeddings: the labelled folder (train, then test), and the test
    // file alone, which gives the same rows as the folder's test split.
    let embed = |data: &str, out: &str| {
        Command::new(env!("CARGO_BIN_EXE_embed-text"))
            .args(["--model", run.to_str().unwrap(), "--data", data, "--device", "cpu", "--neighbors", "3"])
            .args(["--out", dir.path().join(out).to_str().unwrap()])
            .output()
            .unwrap()
    };
    let labeled = dir.path().join("labeled");
    let o = embed(labeled.to_str().unwrap(), "emb");
    assert!(o.status.success(), "{}", stderr(&o));
    let all = tch::Tensor::read_npy(dir.path().join("emb/embeddings.npy")).unwrap();
    assert_eq!(all.size()[0], 240);
    assert_eq!(tch::Tensor::read_npy(dir.path().join("emb/neighbors.npy")).unwrap().size(), [240, 3]);
    let rows = std::fs::read_to_string(dir.path().join("emb/items.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(rows.lines().nth(192).unwrap()).unwrap();
    assert_eq!((first["split"].as_str(), first["class"].as_str()), (Some("test"), Some("space")), "{first}");
    let o = embed(labeled.join("test.jsonl").to_str().unwrap(), "emb-test");
    assert!(o.status.success(), "{}", stderr(&o));
    let test = tch::Tensor::read_npy(dir.path().join("emb-test/embeddings.npy")).unwrap();
    assert!((all.narrow(0, 192, 48) - test).abs().max().double_value(&[]) < 1e-5);
    let o = embed(&format!("lines:{}", dir.path().join("corpus.txt").display()), "emb-lines");
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = tch::Tensor::read_npy(dir.path().join("emb-lines/embeddings.npy")).unwrap();
    assert_eq!(lines.size()[0], 240, "one row per line of the corpus");
    let o = Command::new(env!("CARGO_BIN_EXE_embed-text"))
        .args(["--model", labeled.to_str().unwrap(), "--data", "x", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(
        !o.status.success() && stderr(&o).contains("no config.json and model.safetensors"),
        "{}",
        stderr(&o)
    );

    let clm = train_text(dir.path(), &["--objective", "clm", "--finetune-epochs", "0"]);
    assert!(clm.status.success(), "{}", stderr(&clm));
}

fn fails_with(dir: &Path, extra: &[&str], expected: &[&str]) {
    let o = train_text(dir, extra);
    assert!(!o.status.success(), "{extra:?} should fail");
    let e = stderr(&o);
    for want in expected {
        assert!(e.contains(want), "{extra:?}: stderr lacks {want:?}:\n{e}");
    }
}

#[test]
fn bad_input_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    let d = dir.path();
    std::fs::write(d.join("empty.txt"), "\n \n").unwrap();
    fails_with(d, &["--corpus", d.join("empty.txt").to_str().unwrap()], &["empty.txt", "empty corpus"]);
    std::fs::write(d.join("bad.jsonl"), "{\"text\": \"fine\"}\n{\"body\": 1}\n").unwrap();
    fails_with(d, &["--corpus", d.join("bad.jsonl").to_str().unwrap()], &["bad.jsonl:2", "no `text` field"]);
    std::fs::write(d.join("latin1.txt"), b"ok line\nna\xefve\n").unwrap();
    fails_with(d, &["--corpus", d.join("latin1.txt").to_str().unwrap()], &["latin1.txt:2", "UTF-8"]);
    std::fs::write(d.join("tokenizer.json"), "{ not json").unwrap();
    fails_with(
        d,
        &["--tokenizer", d.join("tokenizer.json").to_str().unwrap()],
        &["tokenizer.json", "not a valid tokenizer.json"],
    );
    fails_with(d, &["--objective", "electra"], &["unknown objective `electra`"]);
    fails_with(d, &["--model", "huge"], &["unknown model `huge`"]);
    fails_with(d, &["--head-init", "lp"], &["unknown head init `lp`"]);
    fails_with(d, &["--dropout", "1.5"], &["--dropout must be in [0, 1)"]);
    fails_with(d, &["--finetune-seeds", "0"], &["--finetune-seeds must be at least 1"]);
    fails_with(
        d,
        &["--set", "intermediate_size=-1"],
        &["--set intermediate_size=-1: the BERT model cannot be built"],
    );
    for (flag, bad) in
        [("--mlm-probability", "1.5"), ("--label-fraction", "0"), ("--lr", "-1"), ("--finetune-lr", "inf")]
    {
        fails_with(
            d,
            &[&format!("{flag}={bad}")],
            &[&format!("invalid value '{bad}' for '{flag}"), "expected a"],
        );
    }

    let bad_labels = d.join("bad_labels");
    std::fs::create_dir_all(&bad_labels).unwrap();
    std::fs::copy(d.join("labeled/train.jsonl"), bad_labels.join("train.jsonl")).unwrap();
    std::fs::write(
        bad_labels.join("test.jsonl"),
        "{\"text\": \"x\", \"label\": \"space\"}\n{\"text\": \"y\"}\n",
    )
    .unwrap();
    fails_with(d, &["--labeled", bad_labels.to_str().unwrap()], &["test.jsonl:2", "no `label` field"]);
    std::fs::write(bad_labels.join("test.jsonl"), "{\"text\": \"x\", \"label\": \"sports\"}\n").unwrap();
    fails_with(
        d,
        &["--labeled", bad_labels.to_str().unwrap()],
        &["test.jsonl", "label `sports` does not occur"],
    );
}

#[test]
fn a_run_killed_at_a_random_step_resumes_to_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    let corpus = dir.path().join("corpus.txt");
    let labeled = dir.path().join("labeled");
    let binary = Path::new(env!("CARGO_BIN_EXE_train-text"));
    // Pretraining's dropout (0.1 by default) draws from libtorch's
    // generator every step.
    let args = [
        "--corpus",
        corpus.to_str().unwrap(),
        "--labeled",
        labeled.to_str().unwrap(),
        "--epochs",
        "3",
        "--seq-len",
        "32",
        "--batch-size",
        "8",
        "--vocab-size",
        "200",
        "--finetune-epochs",
        "1",
        "--finetune-seeds",
        "1",
        "--device",
        "cpu",
        "--model",
        "tiny",
    ];
    let full = ssl_cli::testing::uninterrupted(binary, &args, &dir.path().join("mlm"));
    let at = ssl_cli::testing::kill_and_resume(binary, &args, &dir.path().join("mlm"), &full);
    eprintln!("killed after step {at}, resumed to identical files");
}

#[test]
fn print_config_writes_no_run_and_its_output_starts_the_same_run() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    let (corpus, labeled, out) =
        (dir.path().join("corpus.txt"), dir.path().join("labeled"), dir.path().join("run"));
    let mut args = vec!["--corpus", corpus.to_str().unwrap(), "--labeled", labeled.to_str().unwrap()];
    args.extend(["--out", out.to_str().unwrap(), "--dropout", "0.05"]);
    args.extend(SMALL);
    let first = ssl_cli::testing::print_config_round_trips(
        std::path::Path::new(env!("CARGO_BIN_EXE_train-text")),
        &args,
        dir.path(),
    );
    assert_eq!(first["pretrain_dropout"], 0.05, "{first}");
    assert!(!out.join("config.json").exists() && !out.join("tokenizer.json").exists());
}

#[test]
fn shared_run_options_resolve_as_in_every_binary() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    let (corpus, labeled, out) =
        (dir.path().join("corpus.txt"), dir.path().join("labeled"), dir.path().join("run"));
    let mut args = vec!["--corpus", corpus.to_str().unwrap(), "--labeled", labeled.to_str().unwrap()];
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend(SMALL);
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_train-text"));
    ssl_cli::testing::shared_options_resolve_alike(binary, &args, "100000", 1, false);
}
