"""The three model families: causality, padding invariance, KV-cache decoding, named outputs, tied weights."""

import pytest
import torch

import transformer_networks as tn
from transformer_networks.models import TransformerQA
from transformer_networks.nn import FeedForward

V = 40
PAD = 0


def config(**overrides) -> tn.TransformerConfig:
    values = dict(vocab_size=V, d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0, max_seq_len=64, pad_id=PAD)
    return tn.TransformerConfig(**{**values, **overrides})


def tokens(*shape) -> torch.Tensor:
    return torch.randint(1, V, shape)  # never the padding id


VARIANTS = {
    "paper": {},
    "pre-ln-learned": dict(norm_first=True, positional="learned", activation="gelu"),
    "rope-gqa": dict(positional="rope", n_kv_heads=2, norm="rmsnorm", activation="swiglu", bias=False),
    "rope-mqa": dict(positional="rope", n_kv_heads=1, norm_first=True),
    "learned-gqa": dict(positional="learned", n_kv_heads=2, norm_first=True, tie_embeddings=False),
    "no-positions": dict(positional="none", norm_first=True),
}


@pytest.fixture(params=sorted(VARIANTS))
def cfg(request):
    return config(**VARIANTS[request.param])


# --- causality ------------------------------------------------------------------------------------------------
def test_lm_outputs_ignore_later_tokens(cfg):
    lm = tn.TransformerLM(cfg).eval()
    ids = tokens(2, 10)
    base = lm(ids)
    for t in (0, 4, 8):
        changed = ids.clone()
        changed[:, t + 1 :] = tokens(2, 10 - t - 1)
        out = lm(changed)
        torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], atol=1e-5, rtol=0)
        assert not torch.allclose(out[:, t + 1 :], base[:, t + 1 :])


def test_seq2seq_decoder_outputs_ignore_later_target_tokens(cfg):
    mt = tn.Seq2SeqTransformer(cfg).eval()
    src, tgt = tokens(2, 7), tokens(2, 9)
    base = mt(src, tgt)
    for t in (0, 3, 7):
        changed = tgt.clone()
        changed[:, t + 1 :] = tokens(2, 9 - t - 1)
        torch.testing.assert_close(mt(src, changed)[:, : t + 1], base[:, : t + 1], atol=1e-5, rtol=0)
    # ...but every target position sees the whole source.
    other_src = src.clone()
    other_src[:, -1] = (src[:, -1] % (V - 1)) + 1
    assert not torch.allclose(mt(other_src, tgt)[:, 0], base[:, 0])


# --- padding --------------------------------------------------------------------------------------------------
def right_padded(rows: list[torch.Tensor]) -> torch.Tensor:
    width = max(len(r) for r in rows) + 2  # always some padding
    out = torch.full((len(rows), width), PAD)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def test_lm_padding_invariance(cfg):
    lm = tn.TransformerLM(cfg).eval()
    rows = [tokens(9), tokens(4), tokens(1)]
    batch = lm(right_padded(rows))
    for i, r in enumerate(rows):
        torch.testing.assert_close(batch[i, : len(r)], lm(r[None])[0], atol=1e-5, rtol=0)


def test_seq2seq_padding_invariance(cfg):
    mt = tn.Seq2SeqTransformer(cfg).eval()
    srcs, tgts = [tokens(8), tokens(3), tokens(5)], [tokens(2), tokens(7), tokens(4)]
    batch = mt(right_padded(srcs), right_padded(tgts))
    for i, (s, t) in enumerate(zip(srcs, tgts, strict=True)):
        torch.testing.assert_close(batch[i, : len(t)], mt(s[None], t[None])[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_seq2seq_loss_from_labels_equals_the_loss_of_the_full_logits(cfg, smoothing):
    # With labels the output layer runs on the labelled positions only; the loss and every gradient must be those
    # of the full (B, T, V) logits scored with the trainer's loss (padding ignored, no smoothing mass on it).
    from transformer_networks.training import label_smoothed_cross_entropy

    torch.manual_seed(0)
    mt = tn.Seq2SeqTransformer(cfg).train()
    src = right_padded([tokens(8), tokens(3), tokens(5)])
    tgt = right_padded([tokens(3), tokens(7), tokens(5)])  # teacher forcing: inputs tgt[:, :-1], labels tgt[:, 1:]
    tgt_in, labels = tgt[:, :-1], tgt[:, 1:].clone()
    labels[2, 0] = -100  # Hugging Face's "not a target" as well as padding
    out = mt(src, tgt_in, labels=labels, label_smoothing=smoothing)
    assert out.logits.shape == (int(((labels != PAD) & (labels >= 0)).sum()), V) == (2 + 6 + 3, V)
    keep = (labels != PAD) & (labels >= 0)
    torch.testing.assert_close(out.logits, mt(src, tgt_in)[keep], atol=1e-5, rtol=1e-5)  # the same rows, in order
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in mt.named_parameters() if p.grad is not None}
    mt.zero_grad()
    reference = label_smoothed_cross_entropy(
        mt(src, tgt_in), labels.masked_fill(labels < 0, PAD), smoothing=smoothing, ignore_index=PAD, pad_class=PAD
    )
    reference.backward()
    torch.testing.assert_close(out.loss, reference, atol=1e-6, rtol=1e-6)
    if smoothing:  # the smoothing convention shows: spread over all V classes, the loss is another one
        other = label_smoothed_cross_entropy(out.logits, labels[keep], smoothing=smoothing, pad_class=None)
        assert abs(float(other) - float(out.loss)) > 1e-4
    assert grads.keys() == {n for n, p in mt.named_parameters() if p.grad is not None}
    for name, p in mt.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[name], p.grad, atol=1e-6, rtol=1e-5, msg=name)
    with pytest.raises(tn.errors.InputError, match="labels must have the shape of tgt_ids"):
        mt(src, tgt_in, labels=labels[:, :-1])


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
def test_classifier_padding_invariance(cfg, pooling):
    clf = tn.TransformerClassifier(tn.TransformerConfig.from_dict({**cfg.to_dict(), "pooling": pooling})).eval()
    rows = [tokens(6), tokens(2), tokens(11)]
    ids = right_padded(rows)
    logits, hidden = clf(ids), clf.encode(ids)
    assert logits.shape == (3, 2) and hidden.shape == (3, ids.size(1), 32)
    for i, r in enumerate(rows):
        torch.testing.assert_close(logits[i], clf(r[None])[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(hidden[i, : len(r)], clf.encode(r[None])[0], atol=1e-5, rtol=0)


def test_classifier_mean_pooling_averages_real_tokens():
    clf = tn.TransformerClassifier(config(pooling="mean")).eval()
    ids = right_padded([tokens(5), tokens(3)])
    hidden = clf.encode(ids)
    pooled = torch.stack([hidden[0, :5].mean(0), hidden[1, :3].mean(0)])
    torch.testing.assert_close(clf(ids), clf.head(pooled))


def test_classifier_max_pooling_takes_each_features_maximum_over_real_tokens():
    clf = tn.TransformerClassifier(config(pooling="max")).eval()
    ids = right_padded([tokens(5), tokens(3)])
    hidden = clf.encode(ids)
    pooled = torch.stack([hidden[0, :5].max(0).values, hidden[1, :3].max(0).values])
    torch.testing.assert_close(clf(ids), clf.head(pooled))


def test_explicit_attention_mask_equals_pad_derived_mask():
    ids = right_padded([tokens(6), tokens(3)])
    keep = ids != PAD
    clf = tn.TransformerClassifier(config(pooling="mean")).eval()
    no_pad_id = tn.TransformerClassifier(config(pooling="mean", pad_id=None)).eval()
    no_pad_id.load_state_dict(clf.state_dict())
    torch.testing.assert_close(no_pad_id(ids, attention_mask=keep), clf(ids), atol=1e-6, rtol=0)
    assert not torch.allclose(no_pad_id(ids), clf(ids))  # without any mask the padding is seen
    # A full (B, T, T) mask built from the same padding gives the same result, pooling included.
    full = keep[:, None, :].expand(-1, ids.size(1), -1)
    torch.testing.assert_close(clf(ids, attention_mask=full), clf(ids), atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", ["lm", "seq2seq", "classifier"])
def test_training_skips_padding_in_the_feed_forward_without_changing_outputs_or_gradients(family):
    # In training a padded batch runs the feed-forward layers on its real tokens only; with dropout 0 the training
    # forward must equal the evaluation forward (which computes every position) at every real position, and so
    # must every gradient.
    cfg = config(dropout=0.0, norm_first=family != "classifier")  # post-LN too: its norm sees the skipped rows
    families = {"lm": tn.TransformerLM, "seq2seq": tn.Seq2SeqTransformer, "classifier": tn.TransformerClassifier}
    model = families[family](cfg)
    ids = right_padded([tokens(9), tokens(4), tokens(6)])
    keep = ids != PAD

    def run(training: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.train(training)
        model.zero_grad()
        out = model(ids, ids) if family == "seq2seq" else model(ids)
        real = out if family == "classifier" else out[keep]
        (real.square().sum()).backward()
        return real.detach(), [p.grad.clone() for p in model.parameters()]

    rows = []
    ffn = next(m for m in model.modules() if isinstance(m, FeedForward))  # records the rows it sees
    ffn.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[:-1].numel()))
    trained, trained_grads = run(True)
    assert rows[-1] == int(keep.sum()) < ids.numel()  # training skipped the padding
    evaluated, evaluated_grads = run(False)
    assert rows[-1] == ids.numel()  # evaluation computes every position
    torch.testing.assert_close(trained, evaluated, atol=1e-5, rtol=0)
    for a, b in zip(trained_grads, evaluated_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("keep", [1, 3])
def test_logits_to_keep_gives_the_last_positions_logits_and_the_same_cache(cfg, keep):
    lm = tn.TransformerLM(cfg).eval()
    ids = tokens(2, 9)
    torch.testing.assert_close(lm(ids, logits_to_keep=keep), lm(ids)[:, -keep:], atol=1e-6, rtol=0)
    a, b = lm.init_cache(), lm.init_cache()
    lm(ids, cache=a, logits_to_keep=1)
    lm(ids, cache=b)
    torch.testing.assert_close(lm(ids[:, :1], cache=a), lm(ids[:, :1], cache=b), atol=1e-6, rtol=0)


# --- KV cache -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("preallocate", [False, True])
def test_lm_cache_matches_full_forward(cfg, preallocate):
    lm = tn.TransformerLM(cfg).eval()
    ids = tokens(2, 12)
    full = lm(ids)
    cache = lm.init_cache(batch_size=2, max_len=20 if preallocate else None)
    steps = [lm(ids[:, :5], cache=cache)]  # prefill 5 tokens, then one token a step
    steps += [lm(ids[:, t : t + 1], cache=cache) for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)
    assert cache.length == 12


@pytest.mark.parametrize("preallocate", [False, True])
def test_seq2seq_cache_matches_full_forward(cfg, preallocate):
    mt = tn.Seq2SeqTransformer(cfg).eval()
    src = right_padded([tokens(9), tokens(4)])  # the source mask must follow the cache too
    tgt = tokens(2, 8)
    full = mt(src, tgt)
    encoder_calls = []
    mt.encoder.register_forward_hook(lambda *args: encoder_calls.append(1))
    cache = mt.init_cache(batch_size=2, max_len=16 if preallocate else None)
    steps = [mt(src, tgt[:, t : t + 1], cache=cache) for t in range(8)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)
    assert len(encoder_calls) == 1  # the source is encoded once, on the first step
    assert all(layer.cross_kv is not None for layer in cache.layers)


def test_cache_with_padded_prompts_matches_full_forward():
    lm = tn.TransformerLM(config(positional="rope", n_kv_heads=2)).eval()
    ids = right_padded([tokens(6), tokens(3)])
    full = lm(ids)
    cache = lm.init_cache()
    steps = torch.cat([lm(ids[:, t : t + 1], cache=cache) for t in range(ids.size(1))], dim=1)
    keep = ids != PAD
    torch.testing.assert_close(steps[keep], full[keep], atol=1e-5, rtol=0)


@pytest.mark.parametrize("padded", [False, True])
def test_cache_fed_in_chunks_matches_full_forward(padded):
    # Chunks of several tokens after the first (a causal mask inside the chunk, every earlier key visible); with
    # `padded` the second row's padding first arrives in the middle of a chunk, after a mask-free start.
    lm = tn.TransformerLM(config()).eval()
    ids = right_padded([tokens(12), tokens(7)]) if padded else tokens(2, 12)
    full = lm(ids)
    cache = lm.init_cache()
    steps = torch.cat([lm(ids[:, a:b], cache=cache) for a, b in ((0, 5), (5, 8), (8, 9), (9, ids.size(1)))], dim=1)
    keep = ids != PAD
    torch.testing.assert_close(steps[keep], full[keep], atol=1e-5, rtol=0)
    assert (cache.key_mask is None) == (not padded)  # no padding: no mask was ever built


def test_decode_over_encode_respects_source_padding():
    mt = tn.Seq2SeqTransformer(config()).eval()
    src, tgt = right_padded([tokens(7), tokens(2)]), tokens(2, 4)
    memory = mt.encode(src)
    torch.testing.assert_close(mt.decode(tgt, memory, src), mt(src, tgt), atol=1e-6, rtol=0)
    torch.testing.assert_close(mt.decode(tgt, memory, memory_mask=src != PAD), mt(src, tgt), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="src_ids or memory_mask"):
        mt.decode(tgt, memory)


def test_cache_limits_are_named():
    lm = tn.TransformerLM(config()).eval()
    cache = lm.init_cache(batch_size=2, max_len=4)
    with pytest.raises(ValueError, match="holds 4 tokens"):
        lm(tokens(2, 5), cache=cache)
    with pytest.raises(ValueError, match="2 rows, the input 3"):
        lm(tokens(3, 1), cache=cache)
    with pytest.raises(ValueError, match="needs batch_size"):
        lm.init_cache(max_len=4)
    out = lm(tokens(2, 3), cache=cache, return_dict=True)
    assert out.cache is cache and cache.length == 3


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_gradcheck_float64_through_the_layer_stacks(variant):
    cfg = config(d_model=8, n_heads=2, d_ff=16, n_layers=1, **VARIANTS[variant])
    mt = tn.Seq2SeqTransformer(cfg).double()
    positions = torch.arange(3)
    rotary = mt.decoder.rotary(positions) if mt.decoder.rotary is not None else None
    x = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    memory = torch.randn(2, 4, 8, dtype=torch.float64, requires_grad=True)
    keep = torch.tensor([[True] * 4, [True, True, False, False]])[:, None, None, :]

    def decoder(x, memory):
        return mt.decoder.stack(x, is_causal=True, rotary=rotary, memory=memory, memory_mask=keep).last_hidden_state

    assert torch.autograd.gradcheck(decoder, (x, memory))


@pytest.mark.parametrize("preallocate", [False, True])
@pytest.mark.parametrize("order", [[2, 0, 0], [1], [2, 1, 0, 2]])
def test_cache_reorder_follows_the_batch_rows(preallocate, order):
    # The same number of rows (beams; a preallocated cache reorders in place) or another (new buffers).
    lm = tn.TransformerLM(config()).eval()
    ids = tokens(3, 6)
    cache = lm.init_cache(batch_size=3, max_len=8) if preallocate else lm.init_cache()
    lm(ids[:, :5], cache=cache)
    order = torch.tensor(order)
    cache.reorder(order)
    step = lm(ids[order, 5:6], cache=cache)
    torch.testing.assert_close(step[:, 0], lm(ids[order])[:, 5], atol=1e-5, rtol=0)


class TwinCaches:
    """Our growing cache beside one that grows by concatenation (the reference): every step and reorder goes to
    both, and every step checks that their logits, keys and values are equal."""

    def __init__(self, lm):
        self.lm, self.ours, self.concatenated = lm, lm.init_cache(), lm.init_cache()
        for layer in self.concatenated.layers:
            layer.self_attn.concatenate = True

    def reorder(self, rows):
        self.ours.reorder(rows)
        self.concatenated.reorder(rows)

    def step(self, ids):
        logits = self.lm(ids, cache=self.ours)
        assert torch.equal(logits, self.lm(ids, cache=self.concatenated))
        for x, y in zip(self.ours.layers, self.concatenated.layers, strict=True):
            assert torch.equal(x.self_attn.k, y.self_attn.k) and torch.equal(x.self_attn.v, y.self_attn.v)
        return logits


def test_growing_cache_appends_in_place_and_reallocates_across_reorders(monkeypatch):
    # A first buffer of 2 slots makes the cache grow several times (2 -> 6 -> 14 -> max_seq_len 16) while beams are
    # reordered in between; keys, values and logits must equal concatenation's, and a step within the capacity must
    # write into the same buffer (no copy of the earlier keys).
    from transformer_networks.nn import KVCache

    monkeypatch.setattr(KVCache, "MIN_CAPACITY", 2)
    lm = tn.TransformerLM(config(max_seq_len=16)).eval()
    ids = tokens(3, 16)
    twins = TwinCaches(lm)
    ours = twins.ours
    order = torch.arange(3)
    capacities = []
    for t in range(16):
        if t in (4, 9):
            swap = torch.tensor([2, 0, 0])
            order = order[swap]
            twins.reorder(swap)
        a = twins.step(ids[order, t : t + 1])
        capacities.append(ours.layers[0].self_attn._buffers[0].size(2))
    assert capacities == [2, 2, 6, 6, 6, 6, 14, 14, 14, 14, 14, 14, 14, 14, 16, 16]
    torch.testing.assert_close(a[:, 0], lm(ids[order])[:, -1], atol=1e-5, rtol=0)

    kv = ours.layers[0].self_attn
    kv.k, kv.v = kv.k.clone(), kv.v.clone()  # replaced from outside: the next step must not write over the old buffer
    old = kv._buffers[0]
    before = old.clone()
    with pytest.raises(ValueError, match="max_seq_len=16"):
        lm(ids[:, :1], cache=ours)
    kv.update(torch.tensor([16]), kv.k[:, :, :1], kv.v[:, :, :1])
    assert torch.equal(old, before) and kv.k.size(2) == 17


@pytest.mark.parametrize("grad", [False, True])
def test_growing_cache_reorders_into_a_second_pair_of_buffers(grad):
    # Beam search reorders the rows at every step. The cache gathers its L cached slots (not the whole capacity)
    # into a second pair of buffers and swaps the pairs: steps alternate between two allocations, and the keys,
    # values and logits equal concatenation's. (Without gradients it gathers straight into the buffers.)
    lm = tn.TransformerLM(config()).eval()
    ids = tokens(3, 8)
    twins = TwinCaches(lm)
    order = torch.arange(3)
    pointers = []
    with torch.set_grad_enabled(grad):
        for t in range(8):
            if t >= 2:
                swap = torch.tensor([1, 2, 0]) if t % 2 else torch.tensor([0, 0, 2])
                order = order[swap]
                twins.reorder(swap)
            twins.step(ids[order, t : t + 1])
            pointers.append(twins.ours.layers[0].self_attn._buffers[0].data_ptr())
    assert len(set(pointers)) == 2
    assert all(a != b for a, b in zip(pointers[1:], pointers[2:], strict=False))  # every reorder swaps the pairs


def test_sequence_longer_than_max_seq_len_is_refused():
    lm = tn.TransformerLM(config(max_seq_len=8)).eval()
    with pytest.raises(ValueError, match="max_seq_len=8"):
        lm(tokens(1, 9))
    cache = lm.init_cache()
    lm(tokens(1, 8), cache=cache)
    with pytest.raises(ValueError, match="max_seq_len=8"):
        lm(tokens(1, 1), cache=cache)


# --- named outputs, weights, training mode ----------------------------------------------------------------------
def test_named_outputs_carry_attention_maps_and_hidden_states():
    cfg = config(n_encoder_layers=2, n_decoder_layers=3)
    mt = tn.Seq2SeqTransformer(cfg).eval()
    src, tgt = right_padded([tokens(5), tokens(2)]), tokens(2, 4)
    out = mt(src, tgt, return_attentions=True, return_hidden_states=True)
    assert isinstance(out, tn.TransformerOutput)
    torch.testing.assert_close(out.logits, mt(src, tgt))
    assert len(out.attentions) == 3 and len(out.cross_attentions) == 3 and len(out.encoder_attentions) == 2
    assert out.attentions[0].shape == (2, 4, 4, 4) and out.cross_attentions[0].shape == (2, 4, 4, src.size(1))
    assert len(out.hidden_states) == 4 and len(out.encoder_hidden_states) == 3
    assert (out.attentions[1].triu(1) == 0).all()  # causal
    assert (out.cross_attentions[2][1, :, :, 2:] == 0).all()  # source padding is never attended
    torch.testing.assert_close(out.cross_attentions[0].sum(-1), torch.ones(2, 4, 4))
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    plain = mt(src, tgt, return_dict=True)
    assert plain.attentions is None and plain.hidden_states is None


def test_tied_embeddings():
    mt = tn.Seq2SeqTransformer(config())
    shared = mt.decoder.embeddings.token.weight
    assert mt.lm_head.weight is shared and mt.encoder.embeddings.token.weight is shared
    separate = tn.Seq2SeqTransformer(config(src_vocab_size=30))
    assert separate.lm_head.weight is separate.decoder.embeddings.token.weight
    assert separate.encoder.embeddings.token.weight.shape == (30, 32)
    untied = tn.TransformerLM(config(tie_embeddings=False))
    assert untied.lm_head.weight is not untied.decoder.embeddings.token.weight


def test_embeddings_are_scaled_by_sqrt_d_model():
    for scale in (True, False):
        lm = tn.TransformerLM(config(scale_embeddings=scale, positional="rope"))
        ids = tokens(1, 3)
        expected = lm.decoder.embeddings.token(ids) * (32**0.5 if scale else 1.0)
        torch.testing.assert_close(lm.decoder.embeddings(ids, torch.arange(3)), expected)


@pytest.mark.parametrize("family", ["seq2seq", "lm", "classifier"])
def test_every_parameter_gets_a_gradient(family):
    cfg = config(dropout=0.1, attention_dropout=0.1)
    src, tgt = tokens(2, 6), tokens(2, 5)
    if family == "seq2seq":
        model = tn.Seq2SeqTransformer(cfg)
        logits = model(src, tgt)
    elif family == "lm":
        model = tn.TransformerLM(cfg)
        logits = model(tgt)
    else:
        model = tn.TransformerClassifier(cfg)
        logits = model(src)
    logits.float().pow(2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_dropout_only_in_training():
    lm = tn.TransformerLM(config(dropout=0.3))
    ids = tokens(2, 6)
    assert not torch.allclose(lm(ids), lm(ids))
    lm.eval()
    torch.testing.assert_close(lm(ids), lm(ids))


def test_without_positions_an_encoder_sees_a_set_and_stick_breaking_heads_give_it_the_order():
    """positional="none": nothing marks a token's place, so softmax heads alone make an encoder permutation-
    equivariant (permuting the input permutes the output); stick-breaking heads read nearest-first and break it."""
    torch.manual_seed(0)
    ids, perm = tokens(1, 9), torch.randperm(9)
    for sb, equivariant in ((0, True), (2, False)):
        qa = TransformerQA(config(positional="none", stick_breaking_heads=sb, stick_breaking_bias=-1.0)).eval()
        start = qa(ids).start
        assert torch.allclose(qa(ids[:, perm]).start, start[:, perm], atol=1e-5) is equivariant
    rope = TransformerQA(config(positional="rope")).eval()
    assert not torch.allclose(rope(ids[:, perm]).start, rope(ids).start[:, perm], atol=1e-5)
