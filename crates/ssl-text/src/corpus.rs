//! Text corpora, streamed: plain text (one document per line, or paragraphs
//! separated by blank lines), JSONL with a `text` field, or a folder of
//! either (searched recursively, files in name order). Documents are read a
//! line at a time and never gathered whole; every error names the file and
//! line. Also the labelled sets of fine-tuning: JSONL or CSV with `text` and
//! `label`.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How a file's documents are delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One document per non-empty line.
    Lines,
    /// Documents separated by blank lines (lines joined with `\n`).
    Paragraphs,
    /// One JSON object per line, the document in its `text` field.
    Jsonl,
}

/// A corpus: its files and how to read each; see the module docs.
#[derive(Clone, Debug)]
pub struct Corpus {
    root: PathBuf,
    files: Vec<(PathBuf, Format)>,
}

/// One document and where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Doc {
    /// The text.
    pub text: String,
    /// Its file.
    pub file: Arc<PathBuf>,
    /// Its first line (1-based).
    pub line: usize,
}

fn format_of(path: &Path, paragraphs: bool) -> Option<Format> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("jsonl") => Some(Format::Jsonl),
        Some("txt" | "text") if paragraphs => Some(Format::Paragraphs),
        Some("txt" | "text") => Some(Format::Lines),
        _ => None,
    }
}

/// The corpus files under `dir`, depth first in name order. Symbolic links
/// are followed; a link back into a folder above it is an error naming
/// both, and a file reached twice (through two links) is read once.
fn collect_files(dir: &Path, paragraphs: bool, out: &mut Vec<(PathBuf, Format)>) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(true).sort_by_file_name() {
        let entry = entry.map_err(|e| {
            let at = e.path().unwrap_or(dir).to_path_buf();
            match e.loop_ancestor() {
                Some(a) => Error::file(&at, format!("a symbolic link loops back to {}", a.display())),
                None => Error::file(&at, format!("cannot list: {e}")),
            }
        })?;
        let p = entry.path();
        if !entry.file_type().is_file() {
            continue;
        }
        if let Some(f) = format_of(p, paragraphs) {
            if seen.insert(std::fs::canonicalize(p).map_err(|e| Error::io(p, e))?) {
                out.push((p.to_path_buf(), f));
            }
        }
    }
    Ok(())
}

impl Corpus {
    /// A file (`.txt`/`.text` as plain text, `.jsonl` as JSONL; another
    /// extension is read as plain text) or a folder of such files. Plain
    /// text is one document per line unless `paragraphs`.
    pub fn open(path: &Path, paragraphs: bool) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let files = if meta.is_dir() {
            let mut files = Vec::new();
            collect_files(path, paragraphs, &mut files)?;
            if files.is_empty() {
                return Err(Error::file(path, "empty corpus: no .txt, .text or .jsonl file in this folder"));
            }
            files
        } else {
            let f = format_of(path, paragraphs).unwrap_or(if paragraphs {
                Format::Paragraphs
            } else {
                Format::Lines
            });
            vec![(path.to_path_buf(), f)]
        };
        Ok(Self { root: path.to_path_buf(), files })
    }

    /// The file or folder the corpus was opened from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Its files and their formats.
    pub fn files(&self) -> &[(PathBuf, Format)] {
        &self.files
    }

    /// Total size of the files in bytes.
    pub fn bytes(&self) -> u64 {
        self.files.iter().filter_map(|(p, _)| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
    }

    /// Streams the documents. The iterator yields an error (and then stops)
    /// at the first unreadable file, bad line or non-UTF-8 bytes, and an
    /// "empty corpus" error if it found no document at all.
    pub fn documents(&self) -> Documents<'_> {
        Documents { corpus: self, file: 0, reader: None, line: 0, seen: 0, done: false }
    }
}

/// The iterator of [`Corpus::documents`].
pub struct Documents<'a> {
    corpus: &'a Corpus,
    file: usize,
    reader: Option<(Arc<PathBuf>, Format, BufReader<File>)>,
    line: usize,
    seen: usize,
    done: bool,
}

impl Documents<'_> {
    /// The next line of the current file without its line ending, or `None`
    /// at its end.
    fn next_line(&mut self) -> Result<Option<String>> {
        let (path, _, reader) = self.reader.as_mut().expect("a file is open");
        let mut buf = Vec::new();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| Error::io(path.as_path(), e))?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        String::from_utf8(buf).map(Some).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            Error::line(path.as_path(), self.line, format!("not valid UTF-8 (byte {} of the line)", at + 1))
        })
    }

    fn next_doc(&mut self) -> Result<Option<Doc>> {
        loop {
            if self.reader.is_none() {
                let Some((path, format)) = self.corpus.files.get(self.file) else {
                    return Ok(None);
                };
                self.file += 1;
                let f = File::open(path).map_err(|e| Error::io(path, e))?;
                self.reader = Some((Arc::new(path.clone()), *format, BufReader::new(f)));
                self.line = 0;
            }
            let (path, format) = {
                let (p, f, _) = self.reader.as_ref().expect("a file is open");
                (p.clone(), *f)
            };
            let doc = match format {
                Format::Lines => loop {
                    match self.next_line()? {
                        None => break None,
                        Some(l) if l.trim().is_empty() => continue,
                        Some(l) => {
                            break Some(Doc {
                                text: l.trim().to_string(),
                                file: path.clone(),
                                line: self.line,
                            })
                        }
                    }
                },
                Format::Paragraphs => {
                    let mut text = String::new();
                    let mut start = 0;
                    loop {
                        match self.next_line()? {
                            None => break,
                            Some(l) if l.trim().is_empty() => {
                                if !text.is_empty() {
                                    break;
                                }
                            }
                            Some(l) => {
                                if text.is_empty() {
                                    start = self.line;
                                } else {
                                    text.push('\n');
                                }
                                text.push_str(l.trim_end());
                            }
                        }
                    }
                    (!text.is_empty()).then(|| Doc { text, file: path.clone(), line: start })
                }
                Format::Jsonl => loop {
                    match self.next_line()? {
                        None => break None,
                        Some(l) if l.trim().is_empty() => continue,
                        Some(l) => {
                            let text = json_field(&path, self.line, &l, "text")?;
                            break Some(Doc { text, file: path.clone(), line: self.line });
                        }
                    }
                },
            };
            match doc {
                Some(d) => return Ok(Some(d)),
                None => self.reader = None,
            }
        }
    }
}

impl Iterator for Documents<'_> {
    type Item = Result<Doc>;
    fn next(&mut self) -> Option<Result<Doc>> {
        if self.done {
            return None;
        }
        match self.next_doc() {
            Ok(Some(d)) => {
                self.seen += 1;
                Some(Ok(d))
            }
            Ok(None) => {
                self.done = true;
                (self.seen == 0).then(|| {
                    Err(Error::file(&self.corpus.root, "empty corpus: no document (every line is blank)"))
                })
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// A string field of a JSON object line.
fn json_field(path: &Path, line: usize, text: &str, field: &str) -> Result<String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Error::line(path, line, format!("not valid JSON: {e}")))?;
    match v.get(field) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        // Labels may be written as numbers; they are names all the same.
        Some(n @ serde_json::Value::Number(_)) if field == "label" => Ok(n.to_string()),
        Some(other) => Err(Error::line(path, line, format!("field `{field}` must be a string, got {other}"))),
        None => Err(Error::line(path, line, format!("no `{field}` field"))),
    }
}

/// A labelled example for fine-tuning.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    /// The text.
    pub text: String,
    /// The label, as written in the file.
    pub label: String,
}

/// Reads a labelled set: JSONL (`{"text": …, "label": …}` per line) or CSV
/// with a header naming `text` and `label` columns (by extension). Errors
/// name the file and line; an empty file is an error.
pub fn read_labeled(path: &Path) -> Result<Vec<Example>> {
    let is_csv = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let examples = if is_csv { read_csv(path)? } else { read_jsonl(path)? };
    if examples.is_empty() {
        return Err(Error::file(path, "no examples"));
    }
    Ok(examples)
}

fn read_jsonl(path: &Path) -> Result<Vec<Example>> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).split(b'\n').enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        let line = String::from_utf8(line).map_err(|_| Error::line(path, i + 1, "not valid UTF-8"))?;
        if line.trim().is_empty() {
            continue;
        }
        let text = json_field(path, i + 1, &line, "text")?;
        let label = json_field(path, i + 1, &line, "label")?;
        out.push(Example { text, label });
    }
    Ok(out)
}

fn read_csv(path: &Path) -> Result<Vec<Example>> {
    let mut r = csv::Reader::from_path(path).map_err(|e| Error::file(path, e.to_string()))?;
    let headers = r.headers().map_err(|e| Error::file(path, e.to_string()))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::line(path, 1, format!("the header has no `{name}` column")))
    };
    let (t, l) = (col("text")?, col("label")?);
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            Error::line(path, line, e.to_string())
        })?;
        let line = rec.position().map_or(0, |p| p.line() as usize);
        let get = |i: usize, name: &str| {
            rec.get(i)
                .map(str::to_string)
                .ok_or_else(|| Error::line(path, line, format!("no `{name}` value")))
        };
        let label = get(l, "label")?;
        if label.trim().is_empty() {
            return Err(Error::line(path, line, "empty `label`"));
        }
        out.push(Example { text: get(t, "text")?, label });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn texts(c: &Corpus) -> Vec<String> {
        c.documents().map(|d| d.unwrap().text).collect()
    }

    #[test]
    fn lines_paragraphs_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "a.txt", b"first doc\n\n  second doc  \r\nthird\n");
        assert_eq!(texts(&Corpus::open(&p, false).unwrap()), ["first doc", "second doc", "third"]);
        assert_eq!(texts(&Corpus::open(&p, true).unwrap()), ["first doc", "  second doc\nthird"]);
        let j = write(dir.path(), "b.jsonl", b"{\"text\": \"hello\", \"id\": 1}\n\n{\"text\": \"world\"}\n");
        let docs: Vec<Doc> = Corpus::open(&j, false).unwrap().documents().map(Result::unwrap).collect();
        assert_eq!(docs.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(), ["hello", "world"]);
        assert_eq!(docs[1].line, 3);
    }

    #[test]
    fn folders_are_read_recursively_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b/z.txt", b"three\n");
        write(dir.path(), "a.jsonl", b"{\"text\": \"one\"}\n");
        write(dir.path(), "b/c.txt", b"two\n");
        write(dir.path(), "notes.md", b"skipped\n");
        let c = Corpus::open(dir.path(), false).unwrap();
        assert_eq!(texts(&c), ["one", "two", "three"]);
    }

    #[test]
    fn linked_folders_are_read_once_and_a_loop_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b/z.txt", b"three\n");
        std::os::unix::fs::symlink(dir.path().join("b"), dir.path().join("c")).unwrap();
        let c = Corpus::open(dir.path(), false).unwrap();
        assert_eq!(texts(&c), ["three"], "b/z.txt and c/z.txt are one file");
        std::os::unix::fs::symlink(dir.path(), dir.path().join("b/up")).unwrap();
        let e = Corpus::open(dir.path(), false).unwrap_err().to_string();
        assert!(e.contains("up") && e.contains("loops back to"), "{e}");
    }

    #[test]
    fn bad_input_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let bad = write(dir.path(), "bad.txt", b"fine\nnot \xff utf8\n");
        let errs: Vec<String> = Corpus::open(&bad, false)
            .unwrap()
            .documents()
            .filter_map(|d| d.err())
            .map(|e| e.to_string())
            .collect();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("bad.txt:2") && errs[0].contains("UTF-8"), "{}", errs[0]);

        let j = write(dir.path(), "j.jsonl", b"{\"text\": \"ok\"}\n{\"body\": \"no text\"}\n");
        let err = Corpus::open(&j, false).unwrap().documents().find_map(|d| d.err()).unwrap().to_string();
        assert!(err.contains("j.jsonl:2") && err.contains("no `text` field"), "{err}");

        let empty = write(dir.path(), "empty.txt", b"\n  \n");
        let err = Corpus::open(&empty, false).unwrap().documents().next().unwrap().unwrap_err().to_string();
        assert!(err.contains("empty.txt") && err.contains("empty corpus"), "{err}");

        let none = tempfile::tempdir().unwrap();
        let err = Corpus::open(none.path(), false).unwrap_err().to_string();
        assert!(err.contains("empty corpus"), "{err}");
        let err = Corpus::open(&dir.path().join("missing.txt"), false).unwrap_err().to_string();
        assert!(err.contains("missing.txt"), "{err}");
    }

    #[test]
    fn labelled_sets_from_jsonl_and_csv() {
        let dir = tempfile::tempdir().unwrap();
        let j = write(
            dir.path(),
            "t.jsonl",
            b"{\"text\": \"a b\", \"label\": \"pos\"}\n{\"text\": \"c\", \"label\": 3}\n",
        );
        let ex = read_labeled(&j).unwrap();
        assert_eq!(ex[0], Example { text: "a b".into(), label: "pos".into() });
        assert_eq!(ex[1].label, "3");
        let c = write(dir.path(), "t.csv", b"label,text\nneg,\"hello, world\"\npos,fine\n");
        let ex = read_labeled(&c).unwrap();
        assert_eq!(ex[0], Example { text: "hello, world".into(), label: "neg".into() });

        let bad = write(dir.path(), "bad.jsonl", b"{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\"}\n");
        let err = read_labeled(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.jsonl:2") && err.contains("no `label` field"), "{err}");
        let bad = write(dir.path(), "bad.csv", b"text,label\nhello,\n");
        let err = read_labeled(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.csv:2") && err.contains("empty `label`"), "{err}");
        let bad = write(dir.path(), "nolabel.csv", b"text,category\nhello,x\n");
        assert!(read_labeled(&bad).unwrap_err().to_string().contains("no `label` column"));
        let empty = write(dir.path(), "empty.jsonl", b"\n");
        assert!(read_labeled(&empty).unwrap_err().to_string().contains("no examples"));
    }
}
