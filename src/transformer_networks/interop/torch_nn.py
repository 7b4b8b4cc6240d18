"""Copy the weights of a `torch.nn.Transformer` into a `Seq2SeqTransformer`'s encoder and decoder stacks.

`torch.nn.Transformer` holds the two layer stacks only (no embeddings, positions or output projection), so this
converter fills `model.encoder.stack` and `model.decoder.stack` and leaves the rest of the model as it is. The
model's config must describe the same layers: d_model, heads, d_ff, layer counts, activation ("relu"/"gelu"),
norm_first, bias and norm_eps, with `norm="layernorm"` and ordinary multi-head attention (n_kv_heads = n_heads).

Two differences to know:
- `torch.nn.Transformer` always ends both stacks with a LayerNorm, even in post-LN mode; the paper's post-LN stacks
  have none, and neither do ours. Remove them first (`ref.encoder.norm = None; ref.decoder.norm = None`) or the
  converter names them as weights with no place in the model.
- Its masks use the opposite convention: True = masked out. Ours: True = may attend.
"""

from __future__ import annotations

from torch import nn

from ..models.seq2seq import Seq2SeqTransformer
from .weights import load_state_dict_strict, map_state_dict

_SELF_ATTENTION_AND_FINAL_NORM = {
    "layers.{}.self_attn.in_proj_weight": "layers.{}.self_attn.in_proj.weight",
    "layers.{}.self_attn.in_proj_bias": "layers.{}.self_attn.in_proj.bias",
    "layers.{}.self_attn.out_proj.weight": "layers.{}.self_attn.out_proj.weight",
    "layers.{}.self_attn.out_proj.bias": "layers.{}.self_attn.out_proj.bias",
    "layers.{}.norm1.weight": "layers.{}.self_attn_residual.norm.weight",
    "layers.{}.norm1.bias": "layers.{}.self_attn_residual.norm.bias",
    "layers.{}.linear1.weight": "layers.{}.ffn.fc1.weight",
    "layers.{}.linear1.bias": "layers.{}.ffn.fc1.bias",
    "layers.{}.linear2.weight": "layers.{}.ffn.fc2.weight",
    "layers.{}.linear2.bias": "layers.{}.ffn.fc2.bias",
    "norm.weight": "final_norm.weight",
    "norm.bias": "final_norm.bias",
}

ENCODER_TABLE = {
    **_SELF_ATTENTION_AND_FINAL_NORM,
    "layers.{}.norm2.weight": "layers.{}.ffn_residual.norm.weight",
    "layers.{}.norm2.bias": "layers.{}.ffn_residual.norm.bias",
}

DECODER_TABLE = {
    **_SELF_ATTENTION_AND_FINAL_NORM,
    "layers.{}.multihead_attn.in_proj_weight": "layers.{}.cross_attn.in_proj.weight",
    "layers.{}.multihead_attn.in_proj_bias": "layers.{}.cross_attn.in_proj.bias",
    "layers.{}.multihead_attn.out_proj.weight": "layers.{}.cross_attn.out_proj.weight",
    "layers.{}.multihead_attn.out_proj.bias": "layers.{}.cross_attn.out_proj.bias",
    "layers.{}.norm2.weight": "layers.{}.cross_attn_residual.norm.weight",
    "layers.{}.norm2.bias": "layers.{}.cross_attn_residual.norm.bias",
    "layers.{}.norm3.weight": "layers.{}.ffn_residual.norm.weight",
    "layers.{}.norm3.bias": "layers.{}.ffn_residual.norm.bias",
}

_FINAL_NORM_HINT = (
    "torch.nn.Transformer ends each stack with a LayerNorm even in post-LN mode; set reference.encoder.norm and "
    "reference.decoder.norm to None to compare with the paper's post-LN model"
)


def load_torch_transformer(model: Seq2SeqTransformer, reference: nn.Transformer) -> None:
    """Copy `reference`'s encoder and decoder layer weights into `model` (in place)."""
    cfg = model.cfg
    layer = reference.encoder.layers[0]
    checks = {
        "norm_first": (cfg.norm_first, layer.norm_first),
        "d_model": (cfg.d_model, layer.self_attn.embed_dim),
        "n_heads": (cfg.n_heads, layer.self_attn.num_heads),
        "n_kv_heads": (cfg.kv_heads, layer.self_attn.num_heads),
        "norm": (cfg.norm, "layernorm"),
        "norm_eps": (cfg.norm_eps, layer.norm1.eps),
    }
    activation = getattr(layer.activation, "__name__", type(layer.activation).__name__).lower()
    checks["activation"] = (cfg.activation, activation)
    for field, (ours, theirs) in checks.items():
        if ours != theirs:
            raise ValueError(f"config field {field}={ours!r} does not match the torch.nn.Transformer ({theirs!r})")
    for stack, ref, table in (
        (model.encoder.stack, reference.encoder, ENCODER_TABLE),
        (model.decoder.stack, reference.decoder, DECODER_TABLE),
    ):
        load_state_dict_strict(stack, map_state_dict(ref.state_dict(), table, hint=_FINAL_NORM_HINT))
