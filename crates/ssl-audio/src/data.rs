//! Audio data sets: a folder in the Speech Commands layout
//! (`DIR/train/<class>/*.wav`, `DIR/test/<class>/*.wav`; labels from the
//! sub-folder names), manifest files (`path<TAB or ,>label` per line, paths
//! relative to the manifest), and unlabelled WAV files found recursively.
//! Listing decodes nothing; [`load_clips`] decodes and resamples in
//! parallel. Every error names the file (and the manifest line).

use crate::{read_wav, Error, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Labelled clips of one split.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClipSet {
    /// WAV files.
    pub files: Vec<PathBuf>,
    /// Class index per file.
    pub labels: Vec<i64>,
}

/// A labelled data set with train and test splits.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioData {
    /// Class names, indexed by label.
    pub classes: Vec<String>,
    /// Training clips.
    pub train: ClipSet,
    /// Test clips.
    pub test: ClipSet,
}

impl AudioData {
    /// Holds out `fraction` of each class's training clips (seeded, the
    /// same rule as `train-vision --val-fraction`) as the evaluation split,
    /// for choosing recipes without the test split, which is dropped.
    pub fn validation_split(self, fraction: f64, seed: u64) -> Result<AudioData> {
        let held = ssl_core::eval::validation_mask(&self.train.labels, fraction, seed, &self.classes)?;
        let (classes, train, val) = self.hold_out(&held);
        if val.files.is_empty() || train.files.is_empty() {
            return Err(Error::Config(format!(
                "a validation fraction of {fraction} leaves {} training and {} validation clips",
                train.files.len(),
                val.files.len()
            )));
        }
        Ok(AudioData { classes, train, test: val })
    }

    /// Holds out the training clips whose file name contains one of
    /// `patterns` (speaker IDs, say: `_f3_`) as the evaluation split, so
    /// that recipes are chosen on voices the training never hears, as the
    /// test split's are; the test split is dropped. Every class must keep
    /// clips on both sides.
    pub fn validation_by_name(self, patterns: &[String]) -> Result<AudioData> {
        if patterns.is_empty() || patterns.iter().any(|p| p.is_empty()) {
            return Err(Error::Config("--val-speakers needs non-empty name patterns".into()));
        }
        let held: Vec<bool> = self
            .train
            .files
            .iter()
            .map(|f| {
                let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                patterns.iter().any(|p| name.contains(p.as_str()))
            })
            .collect();
        let (classes, train, val) = self.hold_out(&held);
        for (k, class) in classes.iter().enumerate() {
            let count = |s: &ClipSet| s.labels.iter().filter(|&&l| l == k as i64).count();
            let (t, v) = (count(&train), count(&val));
            if t == 0 || v == 0 {
                return Err(Error::Config(format!(
                    "--val-speakers {}: class `{class}` keeps {t} training and {v} validation clips \
                     (each needs some on both sides)",
                    patterns.join(",")
                )));
            }
        }
        Ok(AudioData { classes, train, test: val })
    }

    /// The classes, and the training clips split by `held` (one flag per
    /// clip): those not held, and those held.
    fn hold_out(self, held: &[bool]) -> (Vec<String>, ClipSet, ClipSet) {
        let (mut train, mut val) = (ClipSet::default(), ClipSet::default());
        for ((file, label), &h) in self.train.files.into_iter().zip(self.train.labels).zip(held) {
            let set = if h { &mut val } else { &mut train };
            set.files.push(file);
            set.labels.push(label);
        }
        (self.classes, train, val)
    }
}

fn wav_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Wav { path: path.to_path_buf(), msg: msg.into() }
}

fn sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| wav_err(dir, format!("cannot list the folder: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

/// A folder walk's error: a symbolic-link loop names the link and the
/// folder it leads back to.
fn walk_err(root: &Path, e: walkdir::Error) -> Error {
    let at = e.path().unwrap_or(root).to_path_buf();
    match e.loop_ancestor() {
        Some(a) => wav_err(&at, format!("a symbolic link loops back to {}", a.display())),
        None => wav_err(&at, format!("cannot list: {e}")),
    }
}

fn is_wav(p: &Path) -> bool {
    p.is_file() && p.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("wav"))
}

/// A Speech Commands-style folder; the classes are the sub-folders of
/// `train`, and `test` must have the same ones (each with a WAV file).
pub fn folder(dir: &Path) -> Result<AudioData> {
    let train_dir = dir.join("train");
    if !train_dir.is_dir() {
        return Err(wav_err(&train_dir, "no such folder (expected DIR/train/<class>/*.wav)"));
    }
    let class_dirs = |d: &Path| -> Result<Vec<String>> {
        Ok(sorted(d)?
            .into_iter()
            .filter(|p| p.is_dir())
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    };
    let classes = class_dirs(&train_dir)?;
    if classes.is_empty() {
        return Err(wav_err(&train_dir, "no class folders"));
    }
    // A test class that training lacks would otherwise be left out unread.
    let test_dir = dir.join("test");
    if test_dir.is_dir() {
        if let Some(extra) =
            class_dirs(&test_dir)?.into_iter().find(|c| !classes.contains(c) && !c.starts_with('.'))
        {
            return Err(wav_err(
                &test_dir.join(&extra),
                format!("class `{extra}` is in the test split but not in {}", train_dir.display()),
            ));
        }
    }
    let split = |name: &str| -> Result<ClipSet> {
        let mut set = ClipSet::default();
        for (label, class) in classes.iter().enumerate() {
            let cdir = dir.join(name).join(class);
            if !cdir.is_dir() {
                return Err(wav_err(&cdir, format!("class `{class}` is missing from the {name} split")));
            }
            let files: Vec<PathBuf> = sorted(&cdir)?.into_iter().filter(|p| is_wav(p)).collect();
            if files.is_empty() {
                return Err(wav_err(&cdir, "class folder has no .wav file"));
            }
            set.labels.extend(std::iter::repeat_n(label as i64, files.len()));
            set.files.extend(files);
        }
        Ok(set)
    };
    Ok(AudioData { train: split("train")?, test: split("test")?, classes })
}

/// Whether [`folder`] reads this file of a class folder: a `.wav`.
pub fn reads_file(p: &Path) -> bool {
    is_wav(p)
}

/// The bundled keyword set in the repository (`datasets/keywords`; see
/// [`crate::synth`]), where this crate was built: the source that
/// [`write_keywords`] embeds.
pub fn bundled_keywords_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/keywords")
}

/// `datasets/keywords`, compiled into the binary (5.3 MB) so that a copied
/// binary needs no source tree.
static KEYWORDS: include_dir::Dir<'static> =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/../../datasets/keywords");

/// Writes the bundled keyword set into `dir/keywords/` (a file already
/// there with the right size is kept; others are written atomically, see
/// [`ssl_core::metrics::write_atomic`]); returns that folder. With several
/// ranks, one writes and the others wait (the files' temporary names are
/// shared).
pub fn write_keywords(dir: &Path) -> Result<PathBuf> {
    let out = dir.join("keywords");
    let mut stack = vec![&KEYWORDS];
    while let Some(d) = stack.pop() {
        stack.extend(d.dirs());
        for f in d.files() {
            let p = out.join(f.path());
            if std::fs::metadata(&p).is_ok_and(|m| m.len() == f.contents().len() as u64) {
                continue;
            }
            let parent = p.parent().unwrap_or(&out);
            std::fs::create_dir_all(parent).map_err(|e| wav_err(parent, format!("cannot create: {e}")))?;
            ssl_core::metrics::write_atomic(&p, f.contents())?;
        }
    }
    Ok(out)
}

/// The bundled keyword set as a data set (10 words; 400 training clips and
/// 240 test clips by unseen voices), written into `dir/keywords/` first
/// (see [`write_keywords`]).
pub fn bundled_keywords(dir: &Path) -> Result<AudioData> {
    folder(&write_keywords(dir)?)
}

/// The data set a `--data` spec names, and its name in reports: `bundled`
/// (the keywords, to be put in background noise: `keywords-noisy`; see
/// [`decode_spec`]), `bundled-clean`, `folder:DIR` or
/// `manifest:TRAIN,TEST`. The bundled set is read where [`write_keywords`]
/// put it, under `bundled_dir`.
pub fn load_spec(spec: &str, bundled_dir: &Path) -> Result<(AudioData, String)> {
    let keywords = || folder(&bundled_dir.join("keywords"));
    match spec {
        "bundled" => return Ok((keywords()?, "keywords-noisy".into())),
        "bundled-clean" => return Ok((keywords()?, "keywords".into())),
        _ => {}
    }
    if let Some(dir) = spec.strip_prefix("folder:") {
        return Ok((folder(dir.as_ref())?, spec.into()));
    }
    if let Some(files) = spec.strip_prefix("manifest:") {
        let Some((train, test)) = files.split_once(',') else {
            return Err(Error::Config(format!(
                "--data manifest:TRAIN,TEST needs two manifest files, got `{files}`"
            )));
        };
        return Ok((manifests(train.as_ref(), test.as_ref())?, spec.into()));
    }
    Err(Error::Config(format!(
        "unknown --data `{spec}` (expected bundled, bundled-clean, folder:DIR or manifest:TRAIN,TEST)"
    )))
}

/// The clips of one split of a `--data` spec at `rate` Hz: `bundled`'s are
/// one-second windows in background noise, fixed per clip (seed 1 for the
/// training split, 2 for the test split), as `train-audio` trains on them.
pub fn decode_spec(spec: &str, set: &ClipSet, rate: u32, test_split: bool) -> Result<Vec<Vec<f32>>> {
    let clips = load_clips(&set.files, rate)?;
    Ok(if spec == "bundled" {
        with_background_noise(&clips, rate as usize, (0.0, 20.0), if test_split { 2 } else { 1 })
    } else {
        clips
    })
}

/// Each clip centred in a window of `len` samples (see
/// [`ssl_core::signal::centred`]) with white Gaussian noise over the whole
/// window at a signal-to-noise ratio drawn uniformly from `snr_db` (the
/// power ratio over the window), from a generator seeded by `seed` and the
/// clip's index: the same clips always get the same noise. The bundled set
/// is used this way (`--data bundled`: 0–20 dB), as keyword spotting meets
/// words in background noise.
pub fn with_background_noise(clips: &[Vec<f32>], len: usize, snr_db: (f64, f64), seed: u64) -> Vec<Vec<f32>> {
    use rand::{Rng, SeedableRng};
    clips
        .par_iter()
        .enumerate()
        .map(|(i, c)| {
            let mut rng =
                rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut y = ssl_core::signal::centred(c, len);
            let snr = rng.gen_range(snr_db.0..=snr_db.1);
            crate::augment::add_noise(&mut y, snr, rng.gen());
            y
        })
        .collect()
}

/// Reads a manifest: one `path<TAB or ,>label` per line (blank lines and
/// lines starting with `#` skipped), paths relative to the manifest's
/// folder. Labels are indexed in `classes`, which grows with new names.
/// A missing file is an error naming the manifest, the line and the path.
pub fn manifest(path: &Path, classes: &mut Vec<String>) -> Result<ClipSet> {
    let text =
        std::fs::read_to_string(path).map_err(|e| wav_err(path, format!("cannot read the manifest: {e}")))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut set = ClipSet::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |msg: String| wav_err(path, format!("line {}: {msg}", i + 1));
        let (file, label) = line
            .split_once('\t')
            .or_else(|| line.rsplit_once(','))
            .ok_or_else(|| at("expected `path<TAB or ,>label`".into()))?;
        let (file, label) = (file.trim(), label.trim());
        if label.is_empty() {
            return Err(at(format!("no label for `{file}`")));
        }
        let p = base.join(file);
        if !p.is_file() {
            return Err(at(format!("`{}` does not exist", p.display())));
        }
        let idx = match classes.iter().position(|c| c == label) {
            Some(k) => k,
            None => {
                classes.push(label.to_string());
                classes.len() - 1
            }
        };
        set.files.push(p);
        set.labels.push(idx as i64);
    }
    if set.files.is_empty() {
        return Err(wav_err(path, "the manifest lists no clips"));
    }
    Ok(set)
}

/// Every `.wav` file under `dir`, recursively, in name order. Symbolic
/// links are followed; a link back into a folder above it is an error
/// naming both, and a file reached twice (through two links) counts once.
pub fn unlabeled(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Err(wav_err(dir, "no such folder"));
    }
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(true).sort_by_file_name() {
        let entry = entry.map_err(|e| walk_err(dir, e))?;
        let p = entry.path();
        if entry.file_type().is_file() && is_wav(p) {
            let real = std::fs::canonicalize(p).map_err(|e| wav_err(p, format!("cannot resolve: {e}")))?;
            if seen.insert(real) {
                out.push(p.to_path_buf());
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(wav_err(dir, "no .wav file in this folder or below"));
    }
    Ok(out)
}

/// Decodes and resamples clips to `rate` Hz in parallel (rayon); the first
/// bad file's error is returned, naming it.
pub fn load_clips(files: &[PathBuf], rate: u32) -> Result<Vec<Vec<f32>>> {
    files
        .par_iter()
        .map(|f| Ok(read_wav(f)?.resampled(rate).map_err(|e| wav_err(f, e.to_string()))?.samples))
        .collect()
}

/// A data set from a training and a test manifest (see [`manifest`]);
/// a label that only the test manifest has is an error naming it, since
/// no encoder could be trained or probed for it.
pub fn manifests(train: &Path, test: &Path) -> Result<AudioData> {
    let mut classes = Vec::new();
    let train_set = manifest(train, &mut classes)?;
    let known = classes.len();
    let test_set = manifest(test, &mut classes)?;
    if classes.len() > known {
        return Err(wav_err(
            test,
            format!(
                "label(s) {} appear in the test manifest but not in the training manifest {}",
                classes[known..].iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "),
                train.display()
            ),
        ));
    }
    Ok(AudioData { classes, train: train_set, test: test_set })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validation_split_is_carved_per_class_from_training_clips() {
        let files = |n: usize| (0..n).map(|i| PathBuf::from(format!("{i}.wav"))).collect::<Vec<_>>();
        let d = AudioData {
            classes: vec!["a".into(), "b".into()],
            train: ClipSet { files: files(20), labels: (0..20).map(|i| i % 2).collect() },
            test: ClipSet { files: vec!["t.wav".into()], labels: vec![0] },
        };
        let v = d.clone().validation_split(0.2, 3).unwrap();
        assert_eq!((v.train.files.len(), v.test.files.len()), (16, 4));
        assert_eq!(v.test.labels.iter().filter(|&&l| l == 0).count(), 2, "two of each class");
        assert!(v.test.files.iter().all(|f| !v.train.files.contains(f)), "disjoint");
        assert!(!v.test.files.contains(&PathBuf::from("t.wav")), "the test split is not used");
        assert_eq!(d.clone().validation_split(0.2, 3).unwrap(), v, "fixed by the seed");
        assert!(d.clone().validation_split(1.0, 3).unwrap_err().to_string().contains("between 0 and 1"));
        assert!(d.validation_split(0.01, 3).unwrap_err().to_string().contains("leaves"));
    }

    fn wav(path: &Path, rate: u32, n: usize) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..n {
            w.write_sample(((i as f32 * 0.1).sin() * 8000.0) as i16).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn background_noise_is_fixed_per_clip_and_hits_the_snr() {
        let clips: Vec<Vec<f32>> =
            (0..3).map(|k| (0..800).map(|i| ((i * (k + 1)) as f32 * 0.1).sin()).collect()).collect();
        let a = with_background_noise(&clips, 1_600, (10.0, 10.0), 5);
        assert_eq!(a, with_background_noise(&clips, 1_600, (10.0, 10.0), 5));
        assert_ne!(a, with_background_noise(&clips, 1_600, (10.0, 10.0), 6));
        for (x, y) in clips.iter().zip(&a) {
            assert_eq!(y.len(), 1_600);
            let clean = ssl_core::signal::centred(x, 1_600);
            let p = |v: &[f32]| v.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
            let noise: Vec<f32> = y.iter().zip(&clean).map(|(a, b)| a - b).collect();
            let snr = 10.0 * (p(&clean) / p(&noise)).log10();
            assert!((snr - 10.0).abs() < 0.01, "{snr}");
            // Noise fills the padding too.
            assert!(y[..400].iter().any(|v| v.abs() > 1e-3));
        }
    }

    #[test]
    fn folders_manifests_and_unlabeled_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (split, class, name) in
            [("train", "yes", "a"), ("train", "no", "b"), ("test", "yes", "c"), ("test", "no", "d")]
        {
            wav(&d.join(split).join(class).join(format!("{name}.wav")), 8000, 800);
        }
        // Files it does not read are listed for the caller to report.
        std::fs::write(d.join("train/yes/notes.txt"), "x").unwrap();
        std::fs::write(d.join("test/no/e.flac"), "x").unwrap();
        std::fs::write(d.join("test/no/.DS_Store"), "x").unwrap();
        std::fs::write(d.join("train/README"), "x").unwrap();
        let data = folder(d).unwrap();
        assert_eq!(data.classes, ["no", "yes"]);
        assert_eq!(data.train.labels, [0, 1]);
        let unread = ssl_cli::unread_files(d, reads_file);
        let names: Vec<_> =
            unread.iter().map(|p| p.strip_prefix(d).unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["train/README", "train/yes/notes.txt", "test/no/e.flac"]);
        let clips = load_clips(&data.train.files, 16_000).unwrap();
        assert_eq!(clips[0].len(), 1600, "resampled from 8 kHz");

        std::fs::write(d.join("m.tsv"), "# clips\ntrain/yes/a.wav\tyes\ntest/no/d.wav,no\n\n").unwrap();
        let mut classes = Vec::new();
        let m = manifest(&d.join("m.tsv"), &mut classes).unwrap();
        assert_eq!((classes.len(), m.labels.clone()), (2, vec![0, 1]));
        std::fs::write(d.join("bad.tsv"), "train/yes/a.wav\tyes\ntrain/yes/zzz.wav\tyes\n").unwrap();
        let e = manifest(&d.join("bad.tsv"), &mut classes).unwrap_err().to_string();
        assert!(
            e.contains("bad.tsv")
                && e.contains("line 2")
                && e.contains("zzz.wav")
                && e.contains("does not exist"),
            "{e}"
        );

        wav(&d.join("extra/deep/x.wav"), 16_000, 100);
        let u = unlabeled(&d.join("extra")).unwrap();
        assert_eq!(u.len(), 1);
        assert!(unlabeled(&d.join("train/yes/a.wav")).is_err());
    }

    #[test]
    fn symlink_loops_rate_zero_and_test_only_labels_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        wav(&d.join("u/a/x.wav"), 16_000, 100);
        // A second link to the same folder: its file counts once.
        std::os::unix::fs::symlink(d.join("u/a"), d.join("u/also")).unwrap();
        assert_eq!(unlabeled(&d.join("u")).unwrap().len(), 1, "one file, reached twice");
        // A link back up: an error naming the link, not 41 copies.
        std::os::unix::fs::symlink(d.join("u"), d.join("u/a/up")).unwrap();
        let e = unlabeled(&d.join("u")).unwrap_err().to_string();
        assert!(e.contains("up") && e.contains("loops back to"), "{e}");

        // A header declaring 0 Hz (bytes 24..28 of a canonical WAV; the
        // byte rate after it too, which hound checks against it).
        let zero = d.join("zero.wav");
        wav(&zero, 16_000, 100);
        let mut bytes = std::fs::read(&zero).unwrap();
        bytes[24..32].copy_from_slice(&[0; 8]);
        std::fs::write(&zero, bytes).unwrap();
        let e = load_clips(&[zero], 16_000).unwrap_err().to_string();
        assert!(e.contains("zero.wav") && e.contains("sample rate of 0"), "{e}");

        wav(&d.join("c/a.wav"), 16_000, 100);
        std::fs::write(d.join("c/train.tsv"), "a.wav\tyes\n").unwrap();
        std::fs::write(d.join("c/test.tsv"), "a.wav\tyes\na.wav\tmaybe\n").unwrap();
        let e = manifests(&d.join("c/train.tsv"), &d.join("c/test.tsv")).unwrap_err().to_string();
        assert!(e.contains("test.tsv") && e.contains("`maybe`") && e.contains("not in the training"), "{e}");
        std::fs::write(d.join("c/test.tsv"), "a.wav\tyes\n").unwrap();
        assert_eq!(manifests(&d.join("c/train.tsv"), &d.join("c/test.tsv")).unwrap().classes, ["yes"]);
    }

    #[test]
    fn empty_classes_and_bad_clips_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        wav(&d.join("train/yes/a.wav"), 16_000, 100);
        std::fs::create_dir_all(d.join("test/yes")).unwrap();
        let e = folder(d).unwrap_err().to_string();
        assert!(e.contains("test/yes") && e.contains("no .wav file"), "{e}");
        std::fs::write(d.join("test/yes/broken.wav"), b"RIFF....WAVEjunk").unwrap();
        let data = folder(d).unwrap();
        let e = load_clips(&data.test.files, 16_000).unwrap_err().to_string();
        assert!(e.contains("broken.wav"), "{e}");
    }
}
