//! BERT's masking (15%, 80/10/10) and collation of 32 packed sequences of
//! 128 tokens into `[masked ids, labels, attention mask]` tensors: what the
//! trainer asks of `TextSource` every step. `benches/reference/text.py`
//! does the same with transformers' `DataCollatorForLanguageModeling`.
#![allow(missing_docs)] // criterion_group! generates an undocumented fn

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ssl_benches::random_packed;
use ssl_text::masking::MaskingConfig;
use ssl_text::pretrain::{Objective, TextSource};
use ssl_text::tokenizer::SpecialIds;

fn bench_collate(c: &mut Criterion) {
    ssl_benches::init();
    let special = SpecialIds { pad: 0, unk: 100, cls: 101, sep: 102, mask: 103 };
    let (batch, seq) = (32usize, 128usize);
    let data = random_packed(batch * 16, seq, &special, 0);
    let masking = MaskingConfig {
        mlm_probability: 0.15,
        mask_token_id: special.mask,
        vocab_size: 30_522,
        whole_word: false,
    };
    let source = TextSource::new(&data, special, masking, Objective::Mlm, batch, 0);
    let mut group = c.benchmark_group("cpu");
    group.throughput(Throughput::Elements(batch as u64));
    let mut i = 0;
    group.bench_function(format!("mlm_collate/b{batch}x{seq}"), |b| {
        b.iter(|| {
            i += 1;
            let ids: Vec<usize> = ((i % 16) * batch..(i % 16 + 1) * batch).collect();
            source.batch_of(&ids, i / 16)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_collate);
criterion_main!(benches);
