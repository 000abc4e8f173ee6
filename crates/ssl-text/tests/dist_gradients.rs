//! BERT's masked- and next-token objectives on two CPU ranks against one
//! process on the global batch (f64, dropout 0): the loss is the mean over
//! every predicted token of the global batch whichever rank holds it (the
//! halves below predict different numbers of tokens), so the per-rank mean
//! (statistics not all-reduced) fails the same check. See
//! `ssl_core::dist_check`.

use ssl_core::dist_check::{assert_outcomes, check_methods, Case};
use ssl_core::method::Batch;
use ssl_dist::Fault;
use ssl_text::bert::{BertConfig, BertForMaskedLm};
use ssl_text::pretrain::{Objective, TextPretrainer};
use tch::nn::VarStore;
use tch::{Device, Tensor};

const VOCAB: i64 = 40;
const PAD: i64 = 0;

fn config() -> BertConfig {
    BertConfig {
        hidden_size: 16,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 32,
        max_position_embeddings: 12,
        hidden_dropout_prob: 0.0,
        attention_probs_dropout_prob: 0.0,
        ..BertConfig::base(VOCAB)
    }
}

/// Global batches of 8 sequences of 12 tokens: ids, MLM labels (more
/// masked tokens in the first half) and the attention mask (padding
/// varying by row, more of it in the second half).
fn batches(objective: Objective) -> Vec<Batch> {
    (0..2)
        .map(|step| {
            let (mut ids, mut labels, mut attn) = (Vec::new(), Vec::new(), Vec::new());
            for row in 0..8i64 {
                let len = 12 - (row % 4) - if row >= 4 { 3 } else { 0 };
                for t in 0..12i64 {
                    let id = if t < len { 1 + (row * 7 + t * 3 + step) % (VOCAB - 1) } else { PAD };
                    ids.push(id);
                    attn.push(i64::from(t < len));
                    let masked = t < len && t > 0 && (t + row + step) % if row < 4 { 2 } else { 5 } == 0;
                    labels.push(if masked { id } else { ssl_text::IGNORE_INDEX });
                }
            }
            let t = |v: Vec<i64>| Tensor::from_slice(&v).view([8, 12]);
            let views = match objective {
                Objective::Mlm => vec![t(ids), t(labels), t(attn)],
                Objective::Clm => vec![t(ids), t(attn)],
            };
            Batch { views, labels: None }
        })
        .collect()
}

fn case(objective: Objective) -> Case {
    Case {
        name: format!("{objective:?}").to_lowercase(),
        build: Box::new(move || {
            tch::manual_seed(3);
            let mut vs = VarStore::new(Device::Cpu);
            let model = BertForMaskedLm::new(&vs.root(), &config()).expect("building BERT");
            vs.double();
            (vs, Box::new(TextPretrainer { model, objective, pad: PAD }) as Box<dyn ssl_core::Method>)
        }),
        batches: batches(objective),
        sync_bn: false,
        compare_buffers: true,
        draws_per_sample: 0,
        wrong: vec![Fault::LocalStatistics, Fault::SkipGradSync],
    }
}

#[test]
fn masked_and_causal_objectives_have_the_global_batch_gradient_on_two_ranks() {
    let outcomes =
        check_methods("masked_and_causal_objectives_have_the_global_batch_gradient_on_two_ranks", &|| {
            vec![case(Objective::Mlm), case(Objective::Clm)]
        });
    assert_outcomes(&outcomes, 1e-10);
}
