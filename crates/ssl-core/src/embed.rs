//! Embeddings out: a data set's features under a trained encoder, written
//! for numpy (`embeddings.npy`, one JSONL row per item), and each item's
//! nearest neighbours by cosine similarity (lightly's workflow: find
//! near-duplicates, look at what the encoder groups together).
//!
//! The neighbours are found in blocks of queries against blocks of keys,
//! keeping a running top-k, so the `N × N` similarity matrix never exists:
//! memory grows with `N × D` (the embeddings) and `block²`, not `N²`.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;
use tch::{Kind, Tensor};

/// Rows of at most this many items are compared at once.
pub const BLOCK: i64 = 4096;

/// The `k` nearest other items of every row of `emb` (`[N, D]`) by cosine
/// similarity, most similar first: indices `[N, k]` (int64) and
/// similarities `[N, k]` (f32). An item is never its own neighbour; `k` is
/// cut to `N - 1`. Computed in blocks of `block` rows (see the module docs).
pub fn nearest_neighbors(emb: &Tensor, k: usize, block: i64) -> (Tensor, Tensor) {
    let n = emb.size()[0];
    let k = (k as i64).min(n - 1).max(0);
    let e = emb.to_kind(Kind::Float);
    let e = &e / e.norm_scalaropt_dim(2, [1i64].as_slice(), true).clamp_min(1e-12);
    let (mut all_idx, mut all_sim) = (Vec::new(), Vec::new());
    tch::no_grad(|| {
        for q0 in (0..n).step_by(block.max(1) as usize) {
            let qn = block.min(n - q0);
            let q = e.narrow(0, q0, qn);
            let mut best_sim = Tensor::full([qn, k], f64::NEG_INFINITY, (Kind::Float, e.device()));
            let mut best_idx = Tensor::full([qn, k], -1, (Kind::Int64, e.device()));
            for k0 in (0..n).step_by(block.max(1) as usize) {
                let kn = block.min(n - k0);
                let mut s = q.matmul(&e.narrow(0, k0, kn).transpose(0, 1));
                // Each item against itself: not a neighbour.
                let (lo, hi) = (q0.max(k0), (q0 + qn).min(k0 + kn));
                if lo < hi {
                    let rows = Tensor::arange_start(lo - q0, hi - q0, (Kind::Int64, e.device()));
                    let cols = Tensor::arange_start(lo - k0, hi - k0, (Kind::Int64, e.device()));
                    let _ = s.index_put_(&[Some(rows), Some(cols)], &Tensor::from(f32::NEG_INFINITY), false);
                }
                let idx =
                    Tensor::arange_start(k0, k0 + kn, (Kind::Int64, e.device())).expand([qn, kn], false);
                let cand_sim = Tensor::cat(&[&best_sim, &s], 1);
                let cand_idx = Tensor::cat(&[&best_idx, &idx], 1);
                let (top, pos) = cand_sim.topk(k, 1, true, true);
                best_idx = cand_idx.gather(1, &pos, false);
                best_sim = top;
            }
            all_idx.push(best_idx);
            all_sim.push(best_sim);
        }
    });
    if all_idx.is_empty() {
        return (
            Tensor::zeros([0, k], (Kind::Int64, e.device())),
            Tensor::zeros([0, k], (Kind::Float, e.device())),
        );
    }
    (Tensor::cat(&all_idx, 0), Tensor::cat(&all_sim, 0))
}

/// What [`write_embeddings`] wrote.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EmbedSummary {
    /// Items embedded.
    pub items: usize,
    /// Embedding width.
    pub dim: usize,
    /// Neighbours per item, when asked for.
    pub neighbors: Option<usize>,
}

fn write_npy(t: &Tensor, path: &Path) -> Result<()> {
    let tmp = crate::metrics::tmp_path(path);
    t.to_device(tch::Device::Cpu)
        .contiguous()
        .write_npy(&tmp)
        .map_err(|e| Error::TorchFile { path: tmp.clone(), source: e })?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Writes into `dir` (created if needed):
/// - `embeddings.npy`: `emb` as f32 `[N, D]` (`numpy.load` reads it);
/// - `items.jsonl`: `rows[i]` with `"index": i` added (and, with
///   `neighbors`, the item's `"neighbors"` and their `"cosines"`);
/// - with `neighbors: Some(k)`, `neighbors.npy` (int64 `[N, k]`, most
///   similar first) and `neighbor_cosines.npy` (f32 `[N, k]`), from
///   [`nearest_neighbors`].
///
/// Files are written to a temporary name and renamed into place; existing
/// ones of these names are replaced.
pub fn write_embeddings(
    dir: &Path,
    emb: &Tensor,
    rows: Vec<serde_json::Value>,
    neighbors: Option<usize>,
) -> Result<EmbedSummary> {
    let n = emb.size()[0] as usize;
    if rows.len() != n {
        return Err(Error::Shape(format!("{} rows for {n} embeddings", rows.len())));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let emb = emb.to_device(tch::Device::Cpu).to_kind(Kind::Float);
    write_npy(&emb, &dir.join("embeddings.npy"))?;
    let nn = neighbors.map(|k| nearest_neighbors(&emb, k, BLOCK));
    if let Some((idx, sim)) = &nn {
        write_npy(idx, &dir.join("neighbors.npy"))?;
        write_npy(sim, &dir.join("neighbor_cosines.npy"))?;
    }
    let path = dir.join("items.jsonl");
    let tmp = crate::metrics::tmp_path(&path);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?);
    let lists = nn.as_ref().map(|(idx, sim)| {
        (
            Vec::<Vec<i64>>::try_from(idx).unwrap_or_default(),
            Vec::<Vec<f32>>::try_from(sim).unwrap_or_default(),
        )
    });
    for (i, mut row) in rows.into_iter().enumerate() {
        if !row.is_object() {
            row = serde_json::json!({ "value": row });
        }
        row["index"] = serde_json::json!(i);
        if let Some((idx, sim)) = &lists {
            row["neighbors"] = serde_json::json!(idx[i]);
            row["cosines"] = serde_json::json!(sim[i]);
        }
        writeln!(f, "{row}").map_err(|e| Error::io(&tmp, e))?;
    }
    f.into_inner().map_err(|e| Error::io(&tmp, e.into_error()))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    Ok(EmbedSummary {
        items: n,
        dim: emb.size().get(1).copied().unwrap_or(0) as usize,
        neighbors: nn.map(|(i, _)| i.size()[1] as usize),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn blocked_neighbours_equal_the_full_matrix() {
        tch::manual_seed(3);
        let e = Tensor::randn([50, 8], (Kind::Float, Device::Cpu));
        let (idx, sim) = nearest_neighbors(&e, 5, 7);
        let u = &e / e.norm_scalaropt_dim(2, [1i64].as_slice(), true);
        let mut full = u.matmul(&u.transpose(0, 1));
        let _ = full.fill_diagonal_(f64::NEG_INFINITY, false);
        let (want_sim, want_idx) = full.topk(5, 1, true, true);
        assert!(idx.equal(&want_idx), "indices");
        assert!((sim - want_sim).abs().max().double_value(&[]) < 1e-5);
        // k larger than the set: every other item.
        let (idx, _) = nearest_neighbors(&e.narrow(0, 0, 3), 10, 2);
        assert_eq!(idx.size(), [3, 2]);
        assert_eq!(Vec::<i64>::try_from(idx.get(0)).unwrap().iter().filter(|&&j| j == 0).count(), 0);
    }

    #[test]
    fn files_are_written_for_numpy_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let e = Tensor::from_slice2(&[[1.0f32, 0.0], [0.9, 0.1], [0.0, 1.0]]);
        let rows = (0..3).map(|i| serde_json::json!({"label": i % 2})).collect();
        let s = write_embeddings(dir.path(), &e, rows, Some(1)).unwrap();
        assert_eq!((s.items, s.dim, s.neighbors), (3, 2, Some(1)));
        assert!(Tensor::read_npy(dir.path().join("embeddings.npy")).unwrap().equal(&e));
        let nb = Tensor::read_npy(dir.path().join("neighbors.npy")).unwrap();
        assert_eq!(Vec::<i64>::try_from(nb.view([-1])).unwrap(), [1, 0, 1]);
        let lines = std::fs::read_to_string(dir.path().join("items.jsonl")).unwrap();
        let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
        assert_eq!(first["index"], 0);
        assert_eq!(first["neighbors"], serde_json::json!([1]));
        assert!(write_embeddings(dir.path(), &e, vec![], None)
            .unwrap_err()
            .to_string()
            .contains("0 rows for 3"));
    }
}
