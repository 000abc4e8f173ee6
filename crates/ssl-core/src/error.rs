//! The error type of ssl-core.

use std::path::PathBuf;

/// Everything that can go wrong in ssl-core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A libtorch call failed.
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    /// A libtorch call on a file failed (safetensors, checkpoints).
    #[error("{path}: {source}")]
    TorchFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: tch::TchError,
    },
    /// JSON could not be parsed or written.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A tensor had the wrong shape.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A checkpoint is missing, incomplete or from another model.
    #[error("checkpoint {path}: {msg}")]
    Checkpoint {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A weights file (an `--init` file, an export) is missing, unreadable
    /// or does not fit the model.
    #[error("weights {path}: {msg}")]
    Weights {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// Training stopped on request (a SIGTERM or SIGINT the binary turned
    /// into the trainer's stop flag) after writing a checkpoint that
    /// `--resume` continues from.
    #[error("training stopped on request after step {step} of {total_steps}; checkpoint {}", checkpoint.display())]
    Interrupted {
        /// Steps completed.
        step: usize,
        /// Steps in the run.
        total_steps: usize,
        /// The checkpoint written at `step`.
        checkpoint: PathBuf,
    },
    /// Training diverged: too many non-finite steps in a row, or
    /// non-finite values in the weights or buffers.
    #[error("training diverged at step {step}: {msg}")]
    Diverged {
        /// The 1-based step.
        step: usize,
        /// What went wrong and what to try.
        msg: String,
    },
    /// A training step failed inside libtorch (e.g. out of memory).
    #[error("step {step} failed: {detail}")]
    Step {
        /// The 1-based step.
        step: usize,
        /// What failed, the batch size, and what to try.
        detail: String,
    },
    /// An error from a data source (the modality crates wrap theirs here).
    #[error("{0}")]
    Data(String),
    /// A distributed run failed: a collective, the rendezvous, or ranks
    /// that disagree.
    #[error(transparent)]
    Dist(#[from] ssl_dist::Error),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// Runs `build` (a model's construction from a config the user gave: a
/// `--set` override, a `backbone.json`) and turns a panic inside it (a
/// constructor's assert, a libtorch shape error) into
/// `Error::Config("{context}: {the panic's first line}")`. The process's
/// panic hook is swapped for a silent one while `build` runs (the error
/// carries the message), then put back; a lock keeps two such swaps from
/// interleaving.
pub fn catch_build<T, E: From<Error>>(
    context: impl FnOnce() -> String,
    build: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    static HOOK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let caught = {
        let _swap = HOOK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(build));
        std::panic::set_hook(hook);
        caught
    };
    caught.unwrap_or_else(|payload| {
        let msg = panic_message(payload.as_ref());
        Err(Error::Config(format!("{}: {}", context(), msg.lines().next().unwrap_or_default())).into())
    })
}

/// The message of a caught panic (`std::panic::catch_unwind`'s payload):
/// its string, or `(no message)` when it carries none.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}
