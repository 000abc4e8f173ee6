"""Golden parity fixtures for a tiny BERT (MLM head + causal LM head), from HF transformers.

Run:  /root/.cache/ssl-rs/golden-venv/bin/python tools/golden/bert.py
Needs, in that venv: torch 2.11.0, transformers 5.24.0, safetensors 0.8.0
(installed with `pip install transformers==5.24.0 safetensors==0.8.0`;
tokenizers 0.23.3 came along but is not used).

Model: `BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2,
num_attention_heads=4 (head_dim 8), intermediate_size=64,
max_position_embeddings=40, type_vocab_size=2, hidden_act="gelu",
layer_norm_eps=1e-12, dropout 0, attn_implementation="eager")`.
  * "gelu" is transformers' GELUActivation = torch.nn.functional.gelu with the
    default approximate="none", i.e. exact 0.5*x*(1+erf(x/sqrt(2))).
  * Every LayerNorm (embeddings, attention output, layer output, MLM transform)
    uses eps=1e-12 and is post-LN: LN(x + sublayer(x)).
  * Attention: scores = (q @ k^T) * 8**-0.5 + mask, softmax over keys. The mask
    is additive float: 0 where attended, torch.finfo(float32).min (-3.4028e38)
    where not. Padding masks KEYS only (attention_mask[b, key] == 0); padded
    query rows are still computed (and appear in the outputs). With
    is_decoder=True the mask is causal (key <= query) AND padding.
  * Embeddings: LN(word[ids] + token_type[tt] + position[0..L-1]); no pooler
    (BertForMaskedLM / BertLMHeadModel use add_pooling_layer=False).
  * MLM head: logits = LN(gelu(dense(h))) @ word_embeddings^T + cls.predictions.bias
    (decoder weight tied to word embeddings, decoder bias tied to cls.predictions.bias).

Weights: BertForMaskedLM(config) after torch.manual_seed(0) (default init,
initializer_range 0.02), then every parameter in sorted-name order (tied
parameters visited once) gets `+= a * randn(shape, generator=Generator().manual_seed(1234))`
with a = 0.15 for >=2-D tensors and a = 0.1 for 1-D tensors. The larger-than-init
amplitude makes attention non-uniform (scores O(1)) and every LayerNorm
gamma/beta and bias non-trivial, so a wrong mapping or a wrong mask shows up.
Note word_embeddings row 0 (padding_idx = pad_token_id = 0) is perturbed too,
so it is not zero.

Writes into crates/ssl-text/tests/fixtures/:
  bert_tiny_mlm.safetensors   BertForMaskedLM state dict (float32), HF key names,
      42 tensors (95,708 bytes; the config fixes ~23.8k float32 params):
        bert.embeddings.{word_embeddings,position_embeddings,token_type_embeddings}.weight
        bert.embeddings.LayerNorm.{weight,bias}
        bert.encoder.layer.{0,1}.attention.self.{query,key,value}.{weight,bias}
        bert.encoder.layer.{0,1}.attention.output.dense.{weight,bias}
        bert.encoder.layer.{0,1}.attention.output.LayerNorm.{weight,bias}
        bert.encoder.layer.{0,1}.intermediate.dense.{weight,bias}
        bert.encoder.layer.{0,1}.output.dense.{weight,bias}
        bert.encoder.layer.{0,1}.output.LayerNorm.{weight,bias}
        cls.predictions.bias
        cls.predictions.transform.dense.{weight,bias}
        cls.predictions.transform.LayerNorm.{weight,bias}
      Linear weights are [out, in] (torch layout). OMITTED (tied, shared storage):
      cls.predictions.decoder.weight (== bert.embeddings.word_embeddings.weight)
      and cls.predictions.decoder.bias (== cls.predictions.bias). Not in the
      state dict at all (non-persistent buffers): bert.embeddings.position_ids
      (arange) and bert.embeddings.token_type_ids (zeros, the default when
      token_type_ids is not passed).
  bert_tiny_mlm_io.safetensors
      input_ids      int64 [3,12]  values in [0,97); seq 1 (0-based) has ids 0 at pads
      attention_mask int64 [3,12]  all 1 except seq 1 (0-based), positions 8..11 = 0
      token_type_ids int64 [3,12]  zeros except seq 0 positions 6..11 = 1
      logits         f32 [3,12,97] BertForMaskedLM(input_ids, attention_mask, token_type_ids)
      last_hidden    f32 [3,12,32] hidden_states[-1] (== last_hidden_state, no final LN)
      clm_logits     f32 [3,12,97] BertLMHeadModel(is_decoder=True, same weights loaded
                     with safetensors.torch.load_model(strict=True)) on input_ids with
                     attention_mask all ones, token_type_ids not passed (=> zeros),
                     use_cache=False: causal mask only.

CPU, float32, one thread. Every output is also cross-checked against a
hand-written functional re-implementation (`manual_bert`, the spec the Rust
side follows), and both files are reloaded and re-checked.
"""
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, load_model, save_file
from transformers import BertConfig, BertForMaskedLM, BertLMHeadModel

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/ssl-text/tests/fixtures"
WEIGHTS = OUT / "bert_tiny_mlm.safetensors"
IO = OUT / "bert_tiny_mlm_io.safetensors"

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

TIED = {
    "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}


def make_config(is_decoder=False) -> BertConfig:
    return BertConfig(
        vocab_size=97,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=40,
        type_vocab_size=2,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        is_decoder=is_decoder,
        attn_implementation="eager",
    )


def perturb(model: torch.nn.Module):
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        # named_parameters() drops duplicates, so tied params are visited once.
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            a = 0.15 if p.dim() >= 2 else 0.1
            p.add_(a * torch.randn(p.shape, generator=g, dtype=p.dtype))


def make_inputs():
    g = torch.Generator().manual_seed(42)
    b, l = 3, 12
    input_ids = torch.randint(0, 97, (b, l), generator=g, dtype=torch.int64)
    attention_mask = torch.ones(b, l, dtype=torch.int64)
    attention_mask[1, 8:] = 0
    input_ids[1, 8:] = 0  # pad_token_id
    token_type_ids = torch.zeros(b, l, dtype=torch.int64)
    token_type_ids[0, 6:] = 1
    return input_ids, attention_mask, token_type_ids


# ---------------------------------------------------------------- reference spec
def manual_bert(sd, ids, mask, tt, causal, heads=4, eps=1e-12):
    """Functional BERT + MLM head. Returns (last_hidden, logits)."""
    def lin(x, p):
        return x @ sd[p + ".weight"].T + sd[p + ".bias"]

    def ln(x, p):
        return F.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], eps)

    def gelu(x):
        return 0.5 * x * (1.0 + torch.erf(x / 2.0 ** 0.5))

    b, l = ids.shape
    e = "bert.embeddings."
    x = (sd[e + "word_embeddings.weight"][ids] + sd[e + "token_type_embeddings.weight"][tt]
         + sd[e + "position_embeddings.weight"][torch.arange(l)][None])
    x = ln(x, e + "LayerNorm")
    allowed = mask.bool()[:, None, None, :].expand(b, 1, l, l)  # [b,1,q,k]
    if causal:
        allowed = allowed & torch.tril(torch.ones(l, l, dtype=torch.bool))
    add = torch.where(allowed, 0.0, torch.finfo(torch.float32).min)
    d = x.shape[-1] // heads
    for i in range(2):
        p = f"bert.encoder.layer.{i}."
        split = lambda t: t.view(b, l, heads, d).transpose(1, 2)  # noqa: E731
        q = split(lin(x, p + "attention.self.query"))
        k = split(lin(x, p + "attention.self.key"))
        v = split(lin(x, p + "attention.self.value"))
        s = (q @ k.transpose(-1, -2)) * d ** -0.5 + add
        a = (s.softmax(-1) @ v).transpose(1, 2).reshape(b, l, heads * d)
        x = ln(lin(a, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        h = lin(gelu(lin(x, p + "intermediate.dense")), p + "output.dense")
        x = ln(h + x, p + "output.LayerNorm")
    t = ln(gelu(lin(x, "cls.predictions.transform.dense")), "cls.predictions.transform.LayerNorm")
    logits = t @ sd["bert.embeddings.word_embeddings.weight"].T + sd["cls.predictions.bias"]
    return x, logits


def assert_close(name, a, b, tol=1e-5):
    err = (a - b).abs().max().item()
    print(f"  {name:28s} max|diff| vs manual = {err:.3e}")
    assert err < tol, f"{name}: {err}"


def main():
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    OUT.mkdir(parents=True, exist_ok=True)

    # ---- weights
    torch.manual_seed(0)
    mlm = BertForMaskedLM(make_config()).eval()
    assert mlm.config._attn_implementation == "eager", mlm.config._attn_implementation
    perturb(mlm)
    emb = mlm.bert.embeddings.word_embeddings.weight
    assert mlm.cls.predictions.decoder.weight is emb, "decoder weight not tied"
    assert mlm.cls.predictions.decoder.bias is mlm.cls.predictions.bias, "decoder bias not tied"

    full_sd = mlm.state_dict()
    assert "bert.embeddings.position_ids" not in full_sd
    assert "bert.embeddings.token_type_ids" not in full_sd
    weights = {k: v.detach().clone().contiguous() for k, v in full_sd.items() if k not in TIED}
    for k, src in TIED.items():
        if k in full_sd:
            assert full_sd[k].data_ptr() == full_sd[src].data_ptr(), f"{k} not shared"
    assert all(v.dtype == torch.float32 for v in weights.values())
    save_file(weights, str(WEIGHTS))
    print(f"wrote {WEIGHTS.relative_to(ROOT)} ({len(weights)} tensors, "
          f"{WEIGHTS.stat().st_size} bytes); state_dict had {len(full_sd)} keys")
    for k in sorted(weights):
        print(f"  {k:58s} {list(weights[k].shape)}")

    # ---- MLM forward
    ids, mask, tt = make_inputs()
    with torch.no_grad():
        out = mlm(input_ids=ids, attention_mask=mask, token_type_ids=tt, output_hidden_states=True)
    logits = out.logits.contiguous()
    last_hidden = out.hidden_states[-1].contiguous()
    assert len(out.hidden_states) == 3, len(out.hidden_states)  # embeddings + 2 layers
    assert logits.shape == (3, 12, 97) and logits.dtype == torch.float32
    assert last_hidden.shape == (3, 12, 32)

    # ---- CLM forward (is_decoder=True), same weights, strict load
    torch.manual_seed(0)
    clm = BertLMHeadModel(make_config(is_decoder=True)).eval()
    missing, unexpected = load_model(clm, str(WEIGHTS), strict=True)
    assert not missing and not unexpected, (missing, unexpected)
    assert clm.cls.predictions.decoder.weight is clm.bert.embeddings.word_embeddings.weight
    assert set(clm.state_dict()) == set(full_sd), set(clm.state_dict()) ^ set(full_sd)
    for k, v in clm.state_dict().items():
        assert torch.equal(v, full_sd[k]), k
    ones = torch.ones_like(mask)
    with torch.no_grad():
        clm_logits = clm(input_ids=ids, attention_mask=ones, use_cache=False).logits.contiguous()
    assert clm_logits.shape == (3, 12, 97)

    # ---- checks against the functional spec
    sd = {k: v.detach() for k, v in load_file(str(WEIGHTS)).items()}
    m_hidden, m_logits = manual_bert(sd, ids, mask, tt, causal=False)
    _, m_clm = manual_bert(sd, ids, ones, torch.zeros_like(tt), causal=True)
    assert_close("last_hidden", last_hidden, m_hidden)
    assert_close("logits", logits, m_logits)
    assert_close("clm_logits", clm_logits, m_clm)
    # sanity: the masks matter
    _, nomask = manual_bert(sd, ids, ones, tt, causal=False)
    print(f"  effect of padding mask on seq 1 logits: {(nomask[1] - logits[1]).abs().max():.3e}")
    _, noncausal = manual_bert(sd, ids, ones, torch.zeros_like(tt), causal=False)
    print(f"  effect of causal mask on clm logits:    {(noncausal - clm_logits).abs().max():.3e}")
    _, tt0 = manual_bert(sd, ids, mask, torch.zeros_like(tt), causal=False)
    print(f"  effect of token_type_ids on seq 0:      {(tt0[0] - logits[0]).abs().max():.3e}")

    io = {
        "input_ids": ids.contiguous(),
        "attention_mask": mask.contiguous(),
        "token_type_ids": tt.contiguous(),
        "logits": logits,
        "last_hidden": last_hidden,
        "clm_logits": clm_logits,
    }
    save_file(io, str(IO))
    print(f"wrote {IO.relative_to(ROOT)} ({IO.stat().st_size} bytes)")
    for k, v in io.items():
        print(f"  {k:15s} {str(v.dtype):14s} {list(v.shape)}  max|x| = {v.abs().max().item():.6g}")

    # ---- round trip
    w2 = load_file(str(WEIGHTS))
    assert set(w2) == set(weights) and all(torch.equal(w2[k], weights[k]) for k in w2)
    io2 = load_file(str(IO))
    assert set(io2) == set(io)
    assert all(io2[k].dtype == io[k].dtype and torch.equal(io2[k], io[k]) for k in io2)
    torch.manual_seed(0)
    mlm2 = BertForMaskedLM(make_config()).eval()
    load_model(mlm2, str(WEIGHTS), strict=True)
    with torch.no_grad():
        re = mlm2(input_ids=io2["input_ids"], attention_mask=io2["attention_mask"],
                  token_type_ids=io2["token_type_ids"]).logits
    assert torch.equal(re, io2["logits"]), (re - io2["logits"]).abs().max()
    print("round trip OK (files reload bit-exactly; fresh model from file reproduces logits)")


if __name__ == "__main__":
    main()
