//! `make-keywords` with a stand-in `espeak-ng` on the `PATH` (a shell
//! script that copies a tone for every word but `fail`), so that it runs
//! without a synthesiser: a set is replaced only once every clip is made,
//! and a failing voice leaves the earlier set as it was.

#![cfg(unix)]

use std::path::Path;
use std::process::{Command, Output};

/// A folder holding a stand-in `espeak-ng` and the tone it speaks.
fn fake_espeak(dir: &Path) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 22_050,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(dir.join("tone.wav"), spec).unwrap();
    for i in 0..6_615 {
        let s = (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 22_050.0).sin() * 0.4;
        w.write_sample((s * 32_767.0) as i16).unwrap();
    }
    w.finalize().unwrap();
    // Called as `espeak-ng -v V -s S -p P -w FILE WORD`, or `--version`.
    let script = format!(
        "#!/bin/sh\n\
         if [ \"$1\" = --version ]; then echo 'eSpeak NG text-to-speech: stand-in'; exit 0; fi\n\
         while [ $# -gt 1 ]; do [ \"$1\" = -w ] && out=$2; shift; done\n\
         [ \"$1\" = fail ] && exit 3\n\
         cp '{}' \"$out\"\n",
        dir.join("tone.wav").display()
    );
    // `install` writes the program, so that no descriptor of it is open in
    // this process when it runs (a child forked meanwhile by another test
    // would hold it open for writing: "Text file busy").
    let (text, program) = (dir.join("espeak-ng.txt"), dir.join("espeak-ng"));
    std::fs::write(&text, script).unwrap();
    let status = Command::new("install").arg("-m").arg("755").arg(&text).arg(&program).status().unwrap();
    assert!(status.success(), "install {}", program.display());
}

fn make_keywords(bin_dir: &Path, out: &Path, words: &str) -> Output {
    make_keywords_with(bin_dir, out, words, &["--test-per-word", "1"])
}

fn make_keywords_with(bin_dir: &Path, out: &Path, words: &str, extra: &[&str]) -> Output {
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    Command::new(env!("CARGO_BIN_EXE_make-keywords"))
        .env("PATH", path)
        .args(["--out", out.to_str().unwrap(), "--words", words])
        .args(["--train-voices", "en-us+m1", "--test-voices", "en-us+f4"])
        .args(["--train-per-word", "2"])
        .args(extra)
        .output()
        .unwrap()
}

fn wavs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_failing_voice_leaves_the_earlier_set_and_a_good_one_replaces_it() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    fake_espeak(&bin);
    let out = tmp.path().join("set");

    // A first set.
    let first = make_keywords(&bin, &out, "up,down");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert_eq!(wavs(&out.join("train")), ["down", "up"]);
    assert_eq!(wavs(&out.join("train/up")).len(), 2);
    assert_eq!(wavs(&out.join("test/down")).len(), 1);
    let listed = std::fs::read_to_string(out.join("clips.tsv")).unwrap();
    assert_eq!(listed.lines().count(), 1 + 6, "{listed}");
    assert_eq!(wavs(&out), ["clips.tsv", "test", "train"], "nothing else is left");

    // One word the synthesiser fails on: an error naming it, the first set
    // untouched, nothing half-made left behind.
    let failed = make_keywords(&bin, &out, "left,fail");
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains("\"fail\"") && err.contains("nothing in"), "{err}");
    assert_eq!(wavs(&out.join("train")), ["down", "up"]);
    assert_eq!(std::fs::read_to_string(out.join("clips.tsv")).unwrap(), listed);
    assert_eq!(wavs(&out), ["clips.tsv", "test", "train"]);

    // A good second set replaces the first whole: no class of it remains.
    let second = make_keywords(&bin, &out, "left,right,stop");
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert_eq!(wavs(&out.join("train")), ["left", "right", "stop"]);
    assert_eq!(wavs(&out.join("test")), ["left", "right", "stop"]);
    assert!(std::fs::read_to_string(out.join("clips.tsv")).unwrap().contains("\tstop\t"));
    assert_eq!(wavs(&out), ["clips.tsv", "test", "train"]);

    // A half-made set left by a run killed while generating is cleared
    // first, and said so.
    std::fs::create_dir_all(out.join(".make-keywords-partial/train/up")).unwrap();
    let third = make_keywords(&bin, &out, "up,down");
    assert!(third.status.success(), "{}", String::from_utf8_lossy(&third.stderr));
    assert!(String::from_utf8_lossy(&third.stderr).contains("left by an interrupted run"));
    assert_eq!(wavs(&out), ["clips.tsv", "test", "train"]);

    // No test clips (an unlabelled set): the old test/ goes with the rest.
    let unlabelled = make_keywords_with(&bin, &out, "go,stop", &["--test-per-word", "0"]);
    assert!(unlabelled.status.success(), "{}", String::from_utf8_lossy(&unlabelled.stderr));
    assert_eq!(wavs(&out), ["clips.tsv", "train"]);
    assert_eq!(wavs(&out.join("train")), ["go", "stop"]);

    // A run killed while swapping leaves the earlier set's parts in
    // .make-keywords-old: the next run names it and touches nothing.
    std::fs::create_dir_all(out.join(".make-keywords-old/test/down")).unwrap();
    let refused = make_keywords(&bin, &out, "up,down");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains(".make-keywords-old") && err.contains("interrupted"), "{err}");
    assert_eq!(wavs(&out), [".make-keywords-old", "clips.tsv", "train"]);
    assert_eq!(wavs(&out.join("train")), ["go", "stop"]);

    // A failure into a folder that did not exist leaves no folder behind.
    let fresh = tmp.path().join("fresh");
    assert!(!make_keywords(&bin, &fresh, "up,fail").status.success());
    assert!(!fresh.exists());
}
