//! Run logging: one JSON object per line in `metrics.jsonl`, and a progress
//! bar on a terminal.

use crate::{Error, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Appends JSON lines to a file.
pub struct JsonlLog {
    path: PathBuf,
    file: std::fs::File,
}

impl JsonlLog {
    /// Opens (appending; a resumed run continues the same log).
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self { path: path.to_path_buf(), file })
    }

    /// Writes one record.
    pub fn write(&mut self, record: &Value) -> Result<()> {
        writeln!(self.file, "{record}").map_err(|e| Error::io(&self.path, e))
    }

    /// Flushes the records written so far to disk (before a checkpoint, so
    /// that a power loss cannot keep the checkpoint and lose its rows).
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }
}

/// A progress bar over all steps of a run showing loss and throughput; hidden
/// when stderr is not a terminal (CI logs get one line per epoch instead).
pub fn progress_bar(total_steps: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(total_steps);
    let template = format!("{{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} steps  {{msg}}  ({unit})");
    bar.set_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar
}

/// Writes a JSON value to `path` atomically (temp file, then rename).
pub fn write_json_atomic(path: &Path, value: &Value) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| Error::Json { path: path.into(), source: e })?;
    write_atomic(path, text.as_bytes())
}

/// Writes bytes to `path` atomically: a temporary file beside it, synced,
/// then renamed over it, and the folder synced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    // The rename itself reaches the disk with the folder's entries.
    sync_path(path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")))
}

/// Flushes a file (or, on Unix, a folder's entries) to disk.
pub(crate) fn sync_path(path: &Path) -> Result<()> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| Error::io(path, e))
}

/// `dir/.name.tmp` for `dir/name`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_read_back_from_json_are_the_ones_written() {
        // An f32 statistic as f64 (an audio run's input mean) that serde_json
        // parsed one ULP off without its `float_roundtrip` feature, so that
        // `--resume` saw a changed setting.
        let v = -12.494490623474121f64;
        let back: f64 = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(back.to_bits(), v.to_bits());
    }

    #[test]
    fn jsonl_appends_and_atomic_write_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("m.jsonl");
        let mut log = JsonlLog::open(&log_path).unwrap();
        log.write(&serde_json::json!({"step": 1})).unwrap();
        log.write(&serde_json::json!({"step": 2})).unwrap();
        drop(log);
        let text = std::fs::read_to_string(&log_path).unwrap();
        assert_eq!(text.lines().count(), 2);
        let p = dir.path().join("r.json");
        write_json_atomic(&p, &serde_json::json!({"a": 1})).unwrap();
        write_json_atomic(&p, &serde_json::json!({"a": 2})).unwrap();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["a"], 2);
        assert!(!tmp_path(&p).exists());
    }
}
