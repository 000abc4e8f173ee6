//! The error type of ssl-dist: every message names the rank (and, for a
//! collective, the operation and the ranks that stopped answering).

/// Everything that can go wrong in ssl-dist.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The launch environment (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`, …) is
    /// missing a variable or contradicts itself.
    #[error("distributed launch environment: {0}")]
    Env(String),
    /// The ranks could not meet: the store or the process group failed to
    /// start.
    #[error("rank {rank} of {world}: rendezvous at {addr} failed: {detail}")]
    Rendezvous {
        /// This process's rank.
        rank: usize,
        /// The number of ranks.
        world: usize,
        /// `MASTER_ADDR:MASTER_PORT`.
        addr: String,
        /// What went wrong, with a hint.
        detail: String,
    },
    /// A collective failed or timed out.
    #[error("rank {rank} of {world}: {op} failed: {detail}{}", lost_ranks(.lost))]
    Collective {
        /// The operation (`all_reduce`, `all_gather`, gradient synchronisation, …).
        op: &'static str,
        /// This process's rank.
        rank: usize,
        /// The number of ranks.
        world: usize,
        /// The backend's message.
        detail: String,
        /// What the heartbeats say of the other ranks.
        lost: Lost,
    },
    /// The ranks disagree on something that must be the same everywhere.
    #[error("rank {rank} of {world}: {detail}")]
    Mismatch {
        /// This process's rank.
        rank: usize,
        /// The number of ranks.
        world: usize,
        /// What differs.
        detail: String,
    },
    /// A libtorch call failed.
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Which ranks stopped answering, as far as the heartbeats tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// Not checked (world size 1, or no heartbeat running).
    Unknown,
    /// These ranks' heartbeats stopped.
    Ranks(Vec<usize>),
    /// Every other rank is alive: a rank did not reach the collective in
    /// time (a hang, or ranks running different code).
    NoneLost,
    /// The store on rank 0 cannot be reached: rank 0 (or its machine) is lost.
    Store,
}

fn lost_ranks(lost: &Lost) -> String {
    match lost {
        Lost::Unknown => String::new(),
        Lost::Ranks(r) if r.len() == 1 => {
            format!("; rank {} stopped answering (its heartbeat stopped)", r[0])
        }
        Lost::Ranks(r) => format!("; ranks {r:?} stopped answering (their heartbeats stopped)"),
        Lost::NoneLost => "; every rank is still alive, so one did not reach this collective in time \
                            (stuck, much slower, or running a different configuration)"
            .to_string(),
        Lost::Store => "; the store on rank 0 is unreachable: rank 0 stopped".to_string(),
    }
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
