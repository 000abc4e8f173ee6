//! Loss values and gradients against lightly 1.6.0, from fixtures written by
//! `tools/golden/losses.py` (float64 references of float32 inputs). Each
//! loss is checked in f64 (to 1e-10) and in f32 (to 1e-5).

use ssl_core::losses;
use std::collections::HashMap;
use tch::{Kind, Tensor};

fn fixtures() -> HashMap<String, Tensor> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/losses.safetensors");
    Tensor::read_safetensors(path).expect("reading the loss fixtures").into_iter().collect()
}

fn assert_close(name: &str, got: &Tensor, want: &Tensor, tol: f64) {
    assert_eq!(got.size(), want.size(), "{name}: shape");
    let diff = (got.to_kind(Kind::Double) - want.to_kind(Kind::Double)).abs();
    let scale = want.to_kind(Kind::Double).abs().clamp_min(1.0);
    let worst = (diff / scale).max().double_value(&[]);
    assert!(worst <= tol, "{name}: max relative difference {worst:e} > {tol:e}");
}

/// Runs `loss` on the named inputs in f64 and f32 and compares the loss and
/// the gradients of the inputs listed in `grads`.
fn check(prefix: &str, inputs: &[&str], grads: &[&str], loss: impl Fn(&[Tensor]) -> Tensor) {
    let fx = fixtures();
    for (kind, tol) in [(Kind::Double, 1e-10), (Kind::Float, 1e-5)] {
        let xs: Vec<Tensor> = inputs
            .iter()
            .map(|n| fx[&format!("{prefix}.{n}")].to_kind(kind).detach().set_requires_grad(grads.contains(n)))
            .collect();
        let l = loss(&xs);
        assert_eq!(l.size(), Vec::<i64>::new(), "{prefix}: loss must be a scalar");
        l.backward();
        assert_close(&format!("{prefix} loss ({kind:?})"), &l, &fx[&format!("{prefix}.loss")], tol);
        for (x, n) in xs.iter().zip(inputs) {
            if grads.contains(n) {
                let want = &fx[&format!("{prefix}.grad_{n}")];
                assert_close(&format!("{prefix} grad {n} ({kind:?})"), &x.grad(), want, tol);
            }
        }
    }
}

#[test]
fn nt_xent_matches_lightly() {
    for t in [0.5, 0.1] {
        check(&format!("ntxent_t{t}"), &["z0", "z1"], &["z0", "z1"], |x| losses::nt_xent(&x[0], &x[1], t));
    }
}

#[test]
fn info_nce_queue_matches_lightly_memory_bank() {
    check("infonce_queue", &["q", "k", "queue"], &["q", "k"], |x| {
        losses::info_nce_queue(&x[0], &x[1], &x[2], 0.2)
    });
}

#[test]
fn negative_cosine_matches_lightly() {
    check("negcos", &["x0", "x1"], &["x0", "x1"], |x| losses::negative_cosine(&x[0], &x[1]));
}

#[test]
fn barlow_twins_matches_lightly() {
    check("barlow", &["z0", "z1"], &["z0", "z1"], |x| losses::barlow_twins(&x[0], &x[1], 5e-3));
}

#[test]
fn vicreg_matches_lightly() {
    check("vicreg", &["z0", "z1"], &["z0", "z1"], |x| losses::vicreg(&x[0], &x[1], 25.0, 25.0, 1.0, 1e-4));
}

#[test]
fn info_nce_in_batch_matches_the_moco_v3_formula() {
    check("infonce_inbatch", &["q", "k"], &["q", "k"], |x| losses::info_nce_in_batch(&x[0], &x[1], 0.2));
}
