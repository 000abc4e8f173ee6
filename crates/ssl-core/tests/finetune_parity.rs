//! Fine-tuning's regularisers against timm 1.0.31, from fixtures written by
//! `tools/golden/finetune.py`: Mixup and CutMix replayed from timm's draws
//! (the mixed inputs and soft targets, CutMix's box and corrected λ), the
//! soft-target cross-entropy and its gradient, and drop path under the
//! same torch seed.

use ssl_core::mixup::{soft_cross_entropy, Mix};
use ssl_core::modules::drop_path;
use std::collections::HashMap;
use tch::{Kind, Tensor};

fn fixtures() -> HashMap<String, Tensor> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/finetune.safetensors");
    Tensor::read_safetensors(path).expect("reading finetune.safetensors").into_iter().collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

#[test]
fn mixup_and_cutmix_match_timm() {
    let f = fixtures();
    let (x, y) = (&f["x"], &f["y"]);
    let (h, w) = (x.size()[2], x.size()[3]);
    let mut kinds = [0, 0];
    for k in 0.. {
        let Some(out) = f.get(&format!("mix{k}.out")) else { break };
        let get = |n: &str| f[&format!("mix{k}.{n}")].shallow_clone();
        let lam = get("lam_raw").double_value(&[0]);
        let mix = if get("cutmix").int64_value(&[0]) == 1 {
            kinds[1] += 1;
            Mix::cut_at(lam, h, w, get("cy").int64_value(&[0]), get("cx").int64_value(&[0]))
        } else {
            kinds[0] += 1;
            Mix::Blend { lam }
        };
        let (mixed, targets) = mix.apply(x, y, 7, 0.1);
        assert!(max_diff(&mixed, out) < 1e-6, "case {k} ({mix:?}): inputs differ");
        assert!(max_diff(&targets, &get("targets")) < 1e-6, "case {k} ({mix:?}): targets differ");
    }
    assert!(kinds[0] > 0 && kinds[1] > 0, "the fixture should hold both kinds: {kinds:?}");
}

#[test]
fn soft_target_cross_entropy_and_its_gradient_match_timm() {
    let f = fixtures();
    let logits = f["ce.logits"].set_requires_grad(true);
    let loss = soft_cross_entropy(&logits, &f["ce.targets"]);
    assert!((loss.double_value(&[]) - f["ce.loss"].double_value(&[0])).abs() < 1e-6);
    loss.backward();
    assert!(max_diff(&logits.grad(), &f["ce.grad"]) < 1e-6);
}

#[test]
fn drop_path_draws_as_timm_under_the_same_seed() {
    let f = fixtures();
    tch::manual_seed(11);
    let out = drop_path(&f["drop.x"], 0.3, true);
    assert!(max_diff(&out, &f["drop.out"]) < 1e-6);
    // Evaluation and rate 0 are the identity.
    assert!(drop_path(&f["drop.x"], 0.3, false).equal(&f["drop.x"]));
    assert!(drop_path(&f["drop.x"], 0.0, true).equal(&f["drop.x"]));
}
