//! BERT (Devlin et al., <https://arxiv.org/abs/1810.04805>) with the
//! parameter names of HF transformers, so weights move both ways through
//! safetensors:
//!
//! - post-LN (the paper's layout) is `BertForMaskedLM`;
//! - pre-LN (`pre_ln: true`) is laid out and named as transformers'
//!   `MegatronBertForMaskedLM` (Shoeybi et al., <https://arxiv.org/abs/1909.08053>):
//!   no embedding LayerNorm, `attention.ln` and `ln` before the sublayers,
//!   and a final `encoder.ln`.
//!
//! Attention runs through libtorch's `scaled_dot_product_attention` (flash
//! or memory-efficient kernels on CUDA); GELU is the exact (erf) one; the
//! MLM decoder is tied to the word embeddings and is applied only to the
//! positions that have a label (sparse prediction), or, for the causal
//! objective (`causal: true`, GPT-style), to every position.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// The encoder's shape; field names and meaning as transformers'
/// `BertConfig`, so [`BertConfig::hf_config_json`] is a valid `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: i64,
    /// Width of every hidden state.
    pub hidden_size: i64,
    /// Number of transformer layers.
    pub num_hidden_layers: i64,
    /// Attention heads per layer (`hidden_size` must be a multiple).
    pub num_attention_heads: i64,
    /// Width of the feed-forward layer.
    pub intermediate_size: i64,
    /// Longest sequence the position embeddings cover.
    pub max_position_embeddings: i64,
    /// Number of token types (segments).
    pub type_vocab_size: i64,
    /// LayerNorm epsilon (1e-12 in BERT).
    pub layer_norm_eps: f64,
    /// Dropout on hidden states.
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities.
    pub attention_probs_dropout_prob: f64,
    /// Pre-LN (Megatron-BERT layout) instead of BERT's post-LN.
    #[serde(default)]
    pub pre_ln: bool,
    /// Std of the normal initialisation (0.02).
    pub initializer_range: f64,
    /// Tie the MLM decoder to the word embeddings (BERT's default). When
    /// false the decoder has its own `cls.predictions.decoder.weight`.
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
}

fn default_true() -> bool {
    true
}

impl BertConfig {
    /// BERT-base's shape with `vocab_size` tokens.
    pub fn base(vocab_size: i64) -> Self {
        Self {
            vocab_size,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            pre_ln: false,
            initializer_range: 0.02,
            tie_word_embeddings: true,
        }
    }

    /// A small encoder for CPU runs: 4 layers of width 256, 4 heads, FFN
    /// 1024 (BERT-mini's shape, Turc et al.), 128 positions.
    pub fn mini(vocab_size: i64) -> Self {
        Self {
            hidden_size: 256,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            intermediate_size: 1024,
            max_position_embeddings: 128,
            ..Self::base(vocab_size)
        }
    }

    /// Checks that the heads divide the width.
    pub fn validate(&self) -> Result<()> {
        if self.num_attention_heads <= 0 || self.hidden_size % self.num_attention_heads != 0 {
            return Err(Error::Config(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        Ok(())
    }

    /// A transformers `config.json` for these weights
    /// (`BertForMaskedLM`, or `MegatronBertForMaskedLM` when pre-LN).
    pub fn hf_config_json(&self, pad_token_id: i64) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("a config serialises");
        let (arch, model_type) = if self.pre_ln {
            ("MegatronBertForMaskedLM", "megatron-bert")
        } else {
            ("BertForMaskedLM", "bert")
        };
        v["architectures"] = serde_json::json!([arch]);
        v["model_type"] = serde_json::json!(model_type);
        v["hidden_act"] = serde_json::json!("gelu");
        v["pad_token_id"] = serde_json::json!(pad_token_id);
        v.as_object_mut().expect("an object").remove("pre_ln");
        v
    }
}

fn linear(p: nn::Path, i: i64, o: i64, std: f64) -> nn::Linear {
    let cfg = nn::LinearConfig {
        ws_init: nn::Init::Randn { mean: 0.0, stdev: std },
        bs_init: Some(nn::Init::Const(0.0)),
        bias: true,
    };
    nn::linear(p, i, o, cfg)
}

fn layer_norm(p: nn::Path, h: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![h], nn::LayerNormConfig { eps, ..Default::default() })
}

fn embedding(p: nn::Path, n: i64, h: i64, std: f64) -> nn::Embedding {
    let cfg =
        nn::EmbeddingConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: std }, ..Default::default() };
    nn::embedding(p, n, h, cfg)
}

struct Layer {
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    attn_out: nn::Linear,
    /// Post-LN: after attention (`attention.output.LayerNorm`); pre-LN:
    /// before it (`attention.ln`).
    attn_ln: nn::LayerNorm,
    intermediate: nn::Linear,
    output: nn::Linear,
    /// Post-LN: after the FFN (`output.LayerNorm`); pre-LN: before it (`ln`).
    ffn_ln: nn::LayerNorm,
}

impl Layer {
    fn new(p: &nn::Path, c: &BertConfig) -> Self {
        let (h, std) = (c.hidden_size, c.initializer_range);
        let att = p / "attention";
        let (attn_ln, ffn_ln) = if c.pre_ln {
            (layer_norm(&att / "ln", h, c.layer_norm_eps), layer_norm(p / "ln", h, c.layer_norm_eps))
        } else {
            (
                layer_norm(&att / "output" / "LayerNorm", h, c.layer_norm_eps),
                layer_norm(p / "output" / "LayerNorm", h, c.layer_norm_eps),
            )
        };
        Self {
            query: linear(&att / "self" / "query", h, h, std),
            key: linear(&att / "self" / "key", h, h, std),
            value: linear(&att / "self" / "value", h, h, std),
            attn_out: linear(&att / "output" / "dense", h, h, std),
            attn_ln,
            intermediate: linear(p / "intermediate" / "dense", h, c.intermediate_size, std),
            output: linear(p / "output" / "dense", c.intermediate_size, h, std),
            ffn_ln,
        }
    }

    fn attention(&self, x: &Tensor, mask: Option<&Tensor>, c: &BertConfig, train: bool) -> Tensor {
        let (b, t, h) = x.size3().expect("hidden states are [B, T, H]");
        let heads = c.num_attention_heads;
        let split = |y: Tensor| y.view([b, t, heads, h / heads]).transpose(1, 2);
        let (q, k, v) =
            (split(self.query.forward(x)), split(self.key.forward(x)), split(self.value.forward(x)));
        let p = if train { c.attention_probs_dropout_prob } else { 0.0 };
        let y = Tensor::scaled_dot_product_attention(&q, &k, &v, mask, p, false, None, false);
        let y = y.transpose(1, 2).contiguous().view([b, t, h]);
        self.attn_out.forward(&y).dropout(c.hidden_dropout_prob, train)
    }

    fn ffn(&self, x: &Tensor, c: &BertConfig, train: bool) -> Tensor {
        let y = self.intermediate.forward(x).gelu("none");
        self.output.forward(&y).dropout(c.hidden_dropout_prob, train)
    }

    fn forward(&self, x: &Tensor, mask: Option<&Tensor>, c: &BertConfig, train: bool) -> Tensor {
        if c.pre_ln {
            let x = x + self.attention(&self.attn_ln.forward(x), mask, c, train);
            &x + self.ffn(&self.ffn_ln.forward(&x), c, train)
        } else {
            let x = self.attn_ln.forward(&(x + self.attention(x, mask, c, train)));
            self.ffn_ln.forward(&(&x + self.ffn(&x, c, train)))
        }
    }
}

/// The encoder, under `bert.*`; see the module docs.
pub struct BertModel {
    /// Its configuration.
    pub config: BertConfig,
    word_embeddings: nn::Embedding,
    position_embeddings: nn::Embedding,
    token_type_embeddings: nn::Embedding,
    embeddings_ln: Option<nn::LayerNorm>,
    layers: Vec<Layer>,
    final_ln: Option<nn::LayerNorm>,
}

impl BertModel {
    /// Builds the encoder under `p` (usually `root / "bert"`).
    pub fn new(p: &nn::Path, c: &BertConfig) -> Result<Self> {
        c.validate()?;
        let (h, std) = (c.hidden_size, c.initializer_range);
        let e = p / "embeddings";
        let enc = p / "encoder";
        Ok(Self {
            config: c.clone(),
            word_embeddings: embedding(&e / "word_embeddings", c.vocab_size, h, std),
            position_embeddings: embedding(&e / "position_embeddings", c.max_position_embeddings, h, std),
            token_type_embeddings: embedding(&e / "token_type_embeddings", c.type_vocab_size, h, std),
            embeddings_ln: (!c.pre_ln).then(|| layer_norm(&e / "LayerNorm", h, c.layer_norm_eps)),
            layers: (0..c.num_hidden_layers).map(|i| Layer::new(&(&enc / "layer" / i), c)).collect(),
            final_ln: c.pre_ln.then(|| layer_norm(&enc / "ln", h, c.layer_norm_eps)),
        })
    }

    /// The word embedding matrix `[V, H]` (the tied MLM decoder).
    pub fn word_embeddings(&self) -> &Tensor {
        &self.word_embeddings.ws
    }

    /// Last hidden states. `attention_mask` (1 = token, 0 = padding) hides
    /// padded keys; `causal` also hides later positions.
    ///
    /// # Shapes
    /// `input_ids, token_type_ids, attention_mask: [B, T]` → `[B, T, H]`
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: Option<&Tensor>,
        causal: bool,
        train: bool,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (b, t) = input_ids
            .size2()
            .map_err(|_| Error::Shape(format!("input_ids must be [B, T], got {:?}", input_ids.size())))?;
        if t > c.max_position_embeddings {
            return Err(Error::Shape(format!(
                "sequence length {t} exceeds max_position_embeddings {}",
                c.max_position_embeddings
            )));
        }
        for (name, m) in [("token_type_ids", token_type_ids), ("attention_mask", attention_mask)] {
            if let Some(m) = m.filter(|m| m.size() != [b, t]) {
                return Err(Error::Shape(format!(
                    "{name} must be [{b}, {t}] like input_ids, got {:?}",
                    m.size()
                )));
            }
        }
        let dev = input_ids.device();
        let positions = Tensor::arange(t, (Kind::Int64, dev)).unsqueeze(0);
        let types = match token_type_ids {
            Some(tt) => self.token_type_embeddings.forward(tt),
            None => self.token_type_embeddings.ws.get(0).view([1, 1, c.hidden_size]),
        };
        let mut x =
            self.word_embeddings.forward(input_ids) + self.position_embeddings.forward(&positions) + types;
        if let Some(ln) = &self.embeddings_ln {
            x = ln.forward(&x);
        }
        let mut x = x.dropout(c.hidden_dropout_prob, train);
        // Boolean mask, true where attention is allowed: [B, 1, T(query), T(key)].
        let keys = attention_mask.map(|m| m.ne(0).view([b, 1, 1, t]));
        let mask = match (keys, causal) {
            (k, true) => {
                let tri = Tensor::ones([t, t], (Kind::Bool, dev)).tril(0).view([1, 1, t, t]);
                Some(match k {
                    Some(k) => tri.logical_and(&k),
                    None => tri,
                })
            }
            (k, false) => k,
        };
        for layer in &self.layers {
            x = layer.forward(&x, mask.as_ref(), c, train);
        }
        if let Some(ln) = &self.final_ln {
            x = ln.forward(&x);
        }
        Ok(x)
    }
}

/// The MLM head (`cls.predictions.*`): dense, GELU, LayerNorm, then the
/// tied decoder plus `cls.predictions.bias`.
pub struct MlmHead {
    dense: nn::Linear,
    ln: nn::LayerNorm,
    bias: Tensor,
    /// The untied decoder `[V, H]`, when the config unties it.
    decoder: Option<Tensor>,
}

impl MlmHead {
    /// Builds the head under `p` (usually `root / "cls" / "predictions"`).
    pub fn new(p: &nn::Path, c: &BertConfig) -> Self {
        let t = p / "transform";
        Self {
            dense: linear(&t / "dense", c.hidden_size, c.hidden_size, c.initializer_range),
            ln: layer_norm(&t / "LayerNorm", c.hidden_size, c.layer_norm_eps),
            bias: p.zeros("bias", &[c.vocab_size]),
            decoder: (!c.tie_word_embeddings).then(|| {
                (p / "decoder").var(
                    "weight",
                    &[c.vocab_size, c.hidden_size],
                    nn::Init::Randn { mean: 0.0, stdev: c.initializer_range },
                )
            }),
        }
    }

    /// Logits over the vocabulary (through `word_embeddings` when tied).
    ///
    /// # Shapes
    /// `hidden: [..., H]`, `word_embeddings: [V, H]` → `[..., V]`
    pub fn forward(&self, hidden: &Tensor, word_embeddings: &Tensor) -> Tensor {
        let y = self.ln.forward(&self.dense.forward(hidden).gelu("none"));
        y.matmul(&self.decoder.as_ref().unwrap_or(word_embeddings).tr()) + &self.bias
    }
}

/// Encoder plus MLM head, named as `BertForMaskedLM` (or
/// `MegatronBertForMaskedLM` when pre-LN).
pub struct BertForMaskedLm {
    /// The encoder (`bert.*`).
    pub bert: BertModel,
    /// The head (`cls.predictions.*`).
    pub head: MlmHead,
}

impl BertForMaskedLm {
    /// Builds both under `root` (`bert.*` and `cls.predictions.*`).
    pub fn new(root: &nn::Path, c: &BertConfig) -> Result<Self> {
        Ok(Self {
            bert: BertModel::new(&(root / "bert"), c)?,
            head: MlmHead::new(&(root / "cls" / "predictions"), c),
        })
    }

    /// Logits at every position (dense prediction), as transformers gives.
    ///
    /// # Shapes
    /// `[B, T]` inputs → `[B, T, V]`
    pub fn logits(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: Option<&Tensor>,
        causal: bool,
        train: bool,
    ) -> Result<Tensor> {
        let h = self.bert.forward(input_ids, token_type_ids, attention_mask, causal, train)?;
        Ok(self.head.forward(&h, self.bert.word_embeddings()))
    }

    /// Masked-token loss and accuracy, computing the head only where
    /// `labels` is not [`crate::IGNORE_INDEX`] (sparse prediction). Returns
    /// `(mean cross entropy, correct predictions, predicted positions)`.
    ///
    /// # Shapes
    /// `input_ids, attention_mask, labels: [B, T]` → three scalars
    pub fn mlm_loss(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        labels: &Tensor,
        train: bool,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        self.mlm_loss_and_hidden(input_ids, attention_mask, labels, train).map(|(l, c, n, _)| (l, c, n))
    }

    /// [`BertForMaskedLm::mlm_loss`], and the encoder's last hidden states
    /// `[B, T, H]`.
    pub fn mlm_loss_and_hidden(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        labels: &Tensor,
        train: bool,
    ) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
        let h = self.bert.forward(input_ids, None, attention_mask, false, train)?;
        let (loss, correct, n) = self.sparse_loss(&h, labels);
        Ok((loss, correct, n, h))
    }

    /// Next-token loss (GPT-style) with a causal mask: position `i`
    /// predicts token `i + 1`; targets at padding (`attention_mask` 0) are
    /// ignored. Returns `(mean cross entropy, correct, predicted)`.
    pub fn clm_loss(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        train: bool,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        self.clm_loss_and_hidden(input_ids, attention_mask, train).map(|(l, c, n, _)| (l, c, n))
    }

    /// [`BertForMaskedLm::clm_loss`], and the (causal) last hidden states
    /// `[B, T, H]`.
    pub fn clm_loss_and_hidden(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        train: bool,
    ) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
        let h = self.bert.forward(input_ids, None, attention_mask, true, train)?;
        let t = input_ids.size()[1];
        let mut targets = input_ids.narrow(1, 1, t - 1);
        if let Some(m) = attention_mask {
            targets = targets.where_self(&m.narrow(1, 1, t - 1).ne(0), &Tensor::from(crate::IGNORE_INDEX));
        }
        let (loss, correct, n) = self.sparse_loss(&h.narrow(1, 0, t - 1), &targets);
        Ok((loss, correct, n, h))
    }

    fn sparse_loss(&self, hidden: &Tensor, labels: &Tensor) -> (Tensor, Tensor, Tensor) {
        let hsize = hidden.size()[2];
        let flat = labels.reshape([-1]);
        let idx = flat.ne(crate::IGNORE_INDEX).nonzero().squeeze_dim(1);
        let h = hidden.reshape([-1, hsize]).index_select(0, &idx);
        let y = flat.index_select(0, &idx);
        let logits = self.head.forward(&h, self.bert.word_embeddings());
        let loss = ssl_core::losses::cross_entropy(&logits, &y);
        let correct = tch::no_grad(|| logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Float));
        (loss, correct, Tensor::from(idx.size()[0] as f32).to_device(labels.device()))
    }
}
