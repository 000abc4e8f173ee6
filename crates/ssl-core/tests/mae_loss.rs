//! MAE's loss (and MSM's, which is the same method) checked against its
//! parts, computed independently. Its own test binary: it draws the same
//! masks twice from libtorch's global generator, which no other test may
//! touch in between.

use ssl_core::mae::{Mae, MaeConfig};
use ssl_core::method::{Batch, Method};
use ssl_core::vit::VitConfig;
use tch::{nn, Device, Kind, Tensor};

/// The method's loss (MAE, and MSM, which is this method) from its own
/// parts computed independently: with the same masks (the generator
/// reseeded), the mean of the per-patch squared errors picked out by
/// the mask; three of four patches of every sample removed; and the
/// first target patch is the image's top-left `p x p` block, flattened
/// row by row and normalised (`norm_pix_loss`).
#[test]
fn the_loss_is_the_error_on_the_removed_patches_of_normalised_pixels() {
    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let enc = VitConfig {
        image_size: 8,
        patch_size: 2,
        in_channels: 1,
        dim: 12,
        depth: 1,
        heads: 3,
        mlp_ratio: 2.0,
        fixed_pos_embed: true,
        pool: ssl_core::vit::Pool::Cls,
        drop_path_rate: 0.0,
        image_width: None,
    };
    let mae = Mae::new(&vs.root(), &MaeConfig::light(enc));
    let x = Tensor::randn([3, 1, 8, 8], (Kind::Float, Device::Cpu));
    let batch = Batch { views: vec![x.shallow_clone()], labels: None };
    tch::manual_seed(9);
    let loss = mae.loss(&batch, true).unwrap().loss.double_value(&[]);
    tch::manual_seed(9);
    let (pred, mask, target) = mae.reconstruct(&x);
    let per_patch = (&pred - &target).square().mean_dim([-1i64].as_slice(), false, Kind::Float);
    let expected = per_patch.masked_select(&mask.to_kind(Kind::Bool)).mean(Kind::Float).double_value(&[]);
    assert!((loss - expected).abs() < 1e-6 * expected.max(1.0), "{loss} vs {expected}");
    let removed = mask.sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    assert!(removed.eq(12.0).all().int64_value(&[]) == 1, "{removed}");
    let block = x.get(0).get(0).narrow(0, 0, 2).narrow(1, 0, 2).reshape([4]);
    let norm = (&block - block.mean(Kind::Float)) / (block.var(true) + 1e-6).sqrt();
    let d = (target.get(0).get(0) - norm).abs().max().double_value(&[]);
    assert!(d < 1e-5, "the first target patch differs from the normalised block by {d}");
}
