//! DINO's pieces against lightly 1.6.0 and torch, from fixtures written by
//! `tools/golden/dino.py`: the loss and its gradients (f64 to 1e-10, f32 to
//! 1e-5), the centre update, the teacher-temperature warmup, the projection
//! head (with and without BatchNorm) and a ViT's position embeddings
//! resampled to other patch grids (f64 to 1e-10).

use ssl_core::losses::{dino, dino_center, dino_teacher_temp};
use ssl_core::modules::{DinoHead, DinoHeadConfig};
use ssl_core::vit::{Vit, VitConfig};
use std::collections::HashMap;
use tch::{nn, Device, Kind, Tensor};

fn fixtures() -> HashMap<String, Tensor> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dino.safetensors");
    Tensor::read_safetensors(path).expect("reading the DINO fixtures").into_iter().collect()
}

fn max_rel(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.size(), want.size());
    let diff = (got.to_kind(Kind::Double) - want.to_kind(Kind::Double)).abs();
    (diff / want.to_kind(Kind::Double).abs().clamp_min(1.0)).max().double_value(&[])
}

#[test]
fn loss_gradients_and_centre_match_lightly() {
    let fx = fixtures();
    for (kind, tol) in [(Kind::Double, 1e-10), (Kind::Float, 1e-5)] {
        let teacher: Vec<Tensor> = (0..2).map(|i| fx[&format!("loss.teacher{i}")].to_kind(kind)).collect();
        let student: Vec<Tensor> = (0..5)
            .map(|i| fx[&format!("loss.student{i}")].to_kind(kind).detach().set_requires_grad(true))
            .collect();
        let center = fx["loss.center"].to_kind(kind);
        let loss = dino(&teacher, &student, &center, 0.0625, 0.1);
        loss.backward();
        let d = max_rel(&loss, &fx["loss.loss"]);
        assert!(d <= tol, "loss ({kind:?}): {d:e}");
        for (i, s) in student.iter().enumerate() {
            let d = max_rel(&s.grad(), &fx[&format!("loss.grad_student{i}")]);
            assert!(d <= tol, "grad of student view {i} ({kind:?}): {d:e}");
        }
        let after = dino_center(&center, &teacher, 0.9, ssl_dist::world()).unwrap();
        let d = max_rel(&after, &fx["loss.center_after"]);
        assert!(d <= tol, "centre update ({kind:?}): {d:e}");
    }
}

#[test]
fn teacher_temperature_warmup_matches_lightly() {
    let want = Vec::<f64>::try_from(&fixtures()["schedule"]).unwrap();
    for (epoch, w) in want.iter().enumerate() {
        let got = dino_teacher_temp(0.04, 0.07, 5, epoch);
        assert!((got - w).abs() < 1e-7, "epoch {epoch}: {got} against {w}");
    }
}

fn head(prefix: &str, batch_norm: bool) -> (nn::VarStore, DinoHead) {
    let fx = fixtures();
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = DinoHeadConfig {
        input: 6,
        hidden: 10,
        bottleneck: 5,
        layers: 3,
        out: 12,
        batch_norm,
        norm_last_layer: true,
    };
    let h = DinoHead::new(&vs.root(), &cfg);
    let mut vs = vs;
    vs.double();
    let vars = vs.variables();
    let sd: Vec<(&str, &Tensor)> =
        fx.iter().filter_map(|(k, v)| k.strip_prefix(&format!("{prefix}.sd.")).map(|n| (n, v))).collect();
    assert_eq!(vars.len(), sd.len(), "{prefix}: the same variables as lightly's state dict");
    for (name, value) in sd {
        let var = vars.get(name).unwrap_or_else(|| panic!("{prefix}: no variable `{name}`"));
        tch::no_grad(|| var.shallow_clone().copy_(&value.to_kind(var.kind())));
    }
    (vs, h)
}

#[test]
fn projection_head_matches_lightly() {
    let fx = fixtures();
    for (prefix, bn) in [("head", false), ("head_bn", true)] {
        let (vs, h) = head(prefix, bn);
        assert!(!vs.variables()["last_layer.weight_g"].requires_grad(), "norm_last_layer fixes the norms");
        let x = &fx[&format!("{prefix}.x")];
        let y = h.forward(x, true, false);
        let d = max_rel(&y, &fx[&format!("{prefix}.y")]);
        assert!(d <= 1e-10, "{prefix}: {d:e}");
        // A frozen last layer: the same output, zero gradients for it.
        let frozen = h.forward(x, true, true);
        assert!(max_rel(&frozen, &y) <= 1e-12);
        frozen.sum(Kind::Double).backward();
        let v = vs.variables()["last_layer.weight_v"].grad();
        assert!(
            v.defined() && v.abs().max().double_value(&[]) == 0.0,
            "{prefix}: the frozen layer's gradient"
        );
        let w = vs.variables()["layers.0.weight"].grad();
        assert!(w.abs().max().double_value(&[]) > 0.0, "{prefix}: the MLP still trains");
    }
}

#[test]
fn position_embeddings_resample_as_torch_interpolate() {
    let fx = fixtures();
    let cfg = VitConfig {
        image_size: 28,
        patch_size: 4,
        in_channels: 1,
        dim: 8,
        depth: 0,
        heads: 2,
        mlp_ratio: 2.0,
        fixed_pos_embed: false,
        image_width: None,
        pool: Default::default(),
        drop_path_rate: 0.0,
    };
    let mut vs = nn::VarStore::new(Device::Cpu);
    let vit = Vit::new(&vs.root(), &cfg);
    vs.double();
    tch::no_grad(|| vs.variables()["pos_embed"].shallow_clone().copy_(&fx["pos.embed"]));
    assert!(vit.patch_pos_embed(7, 7).equal(&fx["pos.embed"].narrow(1, 1, 49)), "the trained grid as it is");
    for n in [3, 9] {
        let d = max_rel(&vit.patch_pos_embed(n, n), &fx[&format!("pos.grid{n}")]);
        assert!(d <= 1e-10, "{n}x{n}: {d:e}");
    }
    // A 12-px local crop runs through the 28-px ViT.
    let x = Tensor::randn([2, 1, 12, 12], (Kind::Double, Device::Cpu));
    assert_eq!(tch::nn::ModuleT::forward_t(&vit, &x, false).size(), [2, 8]);
}
