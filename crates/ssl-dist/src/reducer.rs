//! Gradient synchronisation with c10d's `Reducer`, the engine of PyTorch
//! DDP: hooks on each parameter's gradient accumulator copy the gradient
//! (divided by the world size) into a bucket, and a bucket's all-reduce
//! starts as soon as backward has filled it, overlapping communication
//! with the rest of backward; when backward returns, every rank holds the
//! same averaged gradients.

use crate::{ffi, Group, Result};
use tch::Tensor;

/// DDP's default bucket size.
pub const DEFAULT_BUCKET_MB: f64 = 25.0;

/// Averages parameter gradients over a group's ranks; see the module docs.
/// For a world of one it does nothing.
pub struct GradSync<'g> {
    group: &'g Group,
    reducer: Option<ffi::Reducer>,
}

impl<'g> GradSync<'g> {
    /// A reducer over the named parameters (those that require grad; the
    /// names appear in its errors). With `find_unused`, parameters that a
    /// step's graph does not reach are found by walking the graph from the
    /// outputs given to [`GradSync::prepare_backward`] (a parameter that
    /// gets no gradient without it is an error at the next step, as in DDP).
    ///
    /// The parameters are ordered by name, so that every rank's reducer
    /// sees the same list whatever order they come in (a `VarStore`'s is a
    /// hash map's), and the ranks check that their lists agree.
    pub fn new(
        group: &'g Group,
        params: &[(String, Tensor)],
        bucket_mb: f64,
        find_unused: bool,
    ) -> Result<Self> {
        let mut params: Vec<(String, Tensor)> = params
            .iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        group.check_same_tensors("parameters", &params)?;
        let reducer = match group.pg() {
            Some(pg) if !params.is_empty() => Some(
                pg.reducer(&params, (bucket_mb * 1024.0 * 1024.0) as i64, find_unused)
                    .map_err(|d| group.collective_error("building the gradient reducer", d))?,
            ),
            _ => None,
        };
        Ok(Self { group, reducer })
    }

    /// Before the forward pass of a micro-batch whose backward synchronises
    /// (rebuilds the buckets in gradient order once, after the first step).
    pub fn prepare_forward(&self) -> Result<()> {
        match &self.reducer {
            Some(r) => {
                r.prepare_forward().map_err(|d| self.group.collective_error("gradient synchronisation", d))
            }
            None => Ok(()),
        }
    }

    /// Arms the hooks so that the next backward pass averages the
    /// gradients; `outputs` are the tensors backward starts from (the loss).
    /// Not calling it leaves the gradients local, which is how the inner
    /// steps of gradient accumulation skip communication.
    pub fn prepare_backward(&self, outputs: &[&Tensor]) -> Result<()> {
        match &self.reducer {
            Some(_) if self.group.skips_grad_sync() => Ok(()),
            Some(r) => r
                .prepare_backward(outputs)
                .map_err(|d| self.group.collective_error("gradient synchronisation", d)),
            None => Ok(()),
        }
    }

    /// Whether gradients are synchronised at all (more than one rank).
    pub fn is_active(&self) -> bool {
        self.reducer.is_some()
    }
}
