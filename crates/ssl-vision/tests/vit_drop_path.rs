//! A ViT with stochastic depth against timm's `VisionTransformer(drop_path_rate=0.4)`
//! in train mode: under the same torch seed the same samples lose the same
//! branches, so the tokens agree to 1e-4. Its own test binary: the draws
//! come from torch's global generator, which tests running beside it in
//! one process would advance. Fixture: `tools/golden/backbones.py`.

use ssl_vision::vit::Vit;
use tch::nn;
use tch::Device;

mod common;
use common::{assert_close, fill, fixture, timm_vit};

#[test]
fn vit_stochastic_depth_drops_the_branches_timm_drops() {
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = timm_vit(3, 0.4);
    let vit = Vit::new(&vs.root(), &cfg);
    let _head = nn::linear(vs.root() / "head", 48, 10, Default::default());
    fill(&vs);
    let fx = fixture("vit_drop_path");
    let plain = tch::no_grad(|| vit.forward_tokens(&fx["input"]));
    assert_close("tokens (eval)", &plain, &fx["tokens_eval"]);
    tch::manual_seed(5);
    let tokens = tch::no_grad(|| vit.forward_tokens_t(&fx["input"], true));
    assert_close("tokens (train, drop path)", &tokens, &fx["tokens"]);
    // The check can fail: with no branch dropped the outputs differ.
    assert!((plain - &fx["tokens"]).abs().max().double_value(&[]) > 1e-3);
}
