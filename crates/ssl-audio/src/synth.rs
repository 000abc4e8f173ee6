//! Synthesised keyword clips, from one of two engines (and Festival's voices
//! where a set lists them, see [`KeywordSpec::voices`]):
//!
//! - [`Engine::Espeak`]: Speech Commands' ten command words spoken by
//!   Debian's `espeak-ng` (formant synthesis, no network, no recordings)
//!   with several accents, voice variants, speeds and pitches. This is how
//!   the bundled set `datasets/keywords` is made (`cargo xtask
//!   gen-keywords`); the same command writes a larger or different set
//!   anywhere.
//! - [`Engine::Flite`]: the ten digits "zero" to "nine" spoken by Debian's
//!   `flite` (CMU Flite 2.2: diphone and clustergen voices built from
//!   recordings of four speakers), another engine, other words and other
//!   voices than the bundled set's. `cargo xtask gen-keywords --engine
//!   flite` writes it as a second set for checking that an audio recipe
//!   carries over to data it was not tuned on; each clip is put in a
//!   one-second window of white noise (0-20 dB SNR, as `--data bundled`
//!   does at load time), so that `--data folder:DIR` reads what the bundled
//!   set's training sees.
//!
//! Train and test use **disjoint voices**, so the test split asks whether
//! features carry the word across speakers, not whether they remember a
//! voice. Each clip is resampled to 16 kHz with [`crate::resample`], its
//! leading and trailing silence trimmed, its peak scaled to 0.9, and it is
//! stored as 8-bit PCM to keep the set small (its quantisation noise sits
//! about 48 dB below the peak).

use crate::{read_wav, Error, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Speech Commands' ten command words.
pub const WORDS: [&str; 10] = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"];

/// espeak-ng's English accents used for both splits.
pub const ACCENTS: [&str; 7] =
    ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029"];

/// Voice variants (espeak-ng's `voices/!v`) of the training split.
pub const TRAIN_VARIANTS: [&str; 10] = ["m1", "m2", "m3", "m4", "m5", "f1", "f2", "f3", "klatt", "klatt2"];

/// Voice variants of the test split; none is in [`TRAIN_VARIANTS`].
pub const TEST_VARIANTS: [&str; 5] = ["m6", "m7", "f4", "f5", "klatt3"];

/// The digits [`Engine::Flite`] speaks.
pub const DIGITS: [&str; 10] =
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];

/// flite's voices of the training split with the range of their mean
/// pitch in Hz (`int_f0_target_mean`): awb (Scottish English, male) and kal
/// (American English, male; its 16 kHz diphone voice and its 8 kHz one).
pub const FLITE_TRAIN_VOICES: [(&str, (u32, u32)); 3] =
    [("awb", (85, 150)), ("kal16", (85, 150)), ("kal", (85, 150))];

/// flite's voices of the test split, speakers none of the training voices
/// share: rms (American English, male) and slt (American English, female).
/// flite's `awb_time` speaks only times and is not used.
pub const FLITE_TEST_VOICES: [(&str, (u32, u32)); 2] = [("rms", (85, 150)), ("slt", (150, 240))];

/// The synthesiser and with it the words and voices (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// `espeak-ng`: [`WORDS`], [`TRAIN_VARIANTS`] / [`TEST_VARIANTS`]; the
    /// plan's speed is words per minute (`-s`), its pitch 0-99 (`-p`).
    Espeak,
    /// `flite`: [`DIGITS`], [`FLITE_TRAIN_VOICES`] / [`FLITE_TEST_VOICES`];
    /// the plan's speed is the duration stretch in percent (100: the
    /// voice's own pace), its pitch the mean pitch in Hz.
    Flite,
    /// Festival's `text2wave`, for listed voices only (`festival:NAME`,
    /// e.g. `festival:ked_diphone` from Debian's `festvox-kdlpc16k`); speed
    /// and pitch as for flite ([`FESTIVAL_SPEED`], [`FESTIVAL_PITCH`]).
    Festival,
}

/// Duration stretch in percent drawn for a Festival voice.
pub const FESTIVAL_SPEED: (u32, u32) = (80, 125);

/// Mean pitch in Hz drawn for a Festival voice (its intonation model's
/// `target_f0_mean`; Debian's English voices are male).
pub const FESTIVAL_PITCH: (u32, u32) = (85, 150);

/// The engine that speaks a listed voice, and the voice's own name: a
/// `festival:` prefix names a Festival voice, any other voice belongs to
/// `engine`.
pub fn voice_engine(voice: &str, engine: Engine) -> (Engine, &str) {
    match voice.strip_prefix("festival:") {
        Some(name) => (Engine::Festival, name),
        None => (engine, voice),
    }
}

impl std::str::FromStr for Engine {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "espeak" | "espeak-ng" => Ok(Self::Espeak),
            "flite" => Ok(Self::Flite),
            o => Err(Error::Config(format!(
                "unknown synthesis engine `{o}` (expected espeak or flite; Festival's voices are listed as \
                 festival:NAME)"
            ))),
        }
    }
}

impl Engine {
    /// The program that speaks.
    pub fn program(self) -> &'static str {
        match self {
            Self::Espeak => "espeak-ng",
            Self::Flite => "flite",
            Self::Festival => "text2wave",
        }
    }

    /// The program's name and its version line, with how to install it
    /// when it is missing.
    pub fn version(self) -> Result<String> {
        let (program, package) = match self {
            Self::Festival => ("festival", "festival festvox-kdlpc16k festvox-kallpc16k"),
            _ => (self.program(), self.program()),
        };
        let out = Command::new(program).arg("--version").output().map_err(|e| {
            Error::Config(format!(
                "cannot run {program} ({e}); install it (Debian/Ubuntu: `apt-get install {package}`) \
                 or use the bundled datasets/keywords"
            ))
        })?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("version") || l.contains("eSpeak") || l.contains("Festival"))
            .unwrap_or("")
            .trim();
        Ok(format!("{program} ({line})"))
    }
}

/// What to synthesise.
#[derive(Clone, Debug)]
pub struct KeywordSpec {
    /// The synthesiser, and with it the words and voices.
    pub engine: Engine,
    /// Clips per word in the training split.
    pub train_per_word: usize,
    /// Clips per word in the test split.
    pub test_per_word: usize,
    /// Output sample rate.
    pub sample_rate: u32,
    /// Speed range: espeak-ng's words per minute (`-s`), or flite's
    /// duration stretch in percent.
    pub speed: (u32, u32),
    /// Pitch range of espeak-ng (`-p`, 0–99); flite's voices have their own
    /// ([`FLITE_TRAIN_VOICES`]).
    pub pitch: (u32, u32),
    /// Each clip centred in a one-second window of white noise at a
    /// signal-to-noise ratio drawn from this range in dB, or `None` to keep
    /// the trimmed clip.
    pub noise_snr_db: Option<(f64, f64)>,
    /// Seed of the voice, speed, pitch and noise draws.
    pub seed: u64,
    /// Words to speak instead of the engine's own ([`WORDS`] or
    /// [`DIGITS`]); each is also a class folder's name.
    pub words: Option<Vec<String>>,
    /// Voices of the training and of the test split, instead of a random
    /// accent from [`ACCENTS`] with [`TRAIN_VARIANTS`] / [`TEST_VARIANTS`]:
    /// espeak-ng's `accent+variant`, or `festival:NAME` for a Festival
    /// voice ([`voice_engine`]). Each split cycles through its list; the
    /// two lists share no voice. Not for flite.
    pub voices: Option<(Vec<String>, Vec<String>)>,
}

impl Default for KeywordSpec {
    /// The bundled set: 40 training and 24 test clips per word at 16 kHz.
    fn default() -> Self {
        Self {
            train_per_word: 40,
            test_per_word: 24,
            sample_rate: 16_000,
            speed: (120, 220),
            pitch: (20, 80),
            noise_snr_db: None,
            seed: 0,
            engine: Engine::Espeak,
            words: None,
            voices: None,
        }
    }
}

impl KeywordSpec {
    /// The second set: flite's digits, as many clips as the bundled set,
    /// duration stretched by 0.8-1.25, in white noise at 0-20 dB SNR.
    pub fn flite_digits() -> Self {
        Self { engine: Engine::Flite, speed: (80, 125), noise_snr_db: Some((0.0, 20.0)), ..Self::default() }
    }

    /// The words this spec speaks: [`Self::words`] or the engine's own.
    pub fn word_list(&self) -> Vec<String> {
        match (&self.words, self.engine) {
            (Some(w), _) => w.clone(),
            (None, Engine::Espeak | Engine::Festival) => WORDS.map(String::from).to_vec(),
            (None, Engine::Flite) => DIGITS.map(String::from).to_vec(),
        }
    }

    /// Whether a listed voice is Festival's (`festival:NAME`).
    pub fn uses_festival(&self) -> bool {
        self.voices.as_ref().is_some_and(|(train, test)| {
            train.iter().chain(test).any(|v| voice_engine(v, self.engine).0 == Engine::Festival)
        })
    }

    /// Checks what [`generate`] needs beyond the types: at least two
    /// distinct words that are plain folder names, and listed voices
    /// (espeak-ng's or Festival's) only with the espeak-ng engine, none of
    /// them shared by the two splits.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        let words = self.word_list();
        if words.len() < 2 {
            return bad(format!("a keyword set needs at least two words, got {words:?}"));
        }
        for (i, w) in words.iter().enumerate() {
            if w.is_empty() || !w.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '\'') {
                return bad(format!("word {w:?} is not a plain word (letters, digits, - and ' only)"));
            }
            if words[..i].contains(w) {
                return bad(format!("word {w:?} is listed twice"));
            }
        }
        if let Some((train, test)) = &self.voices {
            if self.engine != Engine::Espeak {
                return bad("explicit voices are for espeak-ng and Festival; flite's voices are fixed".into());
            }
            if train.is_empty() || test.is_empty() {
                return bad("both splits need at least one voice".into());
            }
            if let Some(v) = train.iter().find(|v| test.contains(v)) {
                return bad(format!("voice {v} is in both splits; the test split's voices must be unseen"));
            }
            let odd = |v: &str| {
                let name = voice_engine(v, self.engine).1;
                name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "+-_".contains(c))
            };
            if let Some(v) = train.iter().chain(test).find(|v| odd(v)) {
                return bad(format!(
                    "voice {v:?} is not an espeak-ng voice (accent+variant) or festival:NAME (letters, \
                     digits, + - _)"
                ));
            }
        }
        Ok(())
    }
}

/// One clip to make: the voice (espeak-ng's `accent+variant`, or flite's
/// voice name), speed, pitch, word and where it goes.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipPlan {
    /// `train` or `test`.
    pub split: &'static str,
    /// The word, also the class folder.
    pub word: String,
    /// espeak-ng's `accent+variant`, or flite's voice.
    pub voice: String,
    /// espeak-ng `-s`, or flite's duration stretch in percent.
    pub speed: u32,
    /// espeak-ng `-p`, or flite's mean pitch in Hz.
    pub pitch: u32,
    /// File name inside `split/word/`.
    pub file: String,
}

/// The clips `spec` asks for, in a fixed order (deterministic in the seed).
pub fn plan(spec: &KeywordSpec) -> Vec<ClipPlan> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut out = Vec::new();
    let words = spec.word_list();
    if spec.engine == Engine::Flite {
        for (split, voices, n) in [
            ("train", &FLITE_TRAIN_VOICES[..], spec.train_per_word),
            ("test", &FLITE_TEST_VOICES[..], spec.test_per_word),
        ] {
            for word in &words {
                for i in 0..n {
                    let (voice, f0) = voices[i % voices.len()];
                    let speed = rng.gen_range(spec.speed.0..=spec.speed.1);
                    let pitch = rng.gen_range(f0.0..=f0.1);
                    let file = format!("{word}_{i:03}_{voice}_d{speed}_f{pitch}.wav");
                    out.push(ClipPlan { split, word: word.clone(), voice: voice.into(), speed, pitch, file });
                }
            }
        }
        return out;
    }
    for (split, variants, n) in [
        ("train", &TRAIN_VARIANTS[..], spec.train_per_word),
        ("test", &TEST_VARIANTS[..], spec.test_per_word),
    ] {
        let listed = spec.voices.as_ref().map(|(train, test)| if split == "train" { train } else { test });
        for word in &words {
            for i in 0..n {
                // Cycle through the variants (or the listed voices) so each
                // is used evenly.
                let voice = match listed {
                    Some(voices) => voices[i % voices.len()].clone(),
                    None => {
                        let accent = ACCENTS.choose(&mut rng).expect("accents");
                        format!("{accent}+{}", variants[i % variants.len()])
                    }
                };
                let (speed, pitch) = match voice_engine(&voice, spec.engine).0 {
                    Engine::Festival => (FESTIVAL_SPEED, FESTIVAL_PITCH),
                    _ => (spec.speed, spec.pitch),
                };
                let speed = rng.gen_range(speed.0..=speed.1);
                let pitch = rng.gen_range(pitch.0..=pitch.1);
                let file = format!("{word}_{i:03}_{}_s{speed}_p{pitch}.wav", voice.replace(['+', ':'], "_"));
                out.push(ClipPlan { split, word: word.clone(), voice, speed, pitch, file });
            }
        }
    }
    out
}

/// Finds espeak-ng, with how to install it when it is missing.
pub fn espeak_version() -> Result<String> {
    Engine::Espeak.version()
}

/// Speaks `word` with `engine` into a waveform at `rate` Hz, trimmed and
/// peak-normalised (see the module docs); `speed` and `pitch` as in
/// [`ClipPlan`].
pub fn speak(engine: Engine, word: &str, voice: &str, speed: u32, pitch: u32, rate: u32) -> Result<Vec<f32>> {
    let (engine, voice) = voice_engine(voice, engine);
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = std::env::temp_dir().join(format!("ssl-audio-synth-{}-{n}.wav", std::process::id()));
    let program = engine.program();
    let mut cmd = Command::new(program);
    match engine {
        Engine::Espeak => {
            cmd.args(["-v", voice, "-s", &speed.to_string(), "-p", &pitch.to_string(), "-w"])
                .arg(&tmp)
                .arg(word);
        }
        Engine::Flite => {
            cmd.args(["-voice", voice, "--setf"])
                .arg(format!("duration_stretch={:.2}", f64::from(speed) / 100.0))
                .arg("--setf")
                .arg(format!("int_f0_target_mean={pitch}"))
                .args(["-t", word, "-o"])
                .arg(&tmp);
        }
        Engine::Festival => {
            // text2wave reads the text from a file: a fresh one per clip.
            let text = tmp.with_extension("txt");
            std::fs::write(&text, word)
                .map_err(|e| Error::Config(format!("cannot write {}: {e}", text.display())))?;
            cmd.arg("-eval")
                .arg(format!("(voice_{voice})"))
                .arg("-eval")
                .arg(format!("(Parameter.set 'Duration_Stretch {:.2})", f64::from(speed) / 100.0))
                .arg("-eval")
                .arg(format!("(set! int_lr_params (cons (list 'target_f0_mean {pitch}) int_lr_params))"))
                .arg("-o")
                .arg(&tmp)
                .arg(&text);
        }
    }
    let status = cmd.status().map_err(|e| Error::Config(format!("cannot run {program}: {e}")));
    if engine == Engine::Festival {
        let _ = std::fs::remove_file(tmp.with_extension("txt"));
    }
    let status = status?;
    if !status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Config(format!("{program} voice {voice} failed ({status}) on {word:?}")));
    }
    if !tmp.is_file() {
        // text2wave exits with 0 on an unknown voice and writes nothing.
        return Err(Error::Config(format!(
            "{program} voice {voice} wrote no audio for {word:?} (is it installed?)"
        )));
    }
    let wave = read_wav(&tmp);
    let _ = std::fs::remove_file(&tmp);
    let wave = wave?.resampled(rate)?;
    let trimmed = trim_silence(&wave.samples, rate as usize / 100, 40.0);
    if trimmed.is_empty() {
        return Err(Error::Config(format!("{program} voice {voice} produced silence for {word:?}")));
    }
    let peak = trimmed.iter().fold(0f32, |m, v| m.max(v.abs()));
    Ok(trimmed.iter().map(|v| v * 0.9 / peak).collect())
}

/// Removes leading and trailing windows of `win` samples whose RMS is more
/// than `below_db` under the loudest window's, keeping one window of margin
/// on each side.
pub fn trim_silence(x: &[f32], win: usize, below_db: f64) -> &[f32] {
    let win = win.max(1);
    let rms: Vec<f64> = x
        .chunks(win)
        .map(|c| (c.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / c.len() as f64).sqrt())
        .collect();
    let loudest = rms.iter().copied().fold(0f64, f64::max);
    if loudest == 0.0 {
        return &[];
    }
    let floor = loudest * 10f64.powf(-below_db / 20.0);
    let first = rms.iter().position(|&r| r > floor).unwrap_or(0);
    let last = rms.iter().rposition(|&r| r > floor).unwrap_or(0);
    let start = first.saturating_sub(1) * win;
    let end = ((last + 2) * win).min(x.len());
    &x[start..end]
}

/// Writes mono 8-bit PCM (values clamped to `[-1, 1]`).
pub fn write_wav_u8(path: &Path, samples: &[f32], rate: u32) -> Result<()> {
    let err = |e: hound::Error| Error::Wav { path: path.to_path_buf(), msg: format!("cannot write: {e}") };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 8,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(err)?;
    for &v in samples {
        w.write_sample((v.clamp(-1.0, 1.0) * 127.0).round() as i8).map_err(err)?;
    }
    w.finalize().map_err(err)
}

/// Clip `index` of a set as it is written: unchanged without
/// `spec.noise_snr_db`; otherwise centred in a one-second window of white
/// noise at an SNR drawn for this clip (from the seed and the index), the
/// window's peak scaled to 0.9.
pub fn in_noise(wave: Vec<f32>, spec: &KeywordSpec, index: usize) -> Vec<f32> {
    let Some(snr) = spec.noise_snr_db else { return wave };
    let seed = spec.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ index as u64;
    let mut y = crate::data::with_background_noise(&[wave], spec.sample_rate as usize, snr, seed).remove(0);
    let peak = y.iter().fold(0f32, |m, v| m.max(v.abs())).max(f32::EPSILON);
    y.iter_mut().for_each(|v| *v *= 0.9 / peak);
    y
}

/// Synthesises the whole set under `out` (`train/<word>/*.wav`,
/// `test/<word>/*.wav`) in parallel, plus `clips.tsv` listing how each clip
/// was made. Returns the files written.
pub fn generate(out: &Path, spec: &KeywordSpec) -> Result<Vec<PathBuf>> {
    spec.validate()?;
    let clips = plan(spec);
    if spec.uses_festival() {
        Engine::Festival.version()?;
    }
    let io = |p: &Path, e: std::io::Error| Error::Wav { path: p.to_path_buf(), msg: e.to_string() };
    for c in &clips {
        let dir = out.join(c.split).join(&c.word);
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    }
    let files = clips
        .par_iter()
        .enumerate()
        .map(|(i, c)| {
            let wave = speak(spec.engine, &c.word, &c.voice, c.speed, c.pitch, spec.sample_rate)?;
            let wave = in_noise(wave, spec, i);
            let path = out.join(c.split).join(&c.word).join(&c.file);
            write_wav_u8(&path, &wave, spec.sample_rate)?;
            Ok(path)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut tsv = String::from("split\tword\tvoice\tspeed\tpitch\tfile\n");
    for c in &clips {
        tsv += &format!("{}\t{}\t{}\t{}\t{}\t{}\n", c.split, c.word, c.voice, c.speed, c.pitch, c.file);
    }
    let list = out.join("clips.tsv");
    std::fs::write(&list, tsv).map_err(|e| io(&list, e))?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn plan_is_deterministic_balanced_and_splits_voices() {
        let spec = KeywordSpec { train_per_word: 10, test_per_word: 5, ..Default::default() };
        let p = plan(&spec);
        assert_eq!(p, plan(&spec));
        assert_eq!(p.len(), 150);
        for w in WORDS {
            assert_eq!(p.iter().filter(|c| c.word == w && c.split == "train").count(), 10);
        }
        let variant = |c: &ClipPlan| c.voice.split('+').nth(1).unwrap().to_string();
        let train: std::collections::BTreeSet<_> =
            p.iter().filter(|c| c.split == "train").map(variant).collect();
        let test: std::collections::BTreeSet<_> =
            p.iter().filter(|c| c.split == "test").map(variant).collect();
        assert_eq!(train.len(), TRAIN_VARIANTS.len());
        assert!(train.is_disjoint(&test), "test voices must be unseen: {train:?} vs {test:?}");
        assert!(p.iter().all(|c| (120..=220).contains(&c.speed) && (20..=80).contains(&c.pitch)));
        let names: std::collections::BTreeSet<_> = p.iter().map(|c| (c.split, &c.word, &c.file)).collect();
        assert_eq!(names.len(), p.len(), "file names are unique");
    }

    #[test]
    fn flite_plan_speaks_the_digits_with_unseen_test_speakers() {
        let spec = KeywordSpec { train_per_word: 9, test_per_word: 4, ..KeywordSpec::flite_digits() };
        let p = plan(&spec);
        assert_eq!(p, plan(&spec));
        assert_eq!(p.len(), 130);
        for w in DIGITS {
            assert_eq!(p.iter().filter(|c| c.word == w && c.split == "train").count(), 9);
            assert_eq!(p.iter().filter(|c| c.word == w && c.split == "test").count(), 4);
            assert!(!WORDS.contains(&w), "{w} is one of the bundled set's words");
        }
        let voices =
            |split| p.iter().filter(|c| c.split == split).map(|c| c.voice.clone()).collect::<BTreeSet<_>>();
        assert_eq!(voices("train"), ["awb", "kal", "kal16"].map(String::from).into());
        assert_eq!(voices("test"), ["rms", "slt"].map(String::from).into());
        for c in &p {
            let (_, f0) =
                FLITE_TRAIN_VOICES.iter().chain(&FLITE_TEST_VOICES).find(|v| v.0 == c.voice).unwrap();
            assert!((f0.0..=f0.1).contains(&c.pitch) && (80..=125).contains(&c.speed), "{c:?}");
        }
        assert_eq!(p.iter().map(|c| (c.split, &c.word, &c.file)).collect::<BTreeSet<_>>().len(), p.len());
        assert!("flite".parse::<Engine>().is_ok() && "festival".parse::<Engine>().is_err());
    }

    #[test]
    fn listed_words_and_voices_replace_the_engines_own() {
        let words: Vec<String> = ["bed", "bird", "cat"].map(String::from).into();
        let (train, test) =
            (vec!["en-us+m1".to_string(), "en-gb-scotland+m2".into()], vec!["en-us+f4".into()]);
        let spec = KeywordSpec {
            words: Some(words.clone()),
            voices: Some((train.clone(), test.clone())),
            train_per_word: 4,
            test_per_word: 2,
            ..Default::default()
        };
        spec.validate().unwrap();
        let p = plan(&spec);
        assert_eq!(p.len(), 3 * 6);
        for c in &p {
            assert!(words.contains(&c.word));
            assert!(if c.split == "train" { &train } else { &test }.contains(&c.voice), "{c:?}");
        }
        let v0: Vec<_> =
            p.iter().filter(|c| c.split == "train" && c.word == "cat").map(|c| &c.voice).collect();
        assert_eq!(v0, [&train[0], &train[1], &train[0], &train[1]], "each split cycles through its voices");
        assert_eq!(p[1].file, format!("bed_001_en-gb-scotland_m2_s{}_p{}.wav", p[1].speed, p[1].pitch));
        // A Festival voice among them draws flite's kind of speed and pitch.
        let festival = KeywordSpec {
            voices: Some((vec!["festival:kal_diphone".into(), "en-us+m1".into()], vec!["en-us+f4".into()])),
            ..spec.clone()
        };
        festival.validate().unwrap();
        assert!(festival.uses_festival() && !spec.uses_festival());
        let p = plan(&festival);
        let kal: Vec<_> = p.iter().filter(|c| c.voice == "festival:kal_diphone").collect();
        assert_eq!(kal.len(), 3 * 2);
        assert!(
            kal.iter().all(|c| (80..=125).contains(&c.speed) && (85..=150).contains(&c.pitch)),
            "{kal:?}"
        );
        assert!(kal[0].file.starts_with("bed_000_festival_kal_diphone_s"), "{}", kal[0].file);
        assert_eq!(voice_engine("festival:kal_diphone", Engine::Espeak), (Engine::Festival, "kal_diphone"));
        assert_eq!(voice_engine("en-us+m1", Engine::Espeak), (Engine::Espeak, "en-us+m1"));
        // Digits by flite with other words, and what is refused.
        let flite = KeywordSpec { words: Some(words.clone()), ..KeywordSpec::flite_digits() };
        assert!(plan(&flite).iter().all(|c| words.contains(&c.word)));
        let refused = |spec: KeywordSpec, why: &str| {
            let e = spec.validate().unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        };
        refused(
            KeywordSpec { voices: Some((train.clone(), train.clone())), ..Default::default() },
            "both splits",
        );
        refused(
            KeywordSpec { voices: Some((train.clone(), vec![])), ..Default::default() },
            "at least one voice",
        );
        refused(KeywordSpec { voices: Some((train, test)), ..KeywordSpec::flite_digits() }, "fixed");
        refused(
            KeywordSpec { words: Some(vec!["a/b".into(), "c".into()]), ..Default::default() },
            "plain word",
        );
        refused(KeywordSpec { words: Some(vec!["cat".into(), "cat".into()]), ..Default::default() }, "twice");
        refused(KeywordSpec { words: Some(vec!["cat".into()]), ..Default::default() }, "two words");
        let odd = vec!["festival:(voice_x)".into()];
        refused(
            KeywordSpec { voices: Some((odd, vec!["en-us+f4".into()])), ..Default::default() },
            "not an espeak",
        );
        KeywordSpec::default().validate().unwrap();
    }

    #[test]
    fn flite_clips_sit_in_a_second_of_noise() {
        let spec = KeywordSpec::flite_digits();
        let word: Vec<f32> = (0..6000).map(|i| (i as f32 * 0.05).sin() * 0.9).collect();
        let a = in_noise(word.clone(), &spec, 3);
        assert_eq!(a.len(), 16_000);
        assert!((a.iter().fold(0f32, |m, v| m.max(v.abs())) - 0.9).abs() < 1e-5);
        assert_eq!(a, in_noise(word.clone(), &spec, 3), "the same clip gets the same noise");
        assert_ne!(a, in_noise(word.clone(), &spec, 4), "another clip gets other noise");
        // Noise outside the word, which sits in the middle 6000 samples.
        assert!(a[..4000].iter().any(|v| v.abs() > 1e-3));
        assert_eq!(in_noise(word.clone(), &KeywordSpec::default(), 3), word, "espeak's set stays clean");
    }

    #[test]
    fn bundled_set_is_the_default_plan() {
        let dir = crate::data::bundled_keywords_dir();
        let tsv = std::fs::read_to_string(dir.join("clips.tsv")).unwrap();
        let rows: Vec<&str> = tsv.lines().skip(1).collect();
        let planned = plan(&KeywordSpec::default());
        assert_eq!(rows.len(), planned.len());
        for (row, c) in rows.iter().zip(&planned) {
            let want = format!("{}\t{}\t{}\t{}\t{}\t{}", c.split, c.word, c.voice, c.speed, c.pitch, c.file);
            assert_eq!(*row, want);
            assert!(dir.join(c.split).join(&c.word).join(&c.file).is_file(), "{} is missing", c.file);
        }
        // The embedded copy, written out, is the repository's folder.
        let tmp = tempfile::tempdir().unwrap();
        let data = crate::data::bundled_keywords(tmp.path()).unwrap();
        assert_eq!(data, crate::data::folder(&tmp.path().join("keywords")).unwrap());
        let (a, b) =
            (std::fs::read(&data.test.files[7]).unwrap(), data.test.files[7].strip_prefix(tmp.path()));
        assert_eq!(a, std::fs::read(dir.parent().unwrap().join(b.unwrap())).unwrap());
        assert_eq!(data.classes.len(), 10);
        assert_eq!((data.train.files.len(), data.test.files.len()), (400, 240));
        // Short, 16 kHz clips: every one fits a one-second window.
        let clip = read_wav(&data.test.files[0]).unwrap();
        assert_eq!(clip.sample_rate, 16_000);
        assert!(clip.samples.len() < 16_000 && clip.samples.len() > 3_000);
    }

    #[test]
    fn trimming_keeps_the_sound_and_a_margin() {
        let mut x = vec![0f32; 1000];
        x.extend((0..500).map(|i| (i as f32 * 0.3).sin()));
        x.extend(vec![1e-4; 1000]);
        let t = trim_silence(&x, 100, 40.0);
        // 500 loud samples plus at most one 100-sample window each side.
        assert!((500..=700).contains(&t.len()), "{}", t.len());
        assert!(trim_silence(&[0.0; 50], 10, 40.0).is_empty());
    }

    #[test]
    fn eight_bit_files_read_back_within_quantisation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let x: Vec<f32> = (0..400).map(|i| (i as f32 * 0.1).sin() * 0.9).collect();
        write_wav_u8(&path, &x, 16_000).unwrap();
        let back = read_wav(&path).unwrap();
        assert_eq!((back.sample_rate, back.samples.len()), (16_000, 400));
        let worst = x.iter().zip(&back.samples).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= 0.5 / 127.0 + 1e-6 + 1.0 / 128.0, "{worst}");
    }
}
