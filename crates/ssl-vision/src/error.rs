//! The error type of ssl-vision.

use std::path::PathBuf;

/// Everything that can go wrong in ssl-vision. Errors about files name them.
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
    /// A file's content is not what its format requires.
    #[error("{path}: {msg}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// An image could not be decoded.
    #[error("{path}: cannot decode image: {source}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        source: image::ImageError,
    },
    /// A data set spec, method or option is invalid.
    #[error("{0}")]
    Config(String),
    /// An error from ssl-core.
    #[error(transparent)]
    Core(#[from] ssl_core::Error),
    /// A libtorch error.
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
    /// A format error about `path`.
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format { path: path.into(), msg: msg.into() }
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
