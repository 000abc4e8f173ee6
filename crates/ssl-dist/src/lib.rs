//! ssl-dist: data-parallel training on torch's own c10d, the engine under
//! `torch.distributed` and PyTorch DDP, through a small C++ shim compiled
//! against the libtorch that tch links (`shim/c10d.cpp`).
//!
//! - [`Group`]: a process group from torchrun's environment ([`Launch`]):
//!   a TCPStore rendezvous, Gloo for CPU tensors and, with the `nccl`
//!   feature, NCCL for CUDA tensors. With no launch variables (or
//!   `WORLD_SIZE=1`) it is a world of one that opens no socket, and every
//!   collective returns its input.
//! - Collectives: all-reduce, broadcast, barrier, all-gather,
//!   reduce-scatter, and two differentiable ones for losses over the global
//!   batch: [`Group::all_gather_with_grad`] (backward: reduce-scatter of the
//!   gradient, summed) and [`Group::all_reduce_with_grad`] (backward:
//!   all-reduce of the gradient, summed). Combined with DDP's averaging of
//!   parameter gradients over the ranks, a loss built from them has the
//!   gradient of the same loss on the global batch in one process.
//! - [`GradSync`]: c10d's `Reducer` (bucketed all-reduce overlapped with
//!   backward, as PyTorch DDP), and [`Group::broadcast_from_rank0`] for the
//!   parameters and buffers at start.
//! - Every collective has a timeout; a failure is an [`Error::Collective`]
//!   naming the operation, this rank, and the ranks whose heartbeat stopped.
//!
//! The process-wide group is [`world`] (set once by [`init_world`]), as
//! `torch.distributed`'s default group: losses and BatchNorm layers read it,
//! so a method's code is the same for one process and for many.

mod env;
mod error;
mod ffi;
mod heartbeat;
mod reducer;
pub mod testing;

pub use env::Launch;
pub use error::{Error, Lost, Result};
pub use reducer::{GradSync, DEFAULT_BUCKET_MB};

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Duration;
use tch::Tensor;

/// How a reduction combines the ranks' tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// Element-wise sum.
    Sum,
    /// Element-wise maximum.
    Max,
    /// Element-wise minimum.
    Min,
}

impl ReduceOp {
    fn code(self) -> i32 {
        match self {
            ReduceOp::Sum => 0,
            ReduceOp::Max => 1,
            ReduceOp::Min => 2,
        }
    }
}

/// Options of [`Group::from_env`].
#[derive(Clone, Debug)]
pub struct GroupOptions {
    /// The timeout of the rendezvous and of every collective (PyTorch's
    /// default for Gloo is 30 minutes; ours is 10).
    pub timeout: Duration,
    /// The CUDA device this rank trains on: CUDA tensors get a backend too.
    pub cuda_device: Option<usize>,
    /// The backend for CUDA tensors.
    pub cuda_backend: CudaBackend,
}

impl Default for GroupOptions {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(600), cuda_device: None, cuda_backend: CudaBackend::Auto }
    }
}

/// Which c10d backend carries CUDA tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CudaBackend {
    /// NCCL when this build has it (the `nccl` feature), else Gloo.
    Auto,
    /// NCCL (an error without the `nccl` feature).
    Nccl,
    /// Gloo, which stages CUDA tensors through host memory: slower, but it
    /// lets several ranks share one GPU.
    Gloo,
}

impl CudaBackend {
    /// Whether NCCL is used.
    pub fn uses_nccl(self) -> bool {
        match self {
            CudaBackend::Auto => ffi::has_nccl(),
            CudaBackend::Nccl => true,
            CudaBackend::Gloo => false,
        }
    }
}

/// A deliberately wrong variant of a collective, for tests that show a
/// gradient check catches the bug class it guards against. Never set in
/// training.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Correct collectives.
    None = 0,
    /// The gathered tensor's backward returns only the local slice of its
    /// gradient (lightly #1528).
    GatherLocalSliceBackward = 1,
    /// All-reduces return `world_size ×` the local tensor: statistics
    /// computed on the local batch only, as if never all-reduced.
    LocalStatistics = 2,
    /// The differentiable all-reduce's backward passes the gradient through
    /// without summing it over the ranks (off by the world size, the class of
    /// lightly #1977 and #1920).
    AllReduceBackwardIdentity = 3,
    /// Parameter gradients are not synchronised.
    SkipGradSync = 4,
    /// All-gathers put this rank's tensor in every slot: nothing is
    /// gathered (negatives or MoCo keys from the local batch only).
    LocalGather = 5,
}

/// The native side of a group of more than one rank.
struct Native {
    pg: ffi::Pg,
    store: ffi::Store,
    _heartbeat: heartbeat::Heartbeat,
    addr: String,
    timeout: Duration,
}

/// A process group; see the crate docs.
pub struct Group {
    rank: usize,
    world: usize,
    local_rank: usize,
    native: Option<Native>,
    fault: AtomicU8,
}

static WORLD: OnceLock<Group> = OnceLock::new();
static SINGLE: Group = Group::single();
static DEFERRED: std::sync::Mutex<Option<Error>> = std::sync::Mutex::new(None);

/// Keeps an error raised where it cannot be returned (inside a module's
/// `forward`, e.g. a synchronised BatchNorm's all-reduce), for the trainer
/// to pick up with [`take_deferred_error`] after the step. The first error
/// is kept; later ones are usually its consequences.
pub fn defer_error(e: Error) {
    let mut slot = DEFERRED.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_none() {
        *slot = Some(e);
    }
}

/// The error kept by [`defer_error`], if any (and clears it).
pub fn take_deferred_error() -> Option<Error> {
    DEFERRED.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// The process-wide group set by [`init_world`], or a world of one.
pub fn world() -> &'static Group {
    WORLD.get().unwrap_or(&SINGLE)
}

/// The process-wide group, if [`init_world`] has set it.
pub fn initialized_world() -> Option<&'static Group> {
    WORLD.get()
}

/// Makes `group` the process-wide group that [`world`] returns. It can be
/// set once per process.
pub fn init_world(group: Group) -> Result<&'static Group> {
    let (rank, world) = (group.rank, group.world);
    WORLD.set(group).map_err(|_| Error::Mismatch {
        rank,
        world,
        detail: "the process-wide group is already set".into(),
    })?;
    Ok(WORLD.get().expect("just set"))
}

impl Group {
    /// A world of one: every collective returns its input.
    pub const fn single() -> Group {
        Group { rank: 0, world: 1, local_rank: 0, native: None, fault: AtomicU8::new(0) }
    }

    /// The group the environment describes ([`Launch::from_env`]): a world
    /// of one when no launch variables are set, else a rendezvous with the
    /// other ranks at `MASTER_ADDR:MASTER_PORT`.
    pub fn from_env(opts: &GroupOptions) -> Result<Group> {
        match Launch::from_env()? {
            None => Ok(Group::single()),
            Some(launch) => Group::connect(&launch, opts),
        }
    }

    /// Meets the other ranks of `launch`: rank 0 hosts the TCPStore (unless
    /// torchrun's agent does) and waits for every rank to connect, then Gloo
    /// connects every pair. On one machine (`MASTER_ADDR` a loopback
    /// address) Gloo binds to 127.0.0.1; else to `GLOO_SOCKET_IFNAME`'s
    /// interface when set, or to the address of the machine's hostname.
    pub fn connect(launch: &Launch, opts: &GroupOptions) -> Result<Group> {
        let (rank, world) = (launch.rank, launch.world_size);
        let timeout_ms = opts.timeout.as_millis().min(i64::MAX as u128) as i64;
        let rendezvous = |detail: String| Error::Rendezvous { rank, world, addr: launch.addr(), detail };
        let (is_server, prefix) = match launch.agent_store {
            Some(attempt) => (false, format!("/worker/attempt_{attempt}/ssl-rs")),
            None => (rank == 0, "ssl-rs".to_string()),
        };
        let store = ffi::Store::new(
            &launch.master_addr,
            launch.master_port,
            is_server,
            world,
            true,
            &prefix,
            timeout_ms,
        )
        .map_err(|d| rendezvous(rendezvous_hint(&d, launch, is_server, opts.timeout)))?;
        let iface = std::env::var("GLOO_SOCKET_IFNAME").unwrap_or_default();
        let host = if iface.is_empty() && launch.is_loopback() { "127.0.0.1" } else { "" };
        let nccl = opts.cuda_backend.uses_nccl();
        let pg = ffi::Pg::new(&store, rank, world, timeout_ms, &iface, host, opts.cuda_device, nccl)
            .map_err(|d| rendezvous(format!("the process group did not start: {d}")))?;
        let heartbeat = heartbeat::Heartbeat::start(launch, &prefix, timeout_ms)
            .map_err(|d| rendezvous(format!("the heartbeat did not start: {d}")))?;
        let native = Native { pg, store, _heartbeat: heartbeat, addr: launch.addr(), timeout: opts.timeout };
        Ok(Group {
            rank,
            world,
            local_rank: launch.local_rank,
            native: Some(native),
            fault: AtomicU8::new(0),
        })
    }

    /// This process's rank, `0..world_size`.
    pub fn rank(&self) -> usize {
        self.rank
    }
    /// The number of ranks.
    pub fn world_size(&self) -> usize {
        self.world
    }
    /// The rank on this machine (the CUDA device index under torchrun).
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }
    /// Rank 0: the one that writes logs, checkpoints and reports.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }
    /// More than one rank.
    pub fn is_distributed(&self) -> bool {
        self.world > 1
    }
    /// The collectives' timeout (`None` for a world of one).
    pub fn timeout(&self) -> Option<Duration> {
        self.native.as_ref().map(|n| n.timeout)
    }
    /// Whether NCCL was compiled in (the `nccl` feature).
    pub fn has_nccl() -> bool {
        ffi::has_nccl()
    }

    /// Switches this group to a deliberately wrong variant; see [`Fault`].
    #[doc(hidden)]
    pub fn inject_fault(&self, fault: Fault) {
        self.fault.store(fault as u8, Ordering::SeqCst);
    }

    fn fault(&self) -> Fault {
        match self.fault.load(Ordering::SeqCst) {
            1 => Fault::GatherLocalSliceBackward,
            2 => Fault::LocalStatistics,
            3 => Fault::AllReduceBackwardIdentity,
            4 => Fault::SkipGradSync,
            5 => Fault::LocalGather,
            _ => Fault::None,
        }
    }

    pub(crate) fn skips_grad_sync(&self) -> bool {
        self.fault() == Fault::SkipGradSync
    }

    pub(crate) fn pg(&self) -> Option<&ffi::Pg> {
        self.native.as_ref().map(|n| &n.pg)
    }

    /// An [`Error::Collective`] for `op`, with the heartbeats' verdict on
    /// the other ranks (for failures that surface elsewhere, e.g. a
    /// collective inside autograd's backward).
    pub fn failure(&self, op: &'static str, detail: String) -> Error {
        self.collective_error(op, detail)
    }

    pub(crate) fn collective_error(&self, op: &'static str, detail: String) -> Error {
        let lost = match &self.native {
            Some(n) => heartbeat::lost_ranks(&n.store, self.rank, self.world),
            None => Lost::Unknown,
        };
        Error::Collective { op, rank: self.rank, world: self.world, detail, lost }
    }

    /// Runs a collective on the native group (a no-op for a world of one).
    fn native_op(
        &self,
        op: &'static str,
        f: impl FnOnce(&ffi::Pg) -> std::result::Result<(), String>,
    ) -> Result<()> {
        match self.pg() {
            None => Ok(()),
            Some(pg) => f(pg).map_err(|d| self.collective_error(op, d)),
        }
    }

    /// Reduces `t` over the ranks, in place.
    pub fn all_reduce_(&self, t: &Tensor, op: ReduceOp) -> Result<()> {
        if self.world == 1 {
            return Ok(());
        }
        if self.fault() == Fault::LocalStatistics && op == ReduceOp::Sum {
            tch::no_grad(|| {
                let _ = t.shallow_clone().g_mul_scalar_(self.world as f64);
            });
            return Ok(());
        }
        in_place(t, |c| self.native_op("all_reduce", |pg| pg.all_reduce(c, op.code())))
    }

    /// The sum of `t` over the ranks, as a new tensor without gradient.
    pub fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        let out = t.detach().copy();
        self.all_reduce_(&out, ReduceOp::Sum)?;
        Ok(out)
    }

    /// Copies rank `root`'s `t` into every rank's `t`.
    pub fn broadcast_(&self, t: &Tensor, root: usize) -> Result<()> {
        if self.world == 1 {
            return Ok(());
        }
        in_place(t, |c| self.native_op("broadcast", |pg| pg.broadcast(c, root)))
    }

    /// Waits until every rank has reached the barrier (or the timeout).
    pub fn barrier(&self) -> Result<()> {
        self.native_op("barrier", |pg| pg.barrier())
    }

    /// Every rank's `t`, concatenated along dimension 0 in rank order,
    /// without gradient. Every rank's `t` must have the same shape.
    ///
    /// # Shapes
    /// `[n, …]` → `[world_size * n, …]`
    pub fn all_gather(&self, t: &Tensor) -> Result<Tensor> {
        if self.world == 1 {
            return Ok(t.shallow_clone());
        }
        let input = t.detach().contiguous();
        if self.fault() == Fault::LocalGather {
            return Ok(Tensor::cat(&vec![&input; self.world], 0));
        }
        let out = gathered_like(&input, self.world);
        self.native_op("all_gather", |pg| pg.all_gather(&out, &input))?;
        Ok(out)
    }

    /// Block `rank` of `t` (split along dimension 0 into `world_size`
    /// blocks), reduced over the ranks; without gradient.
    ///
    /// # Shapes
    /// `[world_size * n, …]` → `[n, …]`
    pub fn reduce_scatter(&self, t: &Tensor, op: ReduceOp) -> Result<Tensor> {
        if self.world == 1 {
            return Ok(t.shallow_clone());
        }
        let input = t.detach().contiguous();
        let out = scattered_like(&input, self.world, self.rank)?;
        self.native_op("reduce_scatter", |pg| pg.reduce_scatter(&out, &input, op.code()))?;
        Ok(out)
    }

    /// [`Group::all_gather`] that autograd differentiates: the backward
    /// pass hands each rank the sum over all ranks of the gradient on its
    /// block (a reduce-scatter), so every rank's loss reaches every input.
    /// The graph keeps a pointer to this group: use it with a group that
    /// outlives backward, such as [`world`].
    ///
    /// # Shapes
    /// `[n, …]` → `[world_size * n, …]`
    pub fn all_gather_with_grad(&self, t: &Tensor) -> Result<Tensor> {
        if self.world == 1 {
            return Ok(t.shallow_clone());
        }
        if self.fault() == Fault::LocalGather {
            return Ok(Tensor::cat(&vec![t; self.world], 0));
        }
        if self.fault() == Fault::GatherLocalSliceBackward {
            // lightly #1528: gather without gradient, then put the local
            // tensor back into its own slot.
            let n = t.size()[0];
            let all = self.all_gather(t)?;
            let r = self.rank as i64;
            let w = self.world as i64;
            let before = all.narrow(0, 0, r * n);
            let after = all.narrow(0, (r + 1) * n, (w - r - 1) * n);
            return Ok(Tensor::cat(&[&before, t, &after], 0));
        }
        let pg = self.pg().expect("world > 1 has a native group");
        pg.all_gather_grad(t).map_err(|d| self.collective_error("all_gather (differentiable)", d))
    }

    /// [`Group::all_reduce_sum`] that autograd differentiates: the backward
    /// pass sums the gradient over the ranks too, so a loss that every rank
    /// computes from the all-reduced statistics gets, after DDP averages the
    /// parameter gradients, the gradient of that loss on the global batch.
    /// The graph keeps a pointer to this group (see
    /// [`Group::all_gather_with_grad`]).
    pub fn all_reduce_with_grad(&self, t: &Tensor) -> Result<Tensor> {
        if self.world == 1 {
            return Ok(t.shallow_clone());
        }
        match self.fault() {
            Fault::LocalStatistics => return Ok(t * self.world as f64),
            Fault::AllReduceBackwardIdentity => {
                let sum = self.all_reduce_sum(t)?;
                return Ok(t + (sum - t.detach()));
            }
            _ => {}
        }
        let pg = self.pg().expect("world > 1 has a native group");
        pg.all_reduce_grad(t).map_err(|d| self.collective_error("all_reduce (differentiable)", d))
    }

    /// Copies rank 0's named tensors into every rank's, in buckets, as DDP
    /// does with a model's parameters and buffers when it starts. The
    /// tensors are matched by name (the order they come in does not
    /// matter), and the ranks first check that they hold the same names,
    /// shapes and types.
    pub fn broadcast_from_rank0(&self, named: &[(String, Tensor)]) -> Result<()> {
        if self.world == 1 || named.is_empty() {
            return Ok(());
        }
        let mut named: Vec<&(String, Tensor)> = named.iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let sorted: Vec<(String, Tensor)> =
            named.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
        self.check_same_tensors("parameters and buffers", &sorted)?;
        let tensors: Vec<Tensor> = sorted.into_iter().map(|(_, t)| t).collect();
        // Broadcast contiguous copies, then write back the ones that were not.
        let work: Vec<Tensor> = tensors.iter().map(|t| t.detach().contiguous()).collect();
        self.native_op("broadcast of parameters and buffers", |pg| {
            pg.broadcast_coalesced(&work, 0, 250 * 1024 * 1024)
        })?;
        tch::no_grad(|| {
            for (t, w) in tensors.iter().zip(&work) {
                if !t.is_contiguous() {
                    t.shallow_clone().copy_(w);
                }
            }
        });
        Ok(())
    }

    /// Checks that every rank holds the same list of names, shapes and
    /// element types (as DDP verifies its parameters across processes): a
    /// mismatch would pair one rank's tensor with another's.
    pub(crate) fn check_same_tensors(&self, what: &str, named: &[(String, Tensor)]) -> Result<()> {
        if self.world == 1 {
            return Ok(());
        }
        let mut text = String::new();
        for (n, t) in named {
            text += &format!("{n}:{:?}:{:?};", t.size(), t.kind());
        }
        let mine = fnv1a(text.as_bytes()) as i64;
        let all = self.all_gather(&Tensor::from_slice(&[mine]))?;
        let hashes = Vec::<i64>::try_from(&all).map_err(Error::Torch)?;
        let differ: Vec<usize> = (0..self.world).filter(|&r| hashes[r] != hashes[0]).collect();
        if differ.is_empty() {
            return Ok(());
        }
        Err(Error::Mismatch {
            rank: self.rank,
            world: self.world,
            detail: format!(
                "the {what} of ranks {differ:?} differ from rank 0's in names, shapes or types ({} tensors here): \
                 were the ranks started with the same model configuration?",
                named.len()
            ),
        })
    }

    /// Sets `key` in the rendezvous store (a no-op for a world of one).
    pub fn store_set(&self, key: &str, value: &[u8]) -> Result<()> {
        match &self.native {
            None => Ok(()),
            Some(n) => n.store.set(key, value).map_err(|d| self.collective_error("store set", d)),
        }
    }

    /// Waits for `key` in the rendezvous store (up to the timeout). A world
    /// of one has no store.
    pub fn store_get(&self, key: &str) -> Result<Vec<u8>> {
        match &self.native {
            None => Err(Error::Mismatch { rank: 0, world: 1, detail: "a world of one has no store".into() }),
            Some(n) => n.store.get(key).map_err(|d| self.collective_error("store get", d)),
        }
    }

    /// `MASTER_ADDR:MASTER_PORT` (empty for a world of one).
    pub fn addr(&self) -> &str {
        self.native.as_ref().map_or("", |n| n.addr.as_str())
    }
}

/// Runs `f` on `t` if it is contiguous, else on a contiguous copy that is
/// then written back.
fn in_place(t: &Tensor, f: impl FnOnce(&Tensor) -> Result<()>) -> Result<()> {
    if t.is_contiguous() {
        return f(t);
    }
    let c = t.contiguous();
    f(&c)?;
    tch::no_grad(|| {
        t.shallow_clone().copy_(&c);
    });
    Ok(())
}

fn gathered_like(t: &Tensor, world: usize) -> Tensor {
    let mut size = t.size();
    if size.is_empty() {
        size = vec![world as i64];
    } else {
        size[0] *= world as i64;
    }
    Tensor::empty(size, (t.kind(), t.device()))
}

fn scattered_like(t: &Tensor, world: usize, rank: usize) -> Result<Tensor> {
    let mut size = t.size();
    let w = world as i64;
    match size.first() {
        Some(&n) if n % w == 0 => size[0] = n / w,
        _ => {
            return Err(Error::Mismatch {
                rank,
                world,
                detail: format!("reduce_scatter needs dimension 0 divisible by {world}, got shape {size:?}"),
            })
        }
    }
    Ok(Tensor::empty(size, (t.kind(), t.device())))
}

/// The hint for a failed rendezvous.
fn rendezvous_hint(detail: &str, launch: &Launch, is_server: bool, timeout: Duration) -> String {
    let lower = detail.to_lowercase();
    if is_server && (lower.contains("eaddrinuse") || lower.contains("address already in use")) {
        return format!(
            "port {} on {} is already in use (another run?): choose another MASTER_PORT ({detail})",
            launch.master_port, launch.master_addr
        );
    }
    if lower.contains("timed out") || lower.contains("timeout") {
        return format!(
            "not all {} ranks met within {} s: are they all started, with the same MASTER_ADDR and MASTER_PORT? ({detail})",
            launch.world_size,
            timeout.as_secs()
        );
    }
    detail.to_string()
}

/// 64-bit FNV-1a: a hash that is the same in every process (std's
/// hashers are seeded per process).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}
