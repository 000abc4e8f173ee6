//! Fuzz targets: one function per parser that reads a user's files, each
//! taking arbitrary bytes and returning nothing. A target may find the
//! input invalid (the parser's error is the expected outcome); it must
//! never panic, hang or abort. `fuzz/` (a cargo-fuzz project, nightly)
//! runs them under libFuzzer (`cargo xtask fuzz`); `tests/replay.rs` runs
//! every input kept in `fuzz/corpus/` and `fuzz/regressions/` through them
//! on stable, in CI.
//!
//! Parsers that take a path get the bytes as a file in a per-thread
//! temporary folder, under the name (and so the extension) the parser
//! expects.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// A fuzz target.
pub type Target = fn(&[u8]);

/// Every target, by name (the name of its folder under `fuzz/corpus/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("idx", idx),
    ("cifar", cifar),
    ("stl10", stl10),
    ("image", image),
    ("wav", wav),
    ("manifest", manifest),
    ("labeled_jsonl", labeled_jsonl),
    ("labeled_csv", labeled_csv),
    ("corpus", corpus),
    ("tokenizer", tokenizer),
    ("bert_config", bert_config),
    ("checkpoint_state", checkpoint_state),
    ("safetensors", safetensors),
    ("run_config", run_config),
    ("config_file", config_file),
];

thread_local! {
    static DIR: RefCell<Option<tempfile::TempDir>> = const { RefCell::new(None) };
}

/// `bytes` written to `name` in this thread's temporary folder.
fn as_file(name: &str, bytes: &[u8]) -> PathBuf {
    DIR.with(|d| {
        let mut d = d.borrow_mut();
        let dir = d.get_or_insert_with(|| tempfile::tempdir().expect("a temporary folder"));
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("creating a folder in the temporary folder");
        }
        std::fs::write(&path, bytes).expect("writing into the temporary folder");
        path
    })
}

/// IDX images and labels (MNIST's format), raw and gzipped.
pub fn idx(data: &[u8]) {
    let p = Path::new("fuzz.idx");
    let _ = ssl_vision::data::parse_idx_images(p, data);
    let _ = ssl_vision::data::parse_idx_labels(p, data);
}

/// CIFAR-10 and CIFAR-100 binary records.
pub fn cifar(data: &[u8]) {
    let p = Path::new("data_batch_1.bin");
    let _ = ssl_vision::data::parse_cifar(p, data, 1, 10);
    let _ = ssl_vision::data::parse_cifar(p, data, 2, 100);
}

/// STL-10 image files.
pub fn stl10(data: &[u8]) {
    let _ = ssl_vision::data::stl10_images(Path::new("train_X.bin"), data);
}

/// An image file of a `folder:` set (PNG or JPEG, by content), decoded
/// under the project's size limits.
pub fn image(data: &[u8]) {
    let _ = ssl_vision::data::decode_image(&as_file("img.png", data));
}

/// A WAV file.
pub fn wav(data: &[u8]) {
    if let Ok(w) = ssl_audio::read_wav(&as_file("clip.wav", data)) {
        let _ = w.resampled(16_000);
    }
}

/// An audio manifest (`path<TAB or ,>label` lines), whose paths point at
/// a valid clip beside it or at nothing.
pub fn manifest(data: &[u8]) {
    let clip = as_file("a.wav", &valid_wav());
    let m = clip.with_file_name("train.tsv");
    std::fs::write(&m, data).expect("writing the manifest");
    let _ = ssl_audio::data::manifest(&m, &mut Vec::new());
}

/// A labelled text set in JSONL.
pub fn labeled_jsonl(data: &[u8]) {
    let _ = ssl_text::corpus::read_labeled(&as_file("train.jsonl", data));
}

/// A labelled text set in CSV.
pub fn labeled_csv(data: &[u8]) {
    let _ = ssl_text::corpus::read_labeled(&as_file("train.csv", data));
}

/// A pretraining corpus: plain text by lines and by paragraphs, and
/// JSONL.
pub fn corpus(data: &[u8]) {
    for (name, paragraphs) in [("c.txt", false), ("c.txt", true), ("c.jsonl", false)] {
        let path = as_file(name, data);
        if let Ok(c) = ssl_text::corpus::Corpus::open(&path, paragraphs) {
            for doc in c.documents().take(10_000) {
                if doc.is_err() {
                    break;
                }
            }
        }
    }
}

/// A HF `tokenizer.json`, then an encode and decode with it.
pub fn tokenizer(data: &[u8]) {
    if let Ok(t) = ssl_text::tokenizer::TextTokenizer::load(&as_file("tokenizer.json", data)) {
        if let Ok(ids) = t.encode_with_special("the quick brown fox") {
            let _ = t.decode(&ids);
        }
    }
}

/// A HF BERT `config.json`.
pub fn bert_config(data: &[u8]) {
    let _ = ssl_text::hf::read_config(&as_file("config.json", data));
}

/// A checkpoint's `state.json` beside real weight files: the checksum
/// check, then loading.
pub fn checkpoint_state(data: &[u8]) {
    let dir = as_file("ckpt/state.json", data);
    let dir = dir.parent().expect("the checkpoint folder").to_path_buf();
    if let Ok(state) = ssl_core::checkpoint::verify(&dir) {
        let _ = state.step;
    }
}

/// A safetensors file loaded into a small model: names, shapes and
/// dtypes are checked before anything is copied.
pub fn safetensors(data: &[u8]) {
    let path = as_file("model.safetensors", data);
    let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _ = tch::nn::linear(vs.root() / "lin", 4, 2, Default::default());
    let _ = ssl_core::checkpoint::load_weights(&path, &mut vs);
}

/// A run's saved `config.json`, compared by `--resume` with the new one.
pub fn run_config(data: &[u8]) {
    let path = as_file("run/config.json", data);
    let new = serde_json::json!({"method": "simclr", "train": {"epochs": 2, "optimizer": {"lr": 0.1}}});
    let _ = ssl_cli::check_resume_in(path.parent().expect("the run folder"), &new, true);
}

/// A `--config FILE` as TOML and as JSON, read against the options every
/// training binary shares (plus a comma-separated list), then parsed by
/// clap as the binaries do.
pub fn config_file(data: &[u8]) {
    use clap::{Arg, ArgAction, Args};
    let cmd = ssl_cli::RunArgs::augment_args(clap::Command::new("train-fuzz").args_override_self(true)).arg(
        Arg::new("fractions")
            .long("fractions")
            .value_delimiter(',')
            .action(ArgAction::Append)
            .value_parser(clap::value_parser!(f64)),
    );
    for name in ["config.toml", "config.json"] {
        let path = as_file(name, data);
        let argv =
            vec!["train-fuzz".into(), "--config".into(), path.into_os_string(), "--seed".into(), "3".into()];
        if let Ok(argv) = ssl_cli::config_file::expand(&cmd, argv) {
            let _ = cmd.clone().try_get_matches_from(argv);
        }
    }
}

/// A valid 16-bit mono WAV of 0.1 s at 16 kHz.
pub fn valid_wav() -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cursor, spec).expect("a WAV writer");
        for i in 0..1600i32 {
            w.write_sample(((i * 37) % 2000 - 1000) as i16).expect("a sample");
        }
        w.finalize().expect("a finished WAV");
    }
    cursor.into_inner()
}

/// Valid inputs to start each target's corpus from, by target name.
pub fn seeds() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let mut idx_images = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2];
    idx_images.extend([1, 2, 3, 4, 5, 6, 7, 8]);
    let idx_labels = vec![0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3];
    let mut cifar = vec![3u8];
    cifar.extend((0..3 * 32 * 32).map(|i| (i % 251) as u8));
    let stl: Vec<u8> = (0..3 * 96 * 96).map(|i| (i % 241) as u8).collect();
    let mut png = Vec::new();
    image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(5, 3, |x, y| {
        image::Luma([(x * 40 + y) as u8])
    }))
    .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
    .expect("a PNG");
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(8, 8, |x, y| {
        image::Rgb([x as u8 * 30, y as u8 * 30, 99])
    }))
    .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
    .expect("a JPEG");
    let tokenizer = {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let corpus = dir.path().join("c.txt");
        std::fs::write(&corpus, "the quick brown fox\njumps over the lazy dog\n").expect("a corpus");
        let c = ssl_text::corpus::Corpus::open(&corpus, false).expect("the corpus");
        let t = ssl_text::tokenizer::TextTokenizer::train_wordpiece(&c, 60, 1).expect("a tokenizer");
        let path = dir.path().join("tokenizer.json");
        t.save(&path).expect("saving the tokenizer");
        std::fs::read(&path).expect("reading the tokenizer")
    };
    let safetensors = {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let _ = tch::nn::linear(vs.root() / "lin", 4, 2, Default::default());
        let path = dir.path().join("m.safetensors");
        ssl_core::checkpoint::save_weights(&vs, &path).expect("saving weights");
        std::fs::read(&path).expect("reading the weights")
    };
    let state = br#"{"epoch": 1, "step": 3, "config": {}, "trainer": {}, "files": {"model.safetensors": {"bytes": 10, "sha256": "00"}}}"#.to_vec();
    let bert = br#"{"vocab_size": 100, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 64}"#.to_vec();
    vec![
        ("idx", vec![idx_images, idx_labels]),
        ("cifar", vec![cifar]),
        ("stl10", vec![stl]),
        ("image", vec![png, jpeg]),
        ("wav", vec![valid_wav()]),
        ("manifest", vec![b"a.wav\tyes\n# comment\n\na.wav,no\n".to_vec()]),
        (
            "labeled_jsonl",
            vec![b"{\"text\": \"a b\", \"label\": \"x\"}\n{\"text\": \"c\", \"label\": \"y\"}\n".to_vec()],
        ),
        ("labeled_csv", vec![b"text,label\n\"a, b\",x\nc,y\n".to_vec()]),
        (
            "corpus",
            vec![b"one line\ntwo line\n\nthird paragraph\n".to_vec(), b"{\"text\": \"a doc\"}\n".to_vec()],
        ),
        ("tokenizer", vec![tokenizer]),
        ("bert_config", vec![bert]),
        ("checkpoint_state", vec![state]),
        ("safetensors", vec![safetensors]),
        (
            "run_config",
            vec![br#"{"method": "simclr", "train": {"epochs": 1, "optimizer": {"lr": 0.1}}}"#.to_vec()],
        ),
        (
            "config_file",
            vec![
                b"device = \"cpu\"\nseeds = 2\nfractions = [0.1, 1]\nsync-bn = true\n[set]\nout = 64\n".to_vec(),
                br#"{"args": {"seed": 1, "set": [{"key": "out", "value": 8}], "dist_timeout": 60}, "train": {}}"#.to_vec(),
            ],
        ),
    ]
}
