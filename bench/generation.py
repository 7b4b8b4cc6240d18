"""Generation speed: the KV cache, and greedy decoding and beam search side by side with Hugging Face `generate`.

    python bench/generation.py kv_cache      greedy decoding of 256 new tokens, with and without the KV cache
    python bench/generation.py greedy_vs_hf  greedy decoding of 128 new tokens, batch 1 and 8: ours against GPT-2
    python bench/generation.py compiled      lm.generate against CompiledDecoder (one compiled graph a token)
    python bench/generation.py beam_vs_hf    Multi30k test 2016 with beam 4: ours against MarianMTModel
    python bench/generation.py all

kv_cache: a gpt2-small-shaped TransformerLM with 6 layers (random weights, dropout 0), batch 1, an 8-token prompt,
256 new tokens, greedy, no EOS. After a warm-up, cached and uncached runs alternate (A B A B ...) so that a busy
machine slows both alike; both must produce the same tokens. The figure is the ratio of the medians.

greedy_vs_hf: a TransformerLM with GPT-2's architecture (pre-LN, learned positions, tanh GELU, tied embeddings) at
three sizes, nanoGPT's character model (4 layers, 128 dims), 6 layers of 384 dims with a vocabulary of 1000 (where
decoding one row is bound by reading the weights from memory) and gpt2-small (12 layers, 768 dims), random weights
(seed 0), dropout 0, is exported with our `export_hf` and loaded as Hugging Face's GPT2LMHeadModel (SDPA attention):
the same weights on both sides, so greedy decoding must give the same tokens (checked every round). Batch 1 and 8,
a prompt of 16 random tokens per row, 128 new tokens, no EOS; HF `generate` with its default dynamic cache. After a
warm-up the two sides alternate, for each size and batch; the figure is hf / ours of the medians.

beam_vs_hf: our Seq2SeqTransformer and Hugging Face's MarianMTModel with the shape of the Multi30k checkpoint
(runs/bench/multi30k), both randomly initialised, translate the 1,000 German sentences of test 2016 with 4 beams,
in the same length-sorted batches of 64. Their weights differ, so their outputs differ: to make the work equal,
every sentence of a batch decodes exactly (batch source length + 5) tokens on both sides (min_new_tokens =
max_new_tokens), so both run the same number of beam steps on the same shapes. After a warm-up the two sides
alternate; the figure is the median wall time for the whole set. Then the trained checkpoint itself translates the
set with beam 4 and greedily (real lengths, stopping at EOS): what beam search costs and what it buys in BLEU.

Each benchmark prints its result and replaces its own block in BENCHMARKS.md (machine, versions, date, command).
Real data is read from $TN_DATA_DIR (default ../shared/data); a part whose data or checkpoint is absent is skipped,
and so are greedy_vs_hf and beam_vs_hf without Hugging Face transformers (pip install -e '.[bench]'). --rounds sets
the timed rounds; --shapes, --batches and --new-tokens narrow greedy_vs_hf (a quick check: --shapes nanogpt
--batches 1 --new-tokens 8).
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from harness import (
    DATA,
    ROOT,
    alternate,
    as_users_run,
    footer,
    parameters,
    round_ratios,
    seconds_list,
    versions,
    write_block,
)
from torch import Tensor

from transformer_networks.config import TransformerConfig
from transformer_networks.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, TextTokenizer
from transformer_networks.generation.compiled import CompiledDecoder
from transformer_networks.metrics import bleu
from transformer_networks.models import Seq2SeqTransformer, TransformerLM

SCRIPT = "bench/generation.py"
CHECKPOINT = ROOT / "runs" / "bench" / "multi30k"
TEST_SOURCE = DATA / "multi30k" / "test_2016_flickr.de.gz"
TEST_TARGET = DATA / "multi30k" / "test_2016_flickr.en.gz"
BEAMS, LENGTH_PENALTY = 4, 0.6  # the paper's translation setting
EXTRA_TOKENS = 5  # beam_vs_hf: tokens decoded per sentence = its batch's source length + this


def quiet_transformers(part: str) -> Any:
    """Hugging Face transformers with its warnings off, or None (the part is skipped, saying why)."""
    try:
        import transformers
    except ImportError:
        print(
            f"{part}: skipped, Hugging Face transformers is not installed: pip install -e '.[bench]'", file=sys.stderr
        )
        return None
    transformers.logging.set_verbosity_error()
    return transformers


# --- kv_cache --------------------------------------------------------------------------------------------------


def kv_cache(rounds: int, new_tokens: int = 256, prompt_len: int = 8) -> str:
    cfg = TransformerConfig.from_preset("gpt2-small", n_layers=6, dropout=0.0)
    torch.manual_seed(0)
    lm = as_users_run(TransformerLM(cfg).eval())
    prompt = torch.randint(cfg.vocab_size, (1, prompt_len), generator=torch.Generator().manual_seed(0))

    def run(use_cache: bool, n: int = new_tokens) -> Callable[[], Tensor]:
        return lambda: lm.generate(prompt, max_new_tokens=n, use_cache=use_cache)

    print("kv_cache: warm-up (cached 256 tokens, uncached 32 tokens)", file=sys.stderr, flush=True)
    run(True)()
    run(False, 32)()
    times, results = alternate({"cached": run(True), "uncached": run(False)}, rounds)
    same = all(torch.equal(r["cached"], r["uncached"]) for r in results)
    full = all(r["cached"].size(1) == prompt_len + new_tokens for r in results)
    cached, uncached = statistics.median(times["cached"]), statistics.median(times["uncached"])
    ratio = uncached / cached
    return "\n".join(
        [
            "### Greedy generation with and without the KV cache",
            "",
            f"| {new_tokens} new tokens, batch 1 | median time | tokens/s | every run (s) |",
            "|---|---|---|---|",
            f"| with the cache | {cached:.2f} s | {new_tokens / cached:.1f} | {seconds_list(times['cached'])} |",
            f"| without (whole sequence every step) | {uncached:.2f} s | {new_tokens / uncached:.1f} | "
            f"{seconds_list(times['uncached'])} |",
            "",
            f"- Result: **uncached / cached = {ratio:.1f}x** (round by round: "
            f"{round_ratios(times, 'uncached', 'cached')})"
            f"; the cached and uncached tokens are "
            f"{'identical' if same else 'NOT identical'} in every round"
            + ("" if full else f"; WARNING: some run stopped before {new_tokens} tokens"),
            f"- Setup: TransformerLM of gpt2-small shape with {cfg.n_layers} layers ({cfg.d_model} dims, {cfg.n_heads} "
            f"heads, d_ff {cfg.d_ff}, vocabulary {cfg.vocab_size}, learned positions, {parameters(lm)} parameters), "
            f"random weights (seed 0), dropout 0; a prompt of {prompt_len} random tokens, {new_tokens} new "
            f"tokens, greedy, "
            f"no EOS; `lm.generate(prompt, max_new_tokens={new_tokens}, use_cache=True/False)`. {rounds} rounds "
            f"alternating cached / uncached after a warm-up (one cached run of {new_tokens} tokens, one uncached "
            f"of 32)",
            "- Target: with the cache at least 5x faster than without; nanoGPT's KV-cache pull request measured 7.4x "
            "for GPT-2 on a CPU",
            *footer(SCRIPT),
        ]
    )


# --- greedy_vs_hf ----------------------------------------------------------------------------------------------

# The sizes: nanoGPT's Shakespeare-character model (vocabulary 65), a middle one, the full gpt2-small preset.
GREEDY_SHAPES: dict[str, dict[str, Any]] = {
    "nanogpt": dict(n_layers=4, n_heads=4, d_model=128, d_ff=512, vocab_size=65, max_seq_len=256),
    # the shape issue 26 measured: 6 layers, 384 wide, vocabulary 1000 (weights of 0.6-2.4 MB: memory-bound)
    "6x384": dict(n_layers=6, n_heads=6, d_model=384, d_ff=1536, vocab_size=1000, max_seq_len=256),
    "gpt2-small": {},
}
GREEDY_BATCHES = (1, 8)
GREEDY_NEW_TOKENS, GREEDY_PROMPT_LEN = 128, 16


@dataclass
class GreedyCase:
    shape: str
    batch: int
    cfg: TransformerConfig
    params: str
    times: dict[str, list[float]]  # seconds per call of "ours" and "hf", round by round
    identical: bool  # every round: ours and HF returned the same sequences
    mismatched: int  # tokens that differ, over the rounds
    full: bool  # every run produced exactly new_tokens tokens per row


def gpt2_twins(shape: str, **overrides: Any) -> tuple[TransformerLM, torch.nn.Module]:
    """Our TransformerLM of GPT-2's architecture (random weights, seed 0, dropout 0) and the same weights as
    Hugging Face's GPT2LMHeadModel, through our exporter. `overrides` change the shape's config fields."""
    import transformers

    from transformer_networks.interop.hf import export_hf

    cfg = TransformerConfig.from_preset("gpt2-small", dropout=0.0, **{**GREEDY_SHAPES[shape], **overrides})
    torch.manual_seed(0)
    ours = TransformerLM(cfg).eval()
    with tempfile.TemporaryDirectory() as directory:
        export_hf(ours, directory)
        hf = transformers.GPT2LMHeadModel.from_pretrained(directory, attn_implementation="sdpa").eval()
    return ours, hf


def greedy_sides(
    ours: TransformerLM, hf: torch.nn.Module, prompt: Tensor, new_tokens: int
) -> tuple[Callable[[], Tensor], Callable[[], Tensor]]:
    """The two sides' calls: prompt (B, P) -> prompt + new_tokens greedy tokens, (B, P + new_tokens)."""
    mask = torch.ones_like(prompt)

    def run_ours() -> Tensor:
        with torch.inference_mode():
            return ours.generate(prompt, max_new_tokens=new_tokens)

    def run_hf() -> Tensor:
        with torch.inference_mode():
            return hf.generate(
                input_ids=prompt,
                attention_mask=mask,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                use_cache=True,
                pad_token_id=0,
            )

    return run_ours, run_hf


def greedy_cases(
    rounds: int,
    *,
    shapes: Sequence[str] = tuple(GREEDY_SHAPES),
    batches: Sequence[int] = GREEDY_BATCHES,
    new_tokens: int = GREEDY_NEW_TOKENS,
    prompt_len: int = GREEDY_PROMPT_LEN,
) -> list[GreedyCase]:
    """Time ours against HF for every shape and batch: a warm-up run of each side, then `rounds` alternating."""
    cases = []
    for shape in shapes:
        ours, hf = gpt2_twins(shape)
        as_users_run(ours)  # the CPU backend on ours only (gpt2_twins also serves gpu.py)
        cfg = ours.cfg
        assert cfg.eos_id is None and hf.generation_config.eos_token_id is None  # nothing stops a row early
        for batch in batches:
            prompt = torch.randint(cfg.vocab_size, (batch, prompt_len), generator=torch.Generator().manual_seed(0))
            run_ours, run_hf = greedy_sides(ours, hf, prompt, new_tokens)
            label = f"{shape} batch {batch}: "
            print(f"greedy_vs_hf: {label}warm-up (one run each side)", file=sys.stderr, flush=True)
            run_ours()
            run_hf()
            times, results = alternate({"ours": run_ours, "hf": run_hf}, rounds, label=label)
            shape_ok = [r["ours"].shape == r["hf"].shape == (batch, prompt_len + new_tokens) for r in results]
            mismatched = sum(
                int((r["ours"] != r["hf"]).sum()) if ok else r["ours"].numel()
                for r, ok in zip(results, shape_ok, strict=True)
            )
            cases.append(
                GreedyCase(
                    shape,
                    batch,
                    cfg,
                    parameters(ours),
                    times,
                    mismatched == 0 and all(shape_ok),
                    mismatched,
                    all(shape_ok),
                )
            )
    return cases


def greedy_vs_hf(
    rounds: int,
    *,
    shapes: Sequence[str] = tuple(GREEDY_SHAPES),
    batches: Sequence[int] = GREEDY_BATCHES,
    new_tokens: int = GREEDY_NEW_TOKENS,
) -> str | None:
    transformers = quiet_transformers("greedy_vs_hf")
    if transformers is None:
        return None
    transformers.utils.logging.disable_progress_bar()
    cases = greedy_cases(rounds, shapes=shapes, batches=batches, new_tokens=new_tokens)
    rows, results, ratios, setups = [], [], [], {}
    for c in cases:
        ours_s, hf_s = statistics.median(c.times["ours"]), statistics.median(c.times["hf"])
        ratios.append(hf_s / ours_s)
        tokens = c.batch * new_tokens
        rows.append(
            f"| {c.shape} | {c.batch} | {ours_s:.3f} s | {hf_s:.3f} s | {tokens / ours_s:,.0f} | "
            f"{tokens / hf_s:,.0f} | {hf_s / ours_s:.2f} | "
            f"{'yes' if c.identical else f'NO ({c.mismatched} tokens differ)'} |"
        )
        results.append(
            f"{c.shape} batch {c.batch} **{hf_s / ours_s:.2f}x** (round by round: "
            f"{round_ratios(c.times, 'hf', 'ours')})"
        )
        cfg = c.cfg
        setups[c.shape] = (
            f"{c.shape}: {cfg.n_layers} layers, {cfg.d_model} dims, {cfg.n_heads} heads, d_ff "
            f"{cfg.d_ff}, vocabulary {cfg.vocab_size}, max_seq_len {cfg.max_seq_len}, {c.params} "
            f"parameters"
        )
    met = all(ratio >= 2 for ratio in ratios)
    full = all(c.full for c in cases)
    return "\n".join(
        [
            f"### Greedy generation against Hugging Face `generate` (GPT-2 architecture, {new_tokens} new tokens)",
            "",
            "| shape | batch | ours median | HF median | tokens/s ours | tokens/s HF | hf / ours | tokens identical |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"- Result: hf / ours = {'; '.join(results)}. Target **>= 2x on CPU: "
            f"{'met' if met else 'not met'}**"
            + ("" if full else f"; WARNING: some run did not give {new_tokens} tokens"),
            f"- Work: a prompt of {GREEDY_PROMPT_LEN} random tokens per row (no padding), {new_tokens} new tokens, "
            f"greedy, no EOS; tokens/s counts the new tokens of every row. Ours: `lm.generate(prompt, max_new_tokens="
            f"{new_tokens})`; HF: `GPT2LMHeadModel.generate(input_ids, attention_mask, max_new_tokens={new_tokens}, "
            f"min_new_tokens={new_tokens}, do_sample=False, use_cache=True)` (its DynamicCache), both under "
            f"`torch.inference_mode()`. Tokens identical: the same sequences from both sides in every round",
            f"- Models: our TransformerLM from the gpt2-small preset (pre-LN, learned positions, tanh GELU, tied "
            f"embeddings), random weights (seed 0), dropout 0, float32, exported with `export_hf` and loaded by "
            f'`GPT2LMHeadModel.from_pretrained(dir, attn_implementation="sdpa")`: {"; ".join(setups.values())}. '
            f"{rounds} rounds alternating ours / HF per shape and batch, after a warm-up run of each",
            "- Target (the issue): greedy generation, 128 new tokens, batch 1 and batch 8, at least 2x as fast as "
            "transformers `generate` with its cache, same shape and dtype, on CPU; issue 26: at least 1.5x for 6x384, "
            "batch 1, on every CPU",
            *footer(SCRIPT, versions("transformers")),
        ]
    )


# --- compiled --------------------------------------------------------------------------------------------------


def compiled(
    rounds: int,
    *,
    shapes: Sequence[str] = ("nanogpt", "6x384"),
    batches: Sequence[int] = GREEDY_BATCHES,
    new_tokens: int = GREEDY_NEW_TOKENS,
) -> str:
    """`lm.generate` against `CompiledDecoder` (each token one compiled graph) on the same model: greedy, the same
    tokens required."""
    rows, results, setups = [], [], {}
    for shape in shapes:
        cfg = TransformerConfig.from_preset("gpt2-small", dropout=0.0, **GREEDY_SHAPES[shape])
        torch.manual_seed(0)
        lm = cast(TransformerLM, as_users_run(TransformerLM(cfg).eval()))
        setups[shape] = f"{shape}: {cfg.n_layers} layers, {cfg.d_model} dims, vocabulary {cfg.vocab_size}"
        for batch in batches:
            prompt = torch.randint(
                cfg.vocab_size, (batch, GREEDY_PROMPT_LEN), generator=torch.Generator().manual_seed(0)
            )
            decoder = CompiledDecoder(lm, batch_size=batch, max_len=GREEDY_PROMPT_LEN + new_tokens)
            label = f"{shape} batch {batch}: "
            print(f"compiled: {label}compiling (the first call)", file=sys.stderr, flush=True)
            began = time.perf_counter()
            decoder.generate(prompt, max_new_tokens=new_tokens)
            warm_up = time.perf_counter() - began

            def run_generate(lm: TransformerLM = lm, prompt: Tensor = prompt) -> Tensor:
                with torch.inference_mode():
                    return lm.generate(prompt, max_new_tokens=new_tokens)

            def run_compiled(decoder: CompiledDecoder = decoder, prompt: Tensor = prompt) -> Tensor:
                return decoder.generate(prompt, max_new_tokens=new_tokens)

            run_generate()
            times, outputs = alternate({"generate": run_generate, "compiled": run_compiled}, rounds, label=label)
            same = all(torch.equal(r["generate"], r["compiled"]) for r in outputs)
            a, b = statistics.median(times["generate"]), statistics.median(times["compiled"])
            tokens = batch * new_tokens
            rows.append(
                f"| {shape} | {batch} | {a:.3f} s | {b:.3f} s | {tokens / a:,.0f} | {tokens / b:,.0f} | {a / b:.2f} | "
                f"{warm_up:.1f} s | {'yes' if same else 'NO'} |"
            )
            results.append(
                f"{shape} batch {batch} {a / b:.2f}x (round by round: {round_ratios(times, 'generate', 'compiled')})"
            )
    return "\n".join(
        [
            f"### `lm.generate` against `CompiledDecoder` (greedy, {new_tokens} new tokens, cpu)",
            "",
            "| shape | batch | generate median | CompiledDecoder median | tokens/s generate | tokens/s CompiledDecoder "
            "| generate / compiled | first call (compiling) | tokens identical |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"- Result: generate / CompiledDecoder = {'; '.join(results)}",
            f"- Work: a prompt of {GREEDY_PROMPT_LEN} random tokens per row, {new_tokens} new tokens, greedy, no EOS. "
            f"`lm.generate(prompt, max_new_tokens={new_tokens})` under `torch.inference_mode()` (its growing cache; "
            f"after the prompt, `DecodeStep`'s plain calls on the CPU backend's packed weights) against "
            f"`CompiledDecoder(lm, batch_size=B, max_len={GREEDY_PROMPT_LEN + new_tokens}).generate(prompt, "
            f"max_new_tokens={new_tokens})` (one compiled graph a token, inductor's C++ on a CPU; its first call "
            "compiles and is not timed)",
            "- Models: the gpt2-small preset (pre-LN, learned positions, tanh GELU), random weights (seed 0), float32: "
            f"{'; '.join(setups.values())}. {rounds} rounds alternating the two, after a warm-up run of each",
            *footer(SCRIPT),
        ]
    )


# --- beam_vs_hf ------------------------------------------------------------------------------------------------


@dataclass
class Batch:
    rows: list[int]  # the sentences' indices in the test set
    ids: Tensor  # (B, S) source ids + EOS, right-padded with PAD_ID


def read_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\r\n").strip() for line in f]


def make_batches(sources: list[list[int]], size: int) -> list[Batch]:
    """Length-sorted batches of `size` sentences, right-padded."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    batches = []
    for start in range(0, len(order), size):
        rows = order[start : start + size]
        width = max(len(sources[i]) for i in rows)
        ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
        for j, i in enumerate(rows):
            ids[j, : len(sources[i])] = torch.tensor(sources[i])
        batches.append(Batch(rows, ids))
    return batches


def marian_twin(cfg: TransformerConfig) -> torch.nn.Module:
    """A randomly initialised Hugging Face MarianMTModel of the same size as our model of `cfg`."""
    from transformers import MarianConfig, MarianMTModel

    hf_cfg = MarianConfig(
        vocab_size=cfg.target_vocab_size,
        d_model=cfg.d_model,
        encoder_layers=cfg.encoder_layers,
        decoder_layers=cfg.decoder_layers,
        encoder_attention_heads=cfg.n_heads,
        decoder_attention_heads=cfg.n_heads,
        encoder_ffn_dim=cfg.d_ff,
        decoder_ffn_dim=cfg.d_ff,
        max_position_embeddings=cfg.max_seq_len,
        activation_function=cfg.activation,
        scale_embedding=cfg.scale_embeddings,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=cfg.tie_embeddings,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=BOS_ID,
        forced_eos_token_id=None,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
    )
    torch.manual_seed(0)
    return MarianMTModel(hf_cfg).eval()


def forced_length(batch: Batch) -> int:
    return batch.ids.size(1) + EXTRA_TOKENS


def translate_ours(model: Seq2SeqTransformer, batches: list[Batch]) -> list[Tensor]:
    return [
        model.generate(
            b.ids,
            num_beams=BEAMS,
            length_penalty=LENGTH_PENALTY,
            max_new_tokens=forced_length(b),
            min_new_tokens=forced_length(b),
        )
        for b in batches
    ]


def translate_hf(model: torch.nn.Module, batches: list[Batch]) -> list[Tensor]:
    return [
        model.generate(
            input_ids=b.ids,
            attention_mask=(b.ids != PAD_ID).long(),
            num_beams=BEAMS,
            length_penalty=LENGTH_PENALTY,
            max_new_tokens=forced_length(b),
            min_new_tokens=forced_length(b),
            do_sample=False,
        )
        for b in batches
    ]


def same_work(batches: list[Batch], ours: list[Tensor], hf: list[Tensor]) -> bool:
    """Every sentence decoded exactly its forced length on both sides (HF's output starts with the decoder's
    start token, ours does not)."""
    return all(
        o.shape == (b.ids.size(0), forced_length(b)) and h.shape == (b.ids.size(0), forced_length(b) + 1)
        for b, o, h in zip(batches, ours, hf, strict=True)
    )


def beam_vs_hf(rounds: int, batch_size: int) -> str | None:
    missing = [str(p) for p in (CHECKPOINT, TEST_SOURCE, TEST_TARGET) if not p.exists()]
    if missing:
        print(f"beam_vs_hf: skipped, not found: {', '.join(missing)}", file=sys.stderr)
        return None
    if quiet_transformers("beam_vs_hf") is None:
        return None
    from transformer_networks.training.checkpoint import load_checkpoint

    ck = load_checkpoint(CHECKPOINT)
    tokenizer: TextTokenizer = ck.source_tokenizer
    sources = [tokenizer.encode(text) + [EOS_ID] for text in read_lines(TEST_SOURCE)]
    batches = make_batches(sources, batch_size)

    cfg = TransformerConfig.from_dict({**ck.config.to_dict(), "dropout": 0.0})
    torch.manual_seed(0)
    ours = as_users_run(Seq2SeqTransformer(cfg).eval())
    hf = marian_twin(cfg)
    print("beam_vs_hf: warm-up (the first and last batch, each side)", file=sys.stderr, flush=True)
    for model, translate in ((ours, translate_ours), (hf, translate_hf)):
        translate(model, [batches[0], batches[-1]])
    times, results = alternate(
        {"ours": lambda: translate_ours(ours, batches), "hf": lambda: translate_hf(hf, batches)}, rounds
    )
    equal = all(same_work(batches, r["ours"], r["hf"]) for r in results)
    ours_s, hf_s = statistics.median(times["ours"]), statistics.median(times["hf"])
    tokens = sum(b.ids.size(0) * forced_length(b) for b in batches)
    steps = sum(forced_length(b) for b in batches)
    n = len(sources)

    trained = trained_beam_vs_greedy(ck, batches, rounds)
    attention = getattr(hf.config, "_attn_implementation", "?")
    return "\n".join(
        [
            "### Beam search (4 beams) against Hugging Face `generate`, Multi30k test 2016",
            "",
            f"| {n:,} sentences, beam {BEAMS}, forced lengths | median time | sentences/s | every run (s) |",
            "|---|---|---|---|",
            f"| ours: `Seq2SeqTransformer.generate` | {ours_s:.2f} s | {n / ours_s:.1f} | "
            f"{seconds_list(times['ours'])} |",
            f"| Hugging Face: `MarianMTModel.generate` | {hf_s:.2f} s | {n / hf_s:.1f} | {seconds_list(times['hf'])} |",
            "",
            f"- Result: **hf / ours = {hf_s / ours_s:.2f}** (above 1: ours is faster; round by round: "
            f"{round_ratios(times, 'hf', 'ours')}); every sentence decoded exactly "
            f"its forced length on both sides: {'yes' if equal else 'NO'}",
            f"- Work: {len(batches)} length-sorted batches of up to {batch_size} sentences, right-padded "
            f"(attention mask "
            f"for HF); every sentence decodes (its batch's source length + {EXTRA_TOKENS}) tokens with "
            f"min_new_tokens = "
            f"max_new_tokens, {steps} beam steps and {tokens:,} tokens per beam over the set; length penalty "
            f"{LENGTH_PENALTY}. {rounds} rounds alternating ours / HF after a warm-up (two batches each)",
            f"- Models, both randomly initialised (seed 0), dropout 0, the shape of runs/bench/multi30k: "
            f"{cfg.encoder_layers}+{cfg.decoder_layers} layers, {cfg.d_model} dims, {cfg.n_heads} heads, d_ff "
            f"{cfg.d_ff}, shared vocabulary {cfg.vocab_size} tied to the output, {cfg.activation}, scaled embeddings. "
            f"Ours as the checkpoint: pre-LN, {cfg.positional} positions, {parameters(ours)} parameters. Marian: "
            f"post-LN, sinusoidal positions, a final logits bias, attention `{attention}`, {parameters(hf)} parameters",
            "- Target: beam-4 translation of the Multi30k test set at least as fast as Hugging Face `generate` "
            "with the "
            "same model size and beam, measured side by side",
            "",
            *trained,
            *footer(SCRIPT, versions("transformers")),
        ]
    )


def trained_beam_vs_greedy(ck: Any, batches: list[Batch], rounds: int) -> list[str]:
    """The trained checkpoint: beam 4 against greedy decoding, real lengths (EOS stops a sentence)."""
    model, tokenizer = as_users_run(ck.model), ck.tokenizer
    references = read_lines(TEST_TARGET)

    calls = 0  # calls of the decoder: one per decoding step of a batch
    steps: dict[int, int] = {}  # decoding steps over the set, by number of beams

    def count(*_: Any) -> None:
        nonlocal calls
        calls += 1

    hook = model.decoder.register_forward_hook(count)

    def translate(num_beams: int) -> list[Tensor]:
        nonlocal calls
        calls = 0
        out = [model.generate(b.ids, num_beams=num_beams, length_penalty=LENGTH_PENALTY) for b in batches]
        steps[num_beams] = calls
        return out

    def texts(outputs: list[Tensor]) -> list[str]:
        out = [""] * len(references)
        for b, ids in zip(batches, outputs, strict=True):
            for row, hyp in zip(b.rows, ids.tolist(), strict=True):
                out[row] = tokenizer.decode(hyp)
        return out

    def mean_length(outputs: list[Tensor]) -> float:
        """New tokens per sentence, up to and including EOS (rows are filled with PAD_ID after it)."""
        lengths = [
            row.index(EOS_ID) + 1 if EOS_ID in row else sum(t != PAD_ID for t in row)
            for ids in outputs
            for row in ids.tolist()
        ]
        return sum(lengths) / len(lengths)

    print("trained checkpoint: warm-up (the first batch, beam and greedy)", file=sys.stderr, flush=True)
    for k in (BEAMS, 1):
        model.generate(batches[0].ids, num_beams=k, length_penalty=LENGTH_PENALTY)
    times, results = alternate({"beam": lambda: translate(BEAMS), "greedy": lambda: translate(1)}, rounds)
    hook.remove()
    last = results[-1]
    beam_s, greedy_s = statistics.median(times["beam"]), statistics.median(times["greedy"])
    rows = []
    for name, k, label, seconds in (
        ("beam", BEAMS, f"beam {BEAMS}, length penalty {LENGTH_PENALTY}", beam_s),
        ("greedy", 1, "greedy", greedy_s),
    ):
        rows.append(
            f"| {label} | {seconds:.2f} s | {len(references) / seconds:.1f} | "
            f"{bleu(texts(last[name]), references):.2f} | {mean_length(last[name]):.1f} | {steps[k]} | "
            f"{seconds_list(times[name])} |"
        )
    return [
        f"#### The trained checkpoint (runs/bench/multi30k, step {ck.step:,}): beam {BEAMS} against greedy",
        "",
        "| decoding, real lengths (EOS stops) | median time | sentences/s | BLEU | tokens per sentence | "
        "decoder steps | every run (s) |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"- Result: **beam {BEAMS} takes {beam_s / greedy_s:.1f}x the time of greedy decoding**; the same batches, "
        f"`generate(src, num_beams={BEAMS}, length_penalty={LENGTH_PENALTY})` against `generate(src)`, at most "
        f"source length + 50 new tokens; {rounds} rounds alternating after a warm-up. BLEU by sacrebleu on the "
        f"detokenized output against the English references; tokens per sentence counts the EOS; decoder steps: "
        f"calls of the decoder over the {len(batches)} batches (a batch runs until its last sentence is done)",
    ]


# --- command line ----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", choices=["kv_cache", "greedy_vs_hf", "compiled", "beam_vs_hf", "all"])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of each side, after a warm-up")
    parser.add_argument("--batch-size", type=int, default=64, help="beam_vs_hf: sentences per batch")
    parser.add_argument(
        "--shapes",
        nargs="+",
        choices=list(GREEDY_SHAPES),
        default=list(GREEDY_SHAPES),
        help="greedy_vs_hf: the model sizes",
    )
    parser.add_argument(
        "--batches", nargs="+", type=int, default=list(GREEDY_BATCHES), help="greedy_vs_hf: the batch sizes"
    )
    parser.add_argument("--new-tokens", type=int, default=GREEDY_NEW_TOKENS, help="greedy_vs_hf: tokens to generate")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = ["kv_cache", "greedy_vs_hf", "compiled", "beam_vs_hf"] if "all" in args.names else args.names
    for name in names:
        if name == "kv_cache":
            text = kv_cache(args.rounds)
        elif name == "greedy_vs_hf":
            text = greedy_vs_hf(args.rounds, shapes=args.shapes, batches=args.batches, new_tokens=args.new_tokens)
        elif name == "compiled":
            text = compiled(args.rounds, shapes=args.shapes, batches=args.batches, new_tokens=args.new_tokens)
        else:
            text = beam_vs_hf(args.rounds, args.batch_size)
        if text is None:
            continue
        print(text, flush=True)
        if not args.no_write:
            write_block(name, text, script="generation")


if __name__ == "__main__":
    main()
