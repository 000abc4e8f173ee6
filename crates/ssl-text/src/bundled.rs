//! The bundled text data set: Debian's fortunes (see
//! `datasets/fortunes/README.md` for the source, licence and sums),
//! compiled into the binary so that `train-text` needs no files, and
//! written out on demand where the corpus reader can stream it.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

const FILES: [(&str, &[u8]); 4] = [
    ("corpus.txt", include_bytes!("../../../datasets/fortunes/corpus.txt")),
    ("train.jsonl", include_bytes!("../../../datasets/fortunes/train.jsonl")),
    ("test.jsonl", include_bytes!("../../../datasets/fortunes/test.jsonl")),
    ("COPYRIGHT", include_bytes!("../../../datasets/fortunes/COPYRIGHT")),
];

/// Writes the bundled files into `dir/fortunes/` (skipping those already
/// there with the right size); returns that folder, which holds
/// `corpus.txt` and the labelled `train.jsonl`/`test.jsonl`.
pub fn write_fortunes(dir: &Path) -> Result<PathBuf> {
    let out = dir.join("fortunes");
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    for (name, bytes) in FILES {
        let p = out.join(name);
        if std::fs::metadata(&p).is_ok_and(|m| m.len() == bytes.len() as u64) {
            continue;
        }
        let tmp = out.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &p).map_err(|e| Error::io(&p, e))?;
    }
    Ok(out)
}
