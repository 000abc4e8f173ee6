//! Exponential moving average of one network into another, for momentum
//! encoders (MoCo <https://arxiv.org/abs/1911.05722>, BYOL
//! <https://arxiv.org/abs/2006.07733>).

use crate::{Error, Result};
use tch::Tensor;

/// Pairs of (online, target) tensors, matched by name.
pub struct Ema {
    params: Vec<(Tensor, Tensor)>,
    buffers: Vec<(Tensor, Tensor)>,
}

impl Ema {
    /// Matches every target tensor with the online tensor of the same name.
    /// Trainable online tensors are averaged; the others (BatchNorm running
    /// statistics) are copied. The target is set equal to the online network.
    pub fn new(online: &[(String, Tensor)], target: &[(String, Tensor)]) -> Result<Self> {
        let map: std::collections::HashMap<&str, &Tensor> =
            online.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let (mut params, mut buffers) = (Vec::new(), Vec::new());
        for (name, t) in target {
            let o = map
                .get(name.as_str())
                .ok_or_else(|| Error::Shape(format!("EMA: online net lacks `{name}`")))?;
            if o.size() != t.size() {
                return Err(Error::Shape(format!(
                    "EMA: `{name}` is {:?} online, {:?} target",
                    o.size(),
                    t.size()
                )));
            }
            let pair = (o.shallow_clone(), t.shallow_clone());
            if o.requires_grad() {
                params.push(pair)
            } else {
                buffers.push(pair)
            }
        }
        let ema = Self { params, buffers };
        ema.update(0.0);
        Ok(ema)
    }

    /// The momentum target of a method whose variables live in one store:
    /// the variables under `target_prefix` (e.g. `"target."`) are frozen
    /// (`requires_grad` off) and matched by the rest of their name with
    /// those under `online_prefix` (e.g. `"online."`); see [`Ema::new`].
    pub fn between(vs: &tch::nn::VarStore, online_prefix: &str, target_prefix: &str) -> Result<Self> {
        let vars = vs.variables();
        let under = |prefix: &str| -> Vec<(String, Tensor)> {
            vars.iter()
                .filter_map(|(n, t)| n.strip_prefix(prefix).map(|rest| (rest.to_string(), t.shallow_clone())))
                .collect()
        };
        let target = under(target_prefix);
        for (_, t) in &target {
            let _ = t.shallow_clone().set_requires_grad(false);
        }
        Self::new(&under(online_prefix), &target)
    }

    /// `target = tau * target + (1 - tau) * online` for parameters; buffers
    /// are copied.
    pub fn update(&self, tau: f64) {
        tch::no_grad(|| {
            for (o, t) in &self.params {
                let mut t = t.shallow_clone();
                let _ = t.g_mul_scalar_(tau).g_add_(&(o * (1.0 - tau)));
            }
            for (o, t) in &self.buffers {
                t.shallow_clone().copy_(o);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn update_moves_target_towards_online() {
        let o = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let t = Tensor::zeros([3], (Kind::Float, Device::Cpu));
        let ema = Ema::new(&[("w".into(), o.shallow_clone())], &[("w".into(), t.shallow_clone())]).unwrap();
        assert_eq!(t.double_value(&[0]), 1.0); // starts equal
        let _ = tch::no_grad(|| o.shallow_clone().fill_(3.0));
        ema.update(0.9);
        assert!((t.double_value(&[0]) - 1.2).abs() < 1e-6);
        assert!(Ema::new(&[], &[("w".into(), t)]).is_err());
    }
}
