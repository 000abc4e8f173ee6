//! Each rank bumps a counter in the store every second from a thread of its
//! own (with its own store connection). When a collective fails, the
//! counters tell which ranks stopped: the error then names them instead of
//! saying only that a socket closed or a wait timed out.

use crate::ffi::Store;
use crate::{Launch, Lost};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const INTERVAL: Duration = Duration::from_secs(1);

fn key(rank: usize) -> String {
    format!("heartbeat/{rank}")
}

/// The running heartbeat; it stops when dropped.
pub struct Heartbeat {
    stop: Arc<AtomicBool>,
}

impl Heartbeat {
    /// Connects a second store client and starts beating.
    pub fn start(launch: &Launch, prefix: &str, timeout_ms: i64) -> Result<Heartbeat, String> {
        let store = Store::new(
            &launch.master_addr,
            launch.master_port,
            false,
            launch.world_size,
            false,
            prefix,
            timeout_ms,
        )?;
        let k = key(launch.rank);
        store.add(&k, 1)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name(format!("ssl-dist heartbeat {}", launch.rank))
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(INTERVAL);
                    // The store is gone when rank 0 is: stop quietly, the
                    // next collective reports it.
                    if store.add(&k, 1).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Heartbeat { stop })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads every rank's counter twice, three intervals apart: the ranks
/// (other than `me`) whose counter did not move are lost.
pub fn lost_ranks(store: &Store, me: usize, world: usize) -> Lost {
    let _ = store.set_timeout(5_000);
    let read = || -> Result<Vec<i64>, String> { (0..world).map(|r| store.add(&key(r), 0)).collect() };
    let Ok(before) = read() else { return Lost::Store };
    std::thread::sleep(INTERVAL * 3);
    let Ok(after) = read() else { return Lost::Store };
    let lost: Vec<usize> = (0..world).filter(|&r| r != me && after[r] == before[r]).collect();
    if lost.is_empty() {
        Lost::NoneLost
    } else {
        Lost::Ranks(lost)
    }
}
