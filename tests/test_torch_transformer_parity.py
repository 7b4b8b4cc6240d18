"""Our encoder-decoder stacks against `torch.nn.Transformer`, weights copied through the real converter."""

import pytest
import torch
from torch import nn

import transformer_networks as tn
from transformer_networks.interop import WeightMappingError, load_torch_transformer

E, H, FF, N_ENC, N_DEC = 32, 4, 64, 2, 3


def build(norm_first: bool, bias: bool, activation: str):
    cfg = tn.TransformerConfig(
        vocab_size=50,
        d_model=E,
        n_heads=H,
        d_ff=FF,
        n_encoder_layers=N_ENC,
        n_decoder_layers=N_DEC,
        norm_first=norm_first,
        bias=bias,
        activation=activation,
        dropout=0.0,
    )
    ref = nn.Transformer(
        E, H, N_ENC, N_DEC, FF, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first, bias=bias
    ).eval()
    if not norm_first:
        # nn.Transformer appends a LayerNorm to each stack even in post-LN mode; the paper's model has none.
        ref.encoder.norm = None
        ref.decoder.norm = None
    model = tn.Seq2SeqTransformer(cfg).eval()
    load_torch_transformer(model, ref)
    return model, ref


@pytest.mark.parametrize(
    "norm_first, bias, activation",
    [
        (False, True, "relu"),  # the paper: post-LN, ReLU
        (True, True, "relu"),
        (True, False, "gelu"),
        (False, False, "gelu"),
    ],
)
def test_matches_torch_transformer_with_padding_and_causal_masks(norm_first, bias, activation):
    model, ref = build(norm_first, bias, activation)
    B, S, T = 3, 7, 6
    src, tgt = torch.randn(B, S, E), torch.randn(B, T, E)
    src_keep = torch.arange(S)[None] < torch.tensor([7, 5, 2])[:, None]  # (B, S), True = real token
    tgt_keep = torch.arange(T)[None] < torch.tensor([6, 3, 4])[:, None]
    causal = nn.Transformer.generate_square_subsequent_mask(T, dtype=torch.bool)  # True = masked (torch style)
    expected = ref(
        src,
        tgt,
        tgt_mask=causal,
        src_key_padding_mask=~src_keep,
        tgt_key_padding_mask=~tgt_keep,
        memory_key_padding_mask=~src_keep,
        tgt_is_causal=True,
    )

    memory = model.encoder.stack(src, mask=src_keep[:, None, None, :]).last_hidden_state
    out = model.decoder.stack(
        tgt, mask=tgt_keep[:, None, None, :], is_causal=True, memory=memory, memory_mask=src_keep[:, None, None, :]
    ).last_hidden_state
    # Compare real target positions (torch may leave padded rows as it likes).
    torch.testing.assert_close(out[tgt_keep], expected[tgt_keep], atol=1e-5, rtol=0)

    expected_memory = ref.encoder(src, src_key_padding_mask=~src_keep)
    torch.testing.assert_close(memory[src_keep], expected_memory[src_keep], atol=1e-5, rtol=0)


def test_full_model_path_uses_the_converted_stacks():
    """Through `Seq2SeqTransformer.forward`: our embeddings feed the same stacks nn.Transformer computes."""
    model, ref = build(False, True, "relu")
    src_ids = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])  # pad_id = 0
    tgt_ids = torch.tensor([[1, 2, 3], [1, 4, 0]])
    out = model(src_ids, tgt_ids, return_dict=True)
    positions = torch.arange(4)
    src = model.encoder.embeddings(src_ids, positions)
    tgt = model.decoder.embeddings(tgt_ids, positions[:3])
    causal = nn.Transformer.generate_square_subsequent_mask(3, dtype=torch.bool)
    expected = ref(
        src,
        tgt,
        tgt_mask=causal,
        src_key_padding_mask=src_ids == 0,
        tgt_key_padding_mask=tgt_ids == 0,
        memory_key_padding_mask=src_ids == 0,
    )
    real = tgt_ids != 0
    torch.testing.assert_close(out.last_hidden_state[real], expected[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.logits, out.last_hidden_state @ model.decoder.embeddings.token.weight.T)


def test_converter_names_the_final_norm_it_cannot_place():
    cfg = tn.TransformerConfig(vocab_size=50, d_model=E, n_heads=H, d_ff=FF, n_layers=1, dropout=0.0)
    ref = nn.Transformer(E, H, 1, 1, FF, batch_first=True)
    with pytest.raises(WeightMappingError, match="norm.weight"):
        load_torch_transformer(tn.Seq2SeqTransformer(cfg), ref)


def test_converter_checks_the_config():
    cfg = tn.TransformerConfig(vocab_size=50, d_model=E, n_heads=H, d_ff=FF, n_layers=1, norm_first=True)
    ref = nn.Transformer(E, H, 1, 1, FF, batch_first=True, activation="gelu", norm_first=True)
    with pytest.raises(ValueError, match="activation"):
        load_torch_transformer(tn.Seq2SeqTransformer(cfg), ref)
    ref = nn.Transformer(E, H, 2, 1, FF, batch_first=True, norm_first=True)
    with pytest.raises(WeightMappingError, match="unexpected: layers.1"):
        load_torch_transformer(tn.Seq2SeqTransformer(cfg), ref)
