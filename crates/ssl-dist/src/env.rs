//! The launch environment torchrun (and `cargo xtask … --nproc-per-node`)
//! sets for each rank: `RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//! `MASTER_ADDR`, `MASTER_PORT`, and under torchrun's agent
//! `TORCHELASTIC_USE_AGENT_STORE` and `TORCHELASTIC_RESTART_COUNT`.

use crate::{Error, Result};

/// Where this process stands in a multi-process run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// Global rank, `0..world_size`.
    pub rank: usize,
    /// Number of ranks (more than 1).
    pub world_size: usize,
    /// Rank on this machine: the CUDA device index.
    pub local_rank: usize,
    /// Host of the rendezvous store (rank 0's machine, or torchrun's agent).
    pub master_addr: String,
    /// Port of the rendezvous store.
    pub master_port: u16,
    /// torchrun's agent hosts the store: every rank connects as a client,
    /// under the prefix `/worker/attempt_<restart count>`.
    pub agent_store: Option<u32>,
}

impl Launch {
    /// Reads the process environment; `None` when this is a single-process
    /// run (neither `RANK` nor `WORLD_SIZE` set, or `WORLD_SIZE=1`).
    pub fn from_env() -> Result<Option<Launch>> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`Launch::from_env`] over any variable lookup (tests use a map).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>> {
        let number = |name: &str| -> Result<Option<usize>> {
            match var(name) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse::<usize>()
                    .map(Some)
                    .map_err(|_| Error::Env(format!("{name}={v:?} is not a non-negative integer"))),
            }
        };
        let (rank, world) = (number("RANK")?, number("WORLD_SIZE")?);
        let hint =
            "start the ranks with torchrun or `cargo xtask train-… --nproc-per-node N`, which set both";
        let (rank, world) = match (rank, world) {
            (None, None) => return Ok(None),
            (Some(r), None) => {
                return Err(Error::Env(format!("RANK={r} is set but WORLD_SIZE is not: {hint}")))
            }
            (None, Some(w)) => {
                return Err(Error::Env(format!("WORLD_SIZE={w} is set but RANK is not: {hint}")))
            }
            (Some(r), Some(w)) => (r, w),
        };
        if world == 0 {
            return Err(Error::Env("WORLD_SIZE=0: there must be at least one rank".into()));
        }
        if rank >= world {
            return Err(Error::Env(format!(
                "RANK={rank} is not below WORLD_SIZE={world}: ranks are numbered 0..{}",
                world - 1
            )));
        }
        if world == 1 {
            return Ok(None);
        }
        let local_rank = number("LOCAL_RANK")?.unwrap_or(rank);
        let master_addr = var("MASTER_ADDR").filter(|a| !a.trim().is_empty()).ok_or_else(|| {
            Error::Env(format!(
                "WORLD_SIZE={world} but MASTER_ADDR is not set: every rank needs the host of rank 0 \
                 (127.0.0.1 on one machine)"
            ))
        })?;
        let port = var("MASTER_PORT").ok_or_else(|| {
            Error::Env(format!(
                "WORLD_SIZE={world} but MASTER_PORT is not set: every rank needs the store's port"
            ))
        })?;
        let master_port = port
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| Error::Env(format!("MASTER_PORT={port:?} is not a port number (1-65535)")))?;
        let agent = var("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let agent_store =
            if agent { Some(number("TORCHELASTIC_RESTART_COUNT")?.unwrap_or(0) as u32) } else { None };
        Ok(Some(Launch {
            rank,
            world_size: world,
            local_rank,
            master_addr: master_addr.trim().to_string(),
            master_port,
            agent_store,
        }))
    }

    /// `MASTER_ADDR:MASTER_PORT`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.master_addr, self.master_port)
    }

    /// Whether every rank runs on this machine's loopback interface.
    pub fn is_loopback(&self) -> bool {
        let a = self.master_addr.as_str();
        a == "localhost" || a == "::1" || a.starts_with("127.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(vars: &[(&str, &str)]) -> Result<Option<Launch>> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Launch::from_vars(|k| map.get(k).cloned())
    }

    fn err(vars: &[(&str, &str)]) -> String {
        launch(vars).unwrap_err().to_string()
    }

    #[test]
    fn no_variables_or_one_rank_is_a_single_process() {
        assert_eq!(launch(&[]).unwrap(), None);
        assert_eq!(launch(&[("RANK", "0"), ("WORLD_SIZE", "1")]).unwrap(), None);
    }

    #[test]
    fn torchrun_variables_are_read() {
        let l = launch(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "29500"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            ("TORCHELASTIC_RESTART_COUNT", "2"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((l.rank, l.world_size, l.local_rank), (3, 4, 1));
        assert_eq!(l.addr(), "node0:29500");
        assert_eq!(l.agent_store, Some(2));
        assert!(!l.is_loopback());
    }

    #[test]
    fn inconsistent_or_missing_variables_are_named() {
        let full = [("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")];
        assert!(err(&[("RANK", "2"), ("WORLD_SIZE", "2"), full[0], full[1]])
            .contains("RANK=2 is not below WORLD_SIZE=2"));
        assert!(err(&[("WORLD_SIZE", "2")]).contains("RANK is not"));
        assert!(err(&[("RANK", "1")]).contains("WORLD_SIZE is not"));
        assert!(err(&[("RANK", "x"), ("WORLD_SIZE", "2")]).contains("RANK=\"x\""));
        assert!(err(&[("RANK", "0"), ("WORLD_SIZE", "0")]).contains("WORLD_SIZE=0"));
        assert!(err(&[("RANK", "1"), ("WORLD_SIZE", "2"), full[1]]).contains("MASTER_ADDR is not set"));
        assert!(err(&[("RANK", "1"), ("WORLD_SIZE", "2"), full[0]]).contains("MASTER_PORT is not set"));
        assert!(err(&[("RANK", "1"), ("WORLD_SIZE", "2"), full[0], ("MASTER_PORT", "70000")])
            .contains("MASTER_PORT=\"70000\" is not a port"));
    }
}
