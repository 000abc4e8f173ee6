//! Optimizers written on tensors, so that parameter groups, LARS and
//! checkpointing of their state are under our control: SGD (momentum,
//! nesterov), AdamW, and LARS (You et al., "Large Batch Training of
//! Convolutional Networks", <https://arxiv.org/abs/1708.03888>).
//!
//! Biases and normalisation parameters (every parameter with fewer than two
//! dimensions) can be excluded from weight decay and from LARS adaptation,
//! as SimCLR, BYOL and solo-learn do. Updates match `torch.optim.SGD`,
//! `torch.optim.AdamW` and lightly's `LARS`, checked by `tests/optim_parity.rs`.
//!
//! SGD and AdamW update each group of parameters (same learning rate and
//! decay) with libtorch's multi-tensor kernels (`_fused_sgd_`,
//! `_fused_adamw_`, as `torch.optim`'s `fused=True`, on CUDA and on the
//! CPU) and the gradient norm comes from `_foreach_norm`;
//! [`Optimizer::with_fused`] turns that off, to update each parameter on
//! its own. `tests/optim_parity.rs` checks both paths against `torch.optim`
//! and against each other.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Tensor};

/// Which update rule, with its own hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// SGD with heavy-ball or Nesterov momentum.
    Sgd {
        /// Momentum factor (0 disables it).
        momentum: f64,
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// Adam with decoupled weight decay.
    AdamW {
        /// First-moment decay.
        beta1: f64,
        /// Second-moment decay.
        beta2: f64,
        /// Added to the denominator.
        eps: f64,
    },
    /// SGD with momentum and a layer-wise trust ratio.
    Lars {
        /// Momentum factor.
        momentum: f64,
        /// The trust coefficient η (0.001 in the paper); the ratio is
        /// `η‖w‖ / (‖g‖ + wd‖w‖ + eps)`.
        trust_coefficient: f64,
        /// Added to the denominator of the trust ratio.
        eps: f64,
        /// solo-learn's `clip_lr`: the ratio becomes `min(ratio / lr, 1)`
        /// (with `lr` the scheduled rate of the step), so a parameter moves
        /// by at most `lr` times its adapted gradient. This makes the step
        /// `min(η‖w‖/…, lr)` instead of `lr · η‖w‖/…`: with η = 0.02,
        /// solo-learn's setting, steps are far larger than lightly's.
        #[serde(default)]
        clip_lr: bool,
    },
}

/// An optimizer's full configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    /// The update rule.
    pub kind: OptimizerKind,
    /// Peak learning rate (the schedule scales it per step).
    pub lr: f64,
    /// Weight decay (L2 for SGD and LARS, decoupled for AdamW).
    pub weight_decay: f64,
    /// Exclude 0-D and 1-D parameters (biases, norm weights) from weight
    /// decay and LARS adaptation.
    pub exclude_bias_and_norm: bool,
    /// Parameters whose name starts with one of these keep the peak
    /// learning rate whatever the schedule says (SimSiam's predictor).
    #[serde(default)]
    pub fixed_lr_prefixes: Vec<String>,
    /// Learning-rate multipliers by name prefix (the first match wins;
    /// unmatched parameters get 1), e.g. layer-wise decay for fine-tuning
    /// a ViT.
    #[serde(default)]
    pub lr_scales: Vec<(String, f64)>,
}

impl OptimizerConfig {
    /// SGD with momentum 0.9.
    pub fn sgd(lr: f64, weight_decay: f64) -> Self {
        Self {
            kind: OptimizerKind::Sgd { momentum: 0.9, nesterov: false },
            lr,
            weight_decay,
            exclude_bias_and_norm: true,
            fixed_lr_prefixes: Vec::new(),
            lr_scales: Vec::new(),
        }
    }
    /// AdamW with betas (0.9, 0.999) and eps 1e-8.
    pub fn adamw(lr: f64, weight_decay: f64) -> Self {
        Self {
            kind: OptimizerKind::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8 },
            lr,
            weight_decay,
            exclude_bias_and_norm: true,
            fixed_lr_prefixes: Vec::new(),
            lr_scales: Vec::new(),
        }
    }
    /// LARS with momentum 0.9 and trust coefficient 0.001 (lightly's).
    pub fn lars(lr: f64, weight_decay: f64) -> Self {
        Self {
            kind: OptimizerKind::Lars { momentum: 0.9, trust_coefficient: 1e-3, eps: 1e-8, clip_lr: false },
            lr,
            weight_decay,
            exclude_bias_and_norm: true,
            fixed_lr_prefixes: Vec::new(),
            lr_scales: Vec::new(),
        }
    }
}

/// One parameter with its optimizer state.
struct Param {
    name: String,
    value: Tensor,
    /// Weight decay and LARS adaptation apply to it.
    decay: bool,
    /// It always uses the peak learning rate.
    fixed_lr: bool,
    /// Multiplier of its learning rate.
    lr_scale: f64,
    /// Momentum buffer (SGD, LARS) or first moment (AdamW).
    buf1: Tensor,
    /// Second moment (AdamW only; empty otherwise).
    buf2: Option<Tensor>,
}

/// An optimizer over named parameters.
pub struct Optimizer {
    cfg: OptimizerConfig,
    params: Vec<Param>,
    step: i64,
    /// Multi-tensor kernels (see the module docs).
    fused: bool,
    /// The step number on the parameters' device, for the fused AdamW.
    step_tensor: Option<Tensor>,
}

impl Optimizer {
    /// An optimizer over named tensors that require grad.
    pub fn new(cfg: &OptimizerConfig, named: Vec<(String, Tensor)>) -> Self {
        let adam = matches!(cfg.kind, OptimizerKind::AdamW { .. });
        let mut params: Vec<Param> = named
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(name, value)| {
                let decay = !(cfg.exclude_bias_and_norm && value.dim() <= 1);
                let fixed_lr = cfg.fixed_lr_prefixes.iter().any(|pre| name.starts_with(pre.as_str()));
                let lr_scale = cfg
                    .lr_scales
                    .iter()
                    .find(|(pre, _)| name.starts_with(pre.as_str()))
                    .map_or(1.0, |(_, s)| *s);
                let buf1 = value.zeros_like().detach();
                let buf2 = adam.then(|| value.zeros_like().detach());
                Param { name, value, decay, fixed_lr, lr_scale, buf1, buf2 }
            })
            .collect();
        params.sort_by(|a, b| a.name.cmp(&b.name));
        Self { cfg: cfg.clone(), params, step: 0, fused: true, step_tensor: None }
    }

    /// The same optimizer with the multi-tensor kernels on or off (on by
    /// default, on every device). LARS always updates each parameter on its
    /// own.
    pub fn with_fused(mut self, on: bool) -> Self {
        self.fused = on;
        self
    }

    /// Whether SGD and AdamW steps use the multi-tensor kernels.
    pub fn fused(&self) -> bool {
        self.fused && !matches!(self.cfg.kind, OptimizerKind::Lars { .. })
    }

    /// An optimizer over every trainable variable of a var store.
    pub fn from_var_store(cfg: &OptimizerConfig, vs: &VarStore) -> Self {
        Self::new(cfg, vs.variables().into_iter().collect())
    }

    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.cfg
    }

    /// Steps taken so far.
    pub fn steps(&self) -> i64 {
        self.step
    }

    /// Number of parameters that get weight decay / that do not.
    pub fn group_sizes(&self) -> (usize, usize) {
        let decayed = self.params.iter().filter(|p| p.decay).count();
        (decayed, self.params.len() - decayed)
    }

    /// Clears every gradient.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.value.grad();
            if g.defined() {
                let _ = g.detach_();
                let _ = g.zero_();
            }
        }
    }

    /// Scales gradients so that their global L2 norm is at most `max_norm`,
    /// as `torch.nn.utils.clip_grad_norm_`. Returns the norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let grads: Vec<Tensor> = self.params.iter().map(|p| p.value.grad()).filter(|g| g.defined()).collect();
        let total = self.norm_of(&grads);
        if grads.is_empty() || !total.is_finite() {
            return total;
        }
        let coef = max_norm / (total + 1e-6);
        if coef < 1.0 {
            tch::no_grad(|| {
                for mut g in grads {
                    let _ = g.g_mul_scalar_(coef);
                }
            });
        }
        total
    }

    /// The global L2 norm of the gradients (0 without any; NaN or
    /// infinite when a gradient holds a NaN or an infinity).
    pub fn grad_norm(&self) -> f64 {
        let grads: Vec<Tensor> = self.params.iter().map(|p| p.value.grad()).filter(|g| g.defined()).collect();
        self.norm_of(&grads)
    }

    fn norm_of(&self, grads: &[Tensor]) -> f64 {
        if self.fused {
            Self::fused_global_norm(grads)
        } else {
            Self::global_norm(grads)
        }
    }

    fn global_norm(grads: &[Tensor]) -> f64 {
        if grads.is_empty() {
            return 0.0;
        }
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm().to_kind(tch::Kind::Float)).collect();
        Tensor::stack(&norms, 0).norm().double_value(&[])
    }

    /// [`Optimizer::global_norm`] through `_foreach_norm`.
    fn fused_global_norm(grads: &[Tensor]) -> f64 {
        if grads.is_empty() {
            return 0.0;
        }
        let refs: Vec<&Tensor> = grads.iter().collect();
        match crate::fused::global_norm(&refs) {
            Ok(n) => n.double_value(&[]),
            Err(e) => panic!("the gradient norm (_foreach_norm) failed: {e}"),
        }
    }

    /// One fused update of every parameter with a gradient, a call per
    /// group of equal learning rate and weight decay.
    fn fused_step(&mut self, lr: f64) {
        let t = self.step as f64;
        let mut groups: Vec<((u64, u64), Vec<usize>)> = Vec::new();
        let mut grads = Vec::with_capacity(self.params.len());
        for (i, p) in self.params.iter().enumerate() {
            let g = p.value.grad();
            grads.push(g);
            if !grads[i].defined() {
                continue;
            }
            let wd = if p.decay { self.cfg.weight_decay } else { 0.0 };
            let lr = if p.fixed_lr { self.cfg.lr } else { lr } * p.lr_scale;
            let key = (lr.to_bits(), wd.to_bits());
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        let device = self.params.first().map_or(tch::Device::Cpu, |p| p.value.device());
        let step_t = self.step_tensor.get_or_insert_with(|| Tensor::zeros([], (tch::Kind::Float, device)));
        tch::no_grad(|| {
            if matches!(self.cfg.kind, OptimizerKind::AdamW { .. }) {
                let _ = step_t.fill_(t);
            }
            for ((lr_bits, wd_bits), members) in &groups {
                let (lr, wd) = (f64::from_bits(*lr_bits), f64::from_bits(*wd_bits));
                let params: Vec<&Tensor> = members.iter().map(|&i| &self.params[i].value).collect();
                let gs: Vec<&Tensor> = members.iter().map(|&i| &grads[i]).collect();
                let bufs: Vec<&Tensor> = members.iter().map(|&i| &self.params[i].buf1).collect();
                let done = match self.cfg.kind {
                    OptimizerKind::Sgd { momentum, nesterov } => {
                        crate::fused::sgd(&params, &gs, &bufs, lr, (momentum, nesterov), wd)
                    }
                    OptimizerKind::AdamW { beta1, beta2, eps } => {
                        let v: Vec<&Tensor> = members
                            .iter()
                            .map(|&i| self.params[i].buf2.as_ref().expect("AdamW keeps a second moment"))
                            .collect();
                        crate::fused::adamw(&params, &gs, &bufs, &v, step_t, lr, (beta1, beta2, eps), wd)
                    }
                    OptimizerKind::Lars { .. } => unreachable!("LARS has no fused path"),
                };
                if let Err(e) = done {
                    panic!("the fused optimizer step failed: {e}");
                }
            }
        });
    }

    /// One update with learning rate `lr` (the schedule's value).
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        if self.fused() {
            self.fused_step(lr);
            return;
        }
        let t = self.step as f64;
        let wd = self.cfg.weight_decay;
        tch::no_grad(|| {
            for p in &mut self.params {
                let grad = p.value.grad();
                if !grad.defined() {
                    continue;
                }
                let wd = if p.decay { wd } else { 0.0 };
                let lr = if p.fixed_lr { self.cfg.lr } else { lr } * p.lr_scale;
                match self.cfg.kind {
                    OptimizerKind::Sgd { momentum, nesterov } => {
                        let mut d = if wd != 0.0 { &grad + &p.value * wd } else { grad.shallow_clone() };
                        if momentum != 0.0 {
                            let _ = p.buf1.g_mul_scalar_(momentum).g_add_(&d);
                            d = if nesterov { d + &p.buf1 * momentum } else { p.buf1.shallow_clone() };
                        }
                        let _ = p.value.g_sub_(&(d * lr));
                    }
                    OptimizerKind::AdamW { beta1, beta2, eps } => {
                        if wd != 0.0 {
                            let _ = p.value.g_mul_scalar_(1.0 - lr * wd);
                        }
                        let _ = p.buf1.g_mul_scalar_(beta1).g_add_(&(&grad * (1.0 - beta1)));
                        let v = p.buf2.as_mut().expect("AdamW keeps a second moment");
                        let _ = v.g_mul_scalar_(beta2).g_add_(&(grad.square() * (1.0 - beta2)));
                        let bc1 = 1.0 - beta1.powf(t);
                        let bc2 = 1.0 - beta2.powf(t);
                        let denom = v.sqrt() / bc2.sqrt() + eps;
                        let _ = p.value.g_sub_(&(&p.buf1 / denom * (lr / bc1)));
                    }
                    OptimizerKind::Lars { momentum, trust_coefficient, eps, clip_lr } => {
                        // lightly's LARS: decay and the trust ratio apply
                        // together, and only when both norms are non-zero.
                        let mut d = grad.shallow_clone();
                        if wd != 0.0 {
                            let w_norm = p.value.norm();
                            let g_norm = grad.norm();
                            let mut ratio = (&w_norm * trust_coefficient) / (&g_norm + &w_norm * wd + eps);
                            if clip_lr {
                                // At lr 0 the ratio is infinite and clipped to 1.
                                ratio = (ratio / lr).clamp_max(1.0);
                            }
                            let scaled = (&grad + &p.value * wd) * &ratio;
                            let both = w_norm.gt(0.0).logical_and(&g_norm.gt(0.0));
                            d = scaled.where_self(&both, &grad);
                        }
                        let _ = p.buf1.g_mul_scalar_(momentum).g_add_(&d);
                        let _ = p.value.g_sub_(&(&p.buf1 * lr));
                    }
                }
            }
        });
    }

    /// The optimizer state as named tensors (for checkpoints).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("step".to_string(), Tensor::from(self.step))];
        for p in &self.params {
            out.push((format!("{}.buf1", p.name), p.buf1.shallow_clone()));
            if let Some(v) = &p.buf2 {
                out.push((format!("{}.buf2", p.name), v.shallow_clone()));
            }
        }
        out
    }

    /// Restores state written by [`Optimizer::state_tensors`]. Every
    /// parameter must be present with the same shape.
    pub fn load_state_tensors(&mut self, named: &[(String, Tensor)]) -> Result<()> {
        let map: std::collections::HashMap<&str, &Tensor> =
            named.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let get = |key: &str, like: &Tensor| -> Result<Tensor> {
            let t = map.get(key).ok_or_else(|| Error::Shape(format!("optimizer state lacks `{key}`")))?;
            if t.size() != like.size() {
                return Err(Error::Shape(format!(
                    "optimizer state `{key}` has shape {:?}, the model needs {:?}",
                    t.size(),
                    like.size()
                )));
            }
            Ok(t.to_device(like.device()).to_kind(like.kind()))
        };
        let step = map.get("step").ok_or_else(|| Error::Shape("optimizer state lacks `step`".into()))?;
        for p in &mut self.params {
            let b1 = get(&format!("{}.buf1", p.name), &p.buf1)?;
            tch::no_grad(|| p.buf1.copy_(&b1));
            if let Some(v) = &mut p.buf2 {
                let b2 = get(&format!("{}.buf2", p.name), v)?;
                tch::no_grad(|| v.copy_(&b2));
            }
        }
        self.step = step.int64_value(&[]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn quadratic_min(cfg: OptimizerConfig, steps: usize) -> f64 {
        let x = Tensor::from_slice(&[3.0f32, -2.0]).reshape([1, 2]).set_requires_grad(true);
        let mut opt = Optimizer::new(&cfg, vec![("x".into(), x.shallow_clone())]);
        for _ in 0..steps {
            opt.zero_grad();
            let loss = x.square().sum(Kind::Float);
            loss.backward();
            opt.step(cfg.lr);
        }
        x.square().sum(Kind::Float).double_value(&[])
    }

    #[test]
    fn every_optimizer_minimises_a_quadratic() {
        assert!(quadratic_min(OptimizerConfig::sgd(0.1, 0.0), 300) < 1e-6);
        assert!(quadratic_min(OptimizerConfig::adamw(0.1, 0.0), 300) < 1e-3);
        // LARS' trust ratio (active with weight decay) keeps steps
        // proportional to ||x||: geometric decay.
        assert!(quadratic_min(OptimizerConfig::lars(20.0, 1e-4), 300) < 1e-2);
    }

    #[test]
    fn biases_are_excluded_from_decay() {
        let vs = VarStore::new(Device::Cpu);
        let _lin = tch::nn::linear(vs.root() / "fc", 3, 2, Default::default());
        let opt = Optimizer::from_var_store(&OptimizerConfig::sgd(0.1, 1e-4), &vs);
        assert_eq!(opt.group_sizes(), (1, 1));
    }

    #[test]
    fn clip_grad_norm_caps_the_global_norm() {
        let x = Tensor::from_slice(&[3.0f32, 4.0]).set_requires_grad(true);
        let mut opt = Optimizer::new(&OptimizerConfig::sgd(0.1, 0.0), vec![("x".into(), x.shallow_clone())]);
        (&x * 10.0).sum(Kind::Float).backward(); // grad = [10, 10], norm 14.14
        let before = opt.clip_grad_norm(1.0);
        assert!((before - 200f64.sqrt()).abs() < 1e-4);
        assert!((x.grad().norm().double_value(&[]) - 1.0).abs() < 1e-4);
    }

    #[test]
    fn fixed_lr_parameters_ignore_the_schedule() {
        let a = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let b = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let cfg = OptimizerConfig {
            kind: OptimizerKind::Sgd { momentum: 0.0, nesterov: false },
            fixed_lr_prefixes: vec!["predictor.".into()],
            ..OptimizerConfig::sgd(0.5, 0.0)
        };
        let named = vec![
            ("predictor.w".to_string(), a.shallow_clone()),
            ("backbone.w".to_string(), b.shallow_clone()),
        ];
        let mut opt = Optimizer::new(&cfg, named);
        (&a + &b).sum(Kind::Float).backward();
        opt.step(0.0); // the schedule says 0
        assert_eq!(a.double_value(&[0]), 0.5);
        assert_eq!(b.double_value(&[0]), 1.0);
    }

    #[test]
    fn lr_scales_multiply_by_the_first_matching_prefix() {
        let ts: Vec<Tensor> = (0..3).map(|_| Tensor::from_slice(&[1.0f32]).set_requires_grad(true)).collect();
        let cfg = OptimizerConfig {
            kind: OptimizerKind::Sgd { momentum: 0.0, nesterov: false },
            lr_scales: vec![("blocks.1.".into(), 0.5), ("blocks.".into(), 0.25)],
            ..OptimizerConfig::sgd(1.0, 0.0)
        };
        let names = ["blocks.1.w", "blocks.0.w", "head.w"];
        let named = names.iter().zip(&ts).map(|(n, t)| (n.to_string(), t.shallow_clone())).collect();
        let mut opt = Optimizer::new(&cfg, named);
        Tensor::stack(&ts, 0).sum(Kind::Float).backward();
        opt.step(0.1);
        let got: Vec<f64> = ts.iter().map(|t| t.double_value(&[0])).collect();
        let want = [1.0 - 0.1 * 0.5, 1.0 - 0.1 * 0.25, 1.0 - 0.1];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }
}
