//! DINO (Caron et al., "Emerging Properties in Self-Supervised Vision
//! Transformers", <https://arxiv.org/abs/2104.14294>): self-distillation
//! without labels. A student and a momentum (EMA) teacher share the
//! architecture (backbone, then [`DinoHead`]); the student learns to give,
//! for every crop, the teacher's sharpened and centred distribution over
//! prototypes of the *other* global crops ([`ssl_core::losses::dino`]).
//!
//! Multi-crop: the batch's first `global_views` views are the global crops,
//! seen by both networks; the remaining views are local crops (smaller, at
//! their own resolution: any size for a ResNet, a ViT interpolates its
//! position embeddings), seen by the student only. Crops of one resolution
//! go through a network together, as the paper's multi-crop wrapper does,
//! so BatchNorm normalises over all of them.
//!
//! The teacher's temperature rises linearly from `warmup_teacher_temp` to
//! `teacher_temp` over `warmup_teacher_temp_epochs`; the student's last
//! layer is frozen for `freeze_last_layer_epochs`; the centre is a moving
//! average (`center_momentum`) of the teacher's outputs over the global
//! batch (all ranks); the teacher's momentum follows a cosine schedule
//! from `base_momentum` to 1. The teacher's backbone is the one evaluated,
//! as in the paper.

use crate::backbone::{Backbone, BackboneConfig};
use serde::{Deserialize, Serialize};
use ssl_core::ema::Ema;
use ssl_core::losses::{dino, dino_center, dino_teacher_temp};
use ssl_core::method::{Batch, Method, Output, Progress};
use ssl_core::modules::{DinoHead, DinoHeadConfig};
use ssl_core::schedule::cosine_momentum;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// DINO's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DinoConfig {
    /// The backbone.
    pub backbone: BackboneConfig,
    /// Head MLP width (2048 in the paper).
    pub hidden: i64,
    /// Head bottleneck (256).
    pub bottleneck: i64,
    /// Linear layers of the head's MLP (3).
    pub head_layers: usize,
    /// Prototypes (65536).
    pub out: i64,
    /// BatchNorm in the head (the paper: off; lightly's CIFAR-10 benchmark: on).
    pub head_batch_norm: bool,
    /// The last layer's norms fixed at 1 (the paper and solo-learn: on).
    pub norm_last_layer: bool,
    /// Global crops: the batch's first views (2).
    pub global_views: usize,
    /// Student temperature (0.1).
    pub student_temp: f64,
    /// Teacher temperature after the warmup (0.04 to 0.07).
    pub teacher_temp: f64,
    /// Teacher temperature at the start (0.04).
    pub warmup_teacher_temp: f64,
    /// Epochs of the linear teacher-temperature warmup (30 of 100-300).
    pub warmup_teacher_temp_epochs: usize,
    /// Centre momentum (0.9).
    pub center_momentum: f64,
    /// Starting teacher momentum (0.996), rising to 1.
    pub base_momentum: f64,
    /// Epochs during which the student's last layer is fixed (1).
    pub freeze_last_layer_epochs: usize,
}

impl DinoConfig {
    /// The paper's settings on `backbone` (ViT-S/16 recipe: 65536
    /// prototypes, teacher 0.04 → 0.07 over 30 epochs).
    pub fn new(backbone: BackboneConfig) -> Self {
        Self {
            backbone,
            hidden: 2048,
            bottleneck: 256,
            head_layers: 3,
            out: 65536,
            head_batch_norm: false,
            norm_last_layer: true,
            global_views: 2,
            student_temp: 0.1,
            teacher_temp: 0.07,
            warmup_teacher_temp: 0.04,
            warmup_teacher_temp_epochs: 30,
            center_momentum: 0.9,
            base_momentum: 0.996,
            freeze_last_layer_epochs: 1,
        }
    }

    fn head(&self, input: i64) -> DinoHeadConfig {
        DinoHeadConfig {
            input,
            hidden: self.hidden,
            bottleneck: self.bottleneck,
            layers: self.head_layers,
            out: self.out,
            batch_norm: self.head_batch_norm,
            norm_last_layer: self.norm_last_layer,
        }
    }

    /// The teacher temperature at `epoch` (lightly's linear schedule).
    pub fn teacher_temp_at(&self, epoch: usize) -> f64 {
        dino_teacher_temp(self.warmup_teacher_temp, self.teacher_temp, self.warmup_teacher_temp_epochs, epoch)
    }
}

/// One network of the pair: `PREFIX.backbone.*`, `PREFIX.head.*`.
struct Net {
    backbone: Backbone,
    head: DinoHead,
}

impl Net {
    fn new(p: &nn::Path, cfg: &DinoConfig) -> Self {
        let backbone = Backbone::new(&(p / "backbone"), &cfg.backbone);
        let head = DinoHead::new(&(p / "head"), &cfg.head(backbone.feature_dim()));
        Self { backbone, head }
    }

    /// The views, concatenated by resolution (in order), through the
    /// network: prototype scores of each view, and backbone features of
    /// the first.
    fn forward(&self, views: &[Tensor], train: bool, freeze_last: bool) -> (Vec<Tensor>, Tensor) {
        let (mut out, mut first) = (Vec::with_capacity(views.len()), None);
        let mut start = 0;
        while start < views.len() {
            let size = views[start].size()[2..].to_vec();
            let end = (start..views.len()).find(|&i| views[i].size()[2..] != size[..]).unwrap_or(views.len());
            let x = Tensor::cat(&views[start..end], 0);
            let h = self.backbone.forward_t(&x, train);
            let z = self.head.forward(&h, train, freeze_last);
            let b = views[start].size()[0];
            if first.is_none() {
                first = Some(h.narrow(0, 0, b));
            }
            out.extend(z.split(b, 0));
            start = end;
        }
        (out, first.expect("at least one view"))
    }
}

/// DINO; see the module docs. Variables: `student.{backbone,head}.*`,
/// `teacher.{backbone,head}.*` (not trained), `center` `[1, out]`.
pub struct Dino {
    student: Net,
    teacher: Net,
    ema: Ema,
    center: Tensor,
    cfg: DinoConfig,
    teacher_temp: f64,
    freeze_last: bool,
}

impl Dino {
    /// Builds the networks in `vs`; the teacher starts as a copy of the
    /// student, the centre at 0.
    pub fn new(vs: &nn::VarStore, cfg: &DinoConfig) -> ssl_core::Result<Self> {
        if cfg.head_layers < 1 {
            return Err(ssl_core::Error::Config("dino's head_layers must be at least 1".into()));
        }
        if cfg.global_views < 1 {
            return Err(ssl_core::Error::Config("dino needs at least one global view".into()));
        }
        let root = vs.root();
        let student = Net::new(&(&root / "student"), cfg);
        let teacher = Net::new(&(&root / "teacher"), cfg);
        let center = root.zeros_no_train("center", &[1, cfg.out]);
        let ema = Ema::between(vs, "student.", "teacher.")?;
        Ok(Self {
            student,
            teacher,
            ema,
            center,
            teacher_temp: cfg.teacher_temp_at(0),
            freeze_last: cfg.freeze_last_layer_epochs > 0,
            cfg: cfg.clone(),
        })
    }

    /// The centre `[1, out]`.
    pub fn center(&self) -> &Tensor {
        &self.center
    }
}

impl Method for Dino {
    fn name(&self) -> &'static str {
        "dino"
    }

    /// Each rank's mean over its samples (DDP's average makes it the global
    /// batch's); the centre is updated from every rank's teacher outputs.
    fn loss(&self, batch: &Batch, train: bool) -> ssl_core::Result<Output> {
        let g = self.cfg.global_views;
        let views = &batch.views;
        if views.len() < 2 || views.len() < g {
            return Err(ssl_core::Error::Config(format!(
                "dino needs {g} global views and at least two views in all; the batch has {}",
                views.len()
            )));
        }
        let teacher = tch::no_grad(|| self.teacher.forward(&views[..g], train, false).0);
        let (student, features) = self.student.forward(views, train, self.freeze_last && train);
        let loss = dino(&teacher, &student, &self.center, self.teacher_temp, self.cfg.student_temp);
        // Collapse monitor: the entropy of the teacher distribution this loss
        // used (log K when uniform, 0 for one prototype).
        let entropy = tch::no_grad(|| {
            let p = ((&teacher[0].to_kind(tch::Kind::Float) - &self.center) / self.teacher_temp)
                .softmax(-1, tch::Kind::Float);
            -(&p * p.clamp_min(1e-12).log())
                .sum_dim_intlist([1i64].as_slice(), false, tch::Kind::Float)
                .mean(tch::Kind::Float)
        });
        if train {
            let center = dino_center(&self.center, &teacher, self.cfg.center_momentum, ssl_dist::world())?;
            tch::no_grad(|| self.center.shallow_clone().copy_(&center));
        }
        Ok(Output::new(loss).with_metrics(vec![("teacher_entropy", entropy)]).with_features(features))
    }

    fn before_step(&mut self, progress: Progress) {
        self.teacher_temp = self.cfg.teacher_temp_at(progress.epoch);
        self.freeze_last = progress.epoch < self.cfg.freeze_last_layer_epochs;
    }

    fn after_step(&mut self, step: usize, total_steps: usize) {
        self.ema.update(cosine_momentum(self.cfg.base_momentum, step, total_steps));
    }

    fn features(&self, x: &Tensor) -> Tensor {
        self.teacher.backbone.forward_t(x, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resnet::ResNetConfig;
    use tch::{Device, Kind};

    /// The method's loss and centre update from its networks' outputs,
    /// written out independently (f64): each of the 2 global teacher views,
    /// sharpened with the centre and the teacher temperature, against every
    /// other student view (the local crops at their own size included),
    /// cross-entropy averaged over samples and then over the pairs; the
    /// centre then moves to `0.9 · old + 0.1 · mean` of the teacher outputs.
    #[test]
    fn multi_crop_loss_and_centre_follow_the_formula() {
        tch::manual_seed(6);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let backbone = ResNetConfig::resnet18_cifar().with_width(4).with_in_channels(1).into();
        let cfg = DinoConfig { hidden: 16, bottleneck: 8, out: 12, ..DinoConfig::new(backbone) };
        let mut dino = Dino::new(&vs, &cfg).unwrap();
        vs.double();
        let _ = dino.center.shallow_clone().fill_(0.05);
        dino.before_step(ssl_core::method::Progress { step: 0, total_steps: 10, epoch: 0, epochs: 10 });
        let g = |s: i64| Tensor::randn([4, 1, s, s], (Kind::Double, Device::Cpu));
        let views = vec![g(12), g(12), g(8), g(8), g(8)];
        let (teacher, student) = tch::no_grad(|| {
            (dino.teacher.forward(&views[..2], true, false).0, dino.student.forward(&views, true, false).0)
        });
        let c0 = dino.center.copy();
        let batch = Batch { views: views.iter().map(Tensor::shallow_clone).collect(), labels: None };
        let loss = dino.loss(&batch, true).unwrap().loss.double_value(&[]);
        let (tt, ts) = (cfg.teacher_temp_at(0), cfg.student_temp);
        let mut total = 0.0;
        let mut pairs = 0;
        for (i, t) in teacher.iter().enumerate() {
            let p = ((t - &c0) / tt).softmax(-1, Kind::Double);
            for (j, s) in student.iter().enumerate() {
                if i == j {
                    continue;
                }
                let ce = -(&p * (s / ts).log_softmax(-1, Kind::Double)).sum_dim_intlist(
                    [1i64].as_slice(),
                    false,
                    Kind::Double,
                );
                total += ce.mean(Kind::Double).double_value(&[]);
                pairs += 1;
            }
        }
        assert_eq!(pairs, 2 * 4);
        let expected = total / pairs as f64;
        assert!((loss - expected).abs() < 1e-9 * expected.abs().max(1.0), "{loss} vs {expected}");
        let mean = Tensor::cat(&teacher, 0).mean_dim([0i64].as_slice(), true, Kind::Double);
        let want = &c0 * 0.9 + mean * 0.1;
        let d = (dino.center() - want).abs().max().double_value(&[]);
        assert!(d < 1e-12, "the centre differs from 0.9 old + 0.1 mean by {d}");
    }
}
