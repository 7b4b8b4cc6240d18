import torch

from transformer_networks.config import TransformerConfig
from transformer_networks.generation import generate
from transformer_networks.models import Seq2SeqTransformer


def reference_greedy(model, src, bos, eos, steps):
    """Greedy decoding without a cache: the whole prefix re-run through the model at every step."""
    out = torch.full((src.size(0), 1), bos)
    for _ in range(steps):
        next_ids = model(src, out)[:, -1].argmax(-1)
        out = torch.cat([out, next_ids[:, None]], dim=1)
    return out[:, 1:]


def test_cached_greedy_equals_recomputing_every_prefix():
    torch.manual_seed(0)
    cfg = TransformerConfig.from_preset(
        "tiny", vocab_size=20, d_model=32, n_heads=4, n_kv_heads=2, dropout=0.0, positional="rope"
    )
    model = Seq2SeqTransformer(cfg).eval()
    src = torch.randint(5, 20, (3, 7))
    src[1, 4:] = 0  # a padded source row
    got = generate(model, src, bos_id=2, eos_id=3, max_new_tokens=12, pad_id=model.cfg.pad_id)
    expected = reference_greedy(model, src, 2, 3, 12)
    # rows that never produce EOS match exactly; after an EOS the rest of the row is padding
    for row, ref in zip(got.tolist(), expected.tolist(), strict=True):
        if 3 in ref:
            end = ref.index(3) + 1
            assert row[:end] == ref[:end] and all(t == 0 for t in row[end:])
        else:
            assert row == ref


def test_stops_when_every_row_has_ended():
    torch.manual_seed(0)
    cfg = TransformerConfig.from_preset("tiny", vocab_size=10, d_model=16, n_heads=2, n_layers=1, dropout=0.0)
    model = Seq2SeqTransformer(cfg).eval()
    src = torch.randint(4, 10, (2, 5))
    # Row 0 is pushed to EOS at every step, row 1 only from its third step on.
    calls = []

    def favour_eos(module, inputs, logits):
        calls.append(1)
        logits = logits.clone()
        logits[0, :, 3] += 100
        if len(calls) >= 3:
            logits[1, :, 3] += 100
        return logits

    model.lm_head.register_forward_hook(favour_eos)
    out = generate(model, src, bos_id=2, eos_id=3, max_new_tokens=20, pad_id=model.cfg.pad_id)
    assert len(calls) == 3 and out.shape == (2, 3)
    assert out[0].tolist() == [3, 0, 0] and out[1, 2] == 3 and 3 not in out[1, :2].tolist()
