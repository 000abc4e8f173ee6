//! Errors of ssl-text: each names the file (and line, where there is one).

use std::path::PathBuf;

/// Errors of ssl-text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder is missing or unreadable.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line of a file is not what its format requires.
    #[error("{path}:{line}: {msg}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// A whole file or folder is unusable (empty corpus, corrupt tokenizer…).
    #[error("{path}: {msg}")]
    File {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A tensor had the wrong shape or type.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// An option or configuration is invalid.
    #[error("{0}")]
    Config(String),
    /// An error from ssl-core.
    #[error(transparent)]
    Core(#[from] ssl_core::Error),
    /// A libtorch call failed.
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    /// A problem with line `line` (1-based) of `path`.
    pub fn line(path: impl Into<PathBuf>, line: usize, msg: impl Into<String>) -> Self {
        Error::Line { path: path.into(), line, msg: msg.into() }
    }
    /// A problem with the file or folder `path` as a whole.
    pub fn file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::File { path: path.into(), msg: msg.into() }
    }
}

impl From<Error> for ssl_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(c) => c,
            other => ssl_core::Error::Data(other.to_string()),
        }
    }
}
