//! Streamed image folders: the index decodes nothing; batches decoded on
//! demand equal the in-memory source's batches; evaluation chunks equal the
//! in-memory evaluation tensor; a corrupt file fails the batch that reads it,
//! naming the file; and `train-vision --stream` runs end to end.

use ssl_core::eval::InputChunks;
use ssl_core::BatchSource;
use ssl_vision::augment::ViewAugment;
use ssl_vision::data;
use ssl_vision::source::{eval_tensor, ViewSource};
use ssl_vision::stream::{index_folder, StreamedEval, StreamingViewSource};
use std::path::Path;

/// `n` images per class and split, 20x18, colour and gray mixed, each
/// different.
fn write_folder(dir: &Path, n: usize) {
    for (split, class) in [("train", "a"), ("train", "b"), ("test", "a"), ("test", "b")] {
        let p = dir.join(split).join(class);
        std::fs::create_dir_all(&p).unwrap();
        for i in 0..n {
            let seed = (i * 31 + class.len() * 7 + split.len()) as u32;
            if i % 3 == 0 {
                let img = image::GrayImage::from_fn(20, 18, |x, y| {
                    image::Luma([((x * 11 + y * 5 + seed) % 256) as u8])
                });
                img.save(p.join(format!("{i:03}.png"))).unwrap();
            } else {
                let img = image::RgbImage::from_fn(20, 18, |x, y| {
                    image::Rgb([
                        ((x * 13 + seed) % 256) as u8,
                        ((y * 17 + seed) % 256) as u8,
                        ((x * y + seed) % 256) as u8,
                    ])
                });
                img.save(p.join(format!("{i:03}.png"))).unwrap();
            }
        }
    }
}

#[test]
fn streamed_batches_equal_in_memory_batches() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path(), 12);
    let memory = data::folder(dir.path()).unwrap();
    let index = index_folder(dir.path()).unwrap();
    assert_eq!(index.classes, memory.classes);
    assert_eq!(index.train.labels, memory.train.labels);
    assert_eq!(index.train.len(), 24);
    let views = ViewAugment::preset("byol", 16).unwrap();
    let a = ViewSource::with_views(&memory.train, views.clone(), 8, 4);
    let b = StreamingViewSource::new(&index.train, views, 8, 4);
    assert_eq!(a.batches_per_epoch(), b.batches_per_epoch());
    for (epoch, i) in [(0, 0), (2, 2)] {
        let (x, y) = (a.batch(epoch, i).unwrap(), b.batch(epoch, i).unwrap());
        assert!(x.labels.unwrap().equal(&y.labels.unwrap()));
        for v in 0..2 {
            assert_eq!(y.views[v].size(), [8, 3, 16, 16]);
            assert!(x.views[v].equal(&y.views[v]), "epoch {epoch} batch {i} view {v}");
        }
    }
    // Evaluation chunks equal the rows of the in-memory tensor.
    let aug = ViewAugment::simclr(16);
    let full = eval_tensor(&memory.test, &aug);
    let streamed = StreamedEval { set: &index.test, aug: &aug };
    assert_eq!(streamed.len(), 24);
    assert!(streamed.chunk(5, 7).unwrap().equal(&full.narrow(0, 5, 7)));
}

#[test]
fn a_corrupt_file_fails_its_batch_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path(), 4);
    let bad = dir.path().join("train").join("b").join("002.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    // Indexing reads no pixels, so it succeeds.
    let index = index_folder(dir.path()).unwrap();
    let source = StreamingViewSource::new(&index.train, ViewAugment::preset("simclr", 16).unwrap(), 8, 0);
    let err = source.batch(0, 0).err().expect("the batch holding the corrupt file fails").to_string();
    assert!(err.contains("002.png") && err.contains("cannot decode"), "{err}");
    let aug = ViewAugment::simclr(16);
    let eval = StreamedEval { set: &index.train, aug: &aug };
    let err = eval.chunk(0, 8).err().unwrap().to_string();
    assert!(err.contains("002.png"), "{err}");
    // An empty class folder is refused at indexing time.
    let empty = tempfile::tempdir().unwrap();
    write_folder(empty.path(), 2);
    for f in std::fs::read_dir(empty.path().join("test").join("a")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let err = index_folder(empty.path()).err().unwrap().to_string();
    assert!(err.contains("no .png, .jpg or .jpeg"), "{err}");
    // A class that only the test split has is named, by the indexer and
    // the decoding loader alike, instead of being left out.
    let extra = tempfile::tempdir().unwrap();
    write_folder(extra.path(), 2);
    let only_test = extra.path().join("test").join("zebra");
    std::fs::create_dir_all(&only_test).unwrap();
    std::fs::copy(
        extra.path().join("test/a").read_dir().unwrap().next().unwrap().unwrap().path(),
        only_test.join("0.png"),
    )
    .unwrap();
    // Files the loaders do not read are listed for the binary to report.
    std::fs::write(extra.path().join("train/a/notes.txt"), "x").unwrap();
    std::fs::write(extra.path().join("train/a/.hidden"), "x").unwrap();
    std::fs::write(extra.path().join("train/stray.png"), "x").unwrap();
    std::fs::create_dir_all(extra.path().join("train/a/deeper")).unwrap();
    let unread = ssl_cli::unread_files(extra.path(), ssl_vision::data::reads_file);
    let want = ["train/a/deeper", "train/a/notes.txt", "train/stray.png"].map(|p| extra.path().join(p));
    assert_eq!(unread, want);
    for err in [
        index_folder(extra.path()).err().unwrap().to_string(),
        ssl_vision::data::folder(extra.path()).err().unwrap().to_string(),
    ] {
        assert!(err.contains("zebra") && err.contains("in the test split but not in"), "{err}");
    }
}

#[test]
fn train_vision_streams_a_folder_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path(), 16);
    let out = dir.path().join("run");
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_train-vision"))
            .args(["--data", &format!("folder:{}", dir.path().display()), "--stream", "--device", "cpu"])
            .args(["--epochs", "1", "--batch-size", "8", "--image-size", "16", "--knn-every", "1"])
            .args(["--out", out.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("(streamed)"));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["train_images"], 32);
    assert!(report["ssl"]["knn_top1"].as_f64().is_some());
    assert!(report["random_init"]["linear_top1"].as_f64().is_some());
    let o = run(&["--finetune-epochs", "1"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--finetune-epochs needs the data in memory"));
}
