//! Collapse alarms: a self-supervised run can lower its loss while its
//! embeddings die (all samples mapped to one point, or to a few
//! directions). Two figures catch it, computed on the backbone features a
//! method returns during training:
//!
//! - **RankMe** (Garrido et al., "RankMe: Assessing the Downstream
//!   Performance of Pretrained Self-Supervised Representations by Their
//!   Rank", <https://arxiv.org/abs/2210.02885>): the exponential of the
//!   entropy of the normalised singular values of the `[N, D]` embedding
//!   matrix, between 1 (one direction) and `min(N, D)`;
//! - the **per-dimension standard deviation of the L2-normalised
//!   embeddings**, averaged over dimensions and multiplied by `sqrt(D)`
//!   (SimSiam's collapse monitor, Chen & He, <https://arxiv.org/abs/2011.10566>,
//!   fig. 2: about 1 for embeddings spread over the sphere, 0 when every
//!   sample has the same direction).
//!
//! [`CollapseAlarm`] turns them into warnings.

use crate::losses::l2_normalize;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// The collapse figures of one set of embeddings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CollapseStats {
    /// RankMe: effective rank, 1 to `min(samples, dim)`.
    pub rankme: f64,
    /// Mean per-dimension std of the L2-normalised embeddings, times
    /// `sqrt(dim)`: about 1 when spread, 0 when collapsed.
    pub normalized_std: f64,
    /// Embedding width.
    pub dim: i64,
    /// Embeddings the figures were computed on.
    pub samples: i64,
}

/// RankMe's epsilon (the paper's 1e-7).
const RANKME_EPS: f64 = 1e-7;

/// The figures of `features` `[N, D]` (computed in f64 on its device),
/// over its rows that are finite (libtorch's SVD refuses NaN).
pub fn collapse_stats(features: &Tensor) -> CollapseStats {
    tch::no_grad(|| {
        let f = features.to_kind(Kind::Double);
        let finite = f.isfinite().all_dim(1, false).nonzero().squeeze_dim(1);
        let f = if finite.size()[0] < f.size()[0] { f.index_select(0, &finite) } else { f };
        let (n, d) = (f.size()[0], f.size()[1]);
        let (_, s, _) = f.svd(true, false);
        let p = &s / s.sum(Kind::Double).clamp_min(1e-300) + RANKME_EPS;
        let rankme = (-(&p * p.log()).sum(Kind::Double)).exp().double_value(&[]);
        let std =
            l2_normalize(&f).std_dim([0i64].as_slice(), true, false).mean(Kind::Double).double_value(&[]);
        CollapseStats { rankme, normalized_std: std * (d as f64).sqrt(), dim: d, samples: n }
    })
}

/// Warns when the embeddings collapse: RankMe under 2 (one direction
/// left); RankMe under a quarter of the highest it reached in the run, or
/// under half of it while the normalised spread also fell under half of
/// its highest (a collapse under way); or a normalised spread under 0.05
/// (every sample nearly the same direction).
///
/// Rank alone falling by half is no alarm: healthy runs lose rank as they
/// learn, from the near-random features of the first epoch to a few
/// directions per class, while their spread holds or grows (VICReg on the
/// bundled digits: RankMe 52.5 after epoch 1 and 26 from epoch 9 on, spread
/// 0.26 then 0.32, 81.6% kNN); the half rule alone warned every epoch.
///
/// A warning is given once when a collapse starts; the same warning is not
/// repeated while it lasts (each epoch's figures are in its log line and in
/// `metrics.jsonl`), only once the rank has come back above half of its
/// best (masked spectrogram modelling's rank hovers at a quarter of its
/// first epoch's for dozens of epochs, which warned at most of them).
///
/// Its state (the best rank so far) is serialisable, so a resumed run
/// keeps the history.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CollapseAlarm {
    best_rank: f64,
    /// The highest normalised spread so far (absent from checkpoints
    /// written before it existed: 0, no history).
    #[serde(default)]
    best_spread: f64,
    /// The kind of collapse last reported, until the rank comes back above
    /// half of its best (absent from older checkpoints: none).
    #[serde(default)]
    raised: Option<Alarm>,
}

/// Which rule of [`CollapseAlarm`] fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Alarm {
    OneDirection,
    RankFell,
    NoSpread,
}

impl CollapseAlarm {
    /// A new alarm (no history).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the figures of `epoch` (1-based) and returns a warning when
    /// they show a collapse, unless the same kind was already reported and
    /// the rank has not come back above half of its best since.
    pub fn check(&mut self, epoch: usize, s: &CollapseStats) -> Option<String> {
        let (previous, previous_spread) = (self.best_rank, self.best_spread);
        self.best_rank = self.best_rank.max(s.rankme);
        self.best_spread = self.best_spread.max(s.normalized_std);
        let spread_fell = s.normalized_std < 0.5 * previous_spread;
        let (alarm, why) = if s.rankme < 2.0 {
            let why = format!(
                "effective rank (RankMe) {:.2} of {} dimensions: one direction left",
                s.rankme, s.dim
            );
            (Alarm::OneDirection, why)
        } else if s.rankme < 0.25 * previous || (s.rankme < 0.5 * previous && spread_fell) {
            let spread = if spread_fell {
                format!(", and the normalised spread to {:.3} from {:.3}", s.normalized_std, previous_spread)
            } else {
                String::new()
            };
            let why = format!(
                "effective rank (RankMe) fell to {:.1} from {:.1} earlier in the run ({} dimensions){spread}",
                s.rankme, previous, s.dim
            );
            (Alarm::RankFell, why)
        } else if s.normalized_std < 0.05 {
            let why = format!(
                "normalised feature spread {:.3} (about 1 when healthy, 0 when every sample looks the same)",
                s.normalized_std
            );
            (Alarm::NoSpread, why)
        } else {
            // Over only once the rank is back above half of its best, so
            // that a rank hovering at the threshold warns once.
            if s.rankme >= 0.5 * previous {
                self.raised = None;
            }
            return None;
        };
        if self.raised.replace(alarm) == Some(alarm) {
            return None;
        }
        Some(format!("warning: the embeddings are collapsing at epoch {epoch}: {why}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn spread_embeddings_have_full_rank_and_unit_spread() {
        tch::manual_seed(0);
        let x = Tensor::randn([2000, 16], (Kind::Double, Device::Cpu));
        let s = collapse_stats(&x);
        assert!(s.rankme > 15.0 && s.rankme <= 16.0 + 1e-6, "{s:?}");
        assert!((s.normalized_std - 1.0).abs() < 0.05, "{s:?}");
        assert!(CollapseAlarm::new().check(1, &s).is_none());
    }

    #[test]
    fn rankme_is_the_entropy_of_the_singular_values() {
        // Orthogonal directions with singular values 3 and 1: p = (3/4, 1/4).
        let x = Tensor::from_slice(&[3.0f64, 0.0, 0.0, 1.0]).reshape([2, 2]);
        let p = [0.75 + RANKME_EPS, 0.25 + RANKME_EPS];
        let want = (-(p[0] * p[0].ln() + p[1] * p[1].ln())).exp();
        assert!((collapse_stats(&x).rankme - want).abs() < 1e-12);
        // A row holding NaN (a skipped step's) is left out, not a panic.
        let with_nan =
            Tensor::cat(&[x.shallow_clone(), Tensor::from_slice(&[f64::NAN, 1.0]).reshape([1, 2])], 0);
        let s = collapse_stats(&with_nan);
        assert!((s.rankme - want).abs() < 1e-12 && s.samples == 2, "{s:?}");
    }

    #[test]
    fn a_healthy_run_losing_half_its_rank_is_no_collapse() {
        let mut alarm = CollapseAlarm::new();
        let stats = |rankme| CollapseStats { rankme, normalized_std: 0.4, dim: 128, samples: 2048 };
        // VICReg's figures on the bundled digits (81.6% kNN at the end).
        assert!(alarm.check(1, &stats(52.5)).is_none());
        for (epoch, rank) in [(5, 30.8), (9, 26.2), (15, 26.1)] {
            assert!(alarm.check(epoch, &stats(rank)).is_none(), "epoch {epoch}, rank {rank}");
        }
        let w = alarm.check(16, &stats(12.0)).expect("under a quarter of 52.5");
        assert!(w.contains("fell to 12.0 from 52.5"), "{w}");
        // Half the rank and half the spread: a collapse under way.
        let mut alarm = CollapseAlarm::new();
        assert!(alarm.check(1, &stats(40.0)).is_none());
        let fell = CollapseStats { normalized_std: 0.15, ..stats(19.0) };
        let w = alarm.check(2, &fell).expect("rank and spread both halved");
        assert!(w.contains("and the normalised spread to 0.150 from 0.400"), "{w}");
    }

    #[test]
    fn a_lasting_collapse_warns_once() {
        let stats = |rankme| CollapseStats { rankme, normalized_std: 0.4, dim: 1024, samples: 2048 };
        // A collapse that lasts is reported when it starts, again after the
        // rank came back above half of its best, and when it turns into
        // another kind; hovering at the threshold (epochs 10-12) warns once.
        let mut alarm = CollapseAlarm::new();
        assert!(alarm.check(1, &stats(100.0)).is_none());
        let epochs = [
            (2, 20.0),
            (3, 19.0),
            (4, 18.0),
            (5, 60.0),
            (6, 20.0),
            (7, 1.5),
            (8, 1.4),
            (9, 30.0),
            (10, 24.0),
            (11, 26.0),
            (12, 24.0),
        ];
        let warned: Vec<usize> =
            epochs.iter().filter_map(|&(e, r)| alarm.check(e, &stats(r)).map(|_| e)).collect();
        assert_eq!(warned, [2, 6, 7, 10]);
    }

    #[test]
    fn collapsed_embeddings_raise_the_alarm_naming_the_epoch() {
        tch::manual_seed(1);
        let mut alarm = CollapseAlarm::new();
        let healthy = Tensor::randn([500, 32], (Kind::Double, Device::Cpu));
        assert!(alarm.check(1, &collapse_stats(&healthy)).is_none());
        // Dimensional collapse: 4 directions of 32 left.
        let few = Tensor::randn([500, 4], (Kind::Double, Device::Cpu))
            .matmul(&Tensor::randn([4, 32], (Kind::Double, Device::Cpu)));
        let w = alarm.check(2, &collapse_stats(&few)).expect("a rank drop is a warning");
        assert!(w.contains("epoch 2") && w.contains("fell to"), "{w}");
        // Complete collapse: one point plus tiny noise.
        let one = Tensor::ones([500, 32], (Kind::Double, Device::Cpu))
            + Tensor::randn([500, 32], (Kind::Double, Device::Cpu)) * 1e-6;
        let s = collapse_stats(&one);
        assert!(s.normalized_std < 0.01, "{s:?}");
        let w = CollapseAlarm::new().check(7, &s).expect("a collapse is a warning");
        assert!(w.contains("epoch 7") && w.contains("RankMe"), "{w}");
    }
}
