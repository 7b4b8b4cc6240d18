"""How much of a GPU gpt2-small gets: model FLOPs utilisation while training, memory bandwidth while decoding.

    python bench/gpu.py mfu      gpt2-small LM training step, bf16 autocast, torch.compile: ours vs GPT2LMHeadModel
    python bench/gpu.py decode   batch-1 greedy decoding of gpt2-small in bf16 against the HBM bandwidth limit
    python bench/gpu.py all      both

mfu: a training step (forward, cross-entropy, backward, fused AdamW step) of a gpt2-small language model (12 layers,
12 heads, 768 dims, block 1024, batch 16, vocabulary 50,304: GPT-2's 50,257 padded to a multiple of 64, as nanoGPT
and llm.c do), ours (`TransformerLM`, exact GELU) against transformers' GPT2LMHeadModel built for the same
mathematics (`train_step.lm_sides`: the same shapes, every matrix drawn from N(0, 0.02), dropout 0). Weights,
gradients and optimizer state stay float32; forward and loss run under `torch.autocast(bfloat16)`, as
`transformer-networks train --precision bf16` trains; each side's loss function is `torch.compile`d
(--no-compile: eager). The work of a step is counted as 6N + 12 L H Q T floating-point operations per token (N
parameters without the position table, L layers, H heads, Q head dim, T block: every weight's forward and backward
matrix products plus attention's, counted as full non-causal attention, as nanoGPT, llm.c and the PaLM paper count
it); MFU = achieved FLOP/s / the device's spec peak (989 TFLOP/s dense bf16 on an H100 SXM or H200). Target: ours
>= 45% on an H100 (llm.c reports up to about 60% on an A100; typical PyTorch GPT-2 training gets 30-40%). A large
bf16 matrix product timed in the same alternation shows the peak this device reaches in practice.

decode: batch-1 greedy decoding of gpt2-small in bf16 (a 16-token random prompt, --new-tokens new tokens, no EOS).
Each new token reads every weight once (the position table aside: one row of it) and the KV cache so far, so a token
cannot take less than (weight bytes + cache bytes) / memory bandwidth; the fraction of that limit a side reaches is
what the numbers mean. Sides: ours with its growing cache; ours with a preallocated (static) cache and its layer
stack compiled (`mode="reduce-overhead"`, CUDA graphs, on a GPU); ours with the whole step compiled
(`CompiledDecoder`: embedding, layers, output layer, argmax and cache writes as one graph, one CUDA graph on a GPU),
gpt-fast's recipe, which reaches about 70% of an A100's bandwidth; transformers `generate` with its dynamic cache,
and with `cache_implementation="static"` (which compiles the model itself on a GPU). Ours and GPT-2 hold the same
weights (`generation.gpt2_twins`), so the tokens should agree; bf16 can flip near-ties, so the share of identical
tokens is reported, not required. A copy of a large tensor, timed in the same alternation, gives the bandwidth the
device reaches in practice.

Method (as every script in bench/): warm-up first, then the sides alternate (A B A B ...) for --rounds rounds;
medians; peer / ours ratios (> 1: ours is faster); CUDA events after a synchronize on a GPU. On a CPU (--shape tiny)
everything still runs as a smoke test, with the utilisation columns at "n/a" when no peak or bandwidth is known.
Each part prints its table and replaces its block in BENCHMARKS.md (machine, versions, date, command). Needs
Hugging Face transformers (pip install -e '.[bench]'); without it the script says so and exits.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.util
import statistics
import sys
from collections.abc import Callable

import torch
from generation import gpt2_twins, greedy_sides, quiet_transformers
from harness import alternate, footer, versions, write_block
from torch import Tensor, nn
from train_step import LMShape, Side, compare, lm_sides, ratio_text

from transformer_networks.generation.compiled import CompiledDecoder

SCRIPT = "bench/gpu.py"
WARMUPS = 2  # decode: untimed runs of every side first (compilation, CUDA graph recording, a recompilation)
PROMPT_LEN = 16  # decode: random prompt tokens
COMPILED_STEP = "ours, CompiledDecoder (one graph a token)"

# mfu shapes; steps: training steps per timed round. GPT-2's vocabulary 50,257 padded to 50,304 (a multiple of 64).
SHAPES = {
    "gpt2-small": LMShape(
        "gpt2-small (12 layers, 12 heads, 768 dims)",
        12,
        12,
        768,
        1024,
        16,
        50304,
        steps=10,
        target=">= 45% MFU on an H100",
    ),
    "tiny": LMShape(
        "tiny (2 layers, 2 heads, 64 dims), CPU smoke test", 2, 2, 64, 32, 4, 65, steps=2, target="none (smoke test)"
    ),
}
JUDGED_PEER = "transformers GPT-2"  # lm_sides' GPT-2 with exact GELU; its gelu_new twin and x-transformers are left out

# Spec sheets: dense bf16 tensor-core TFLOP/s and HBM GB/s, by a piece of the device name (the first match wins).
PEAK_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0))
BANDWIDTH_GBS = (("H200", 4800.0), ("H100 PCIe", 2000.0), ("H100", 3350.0), ("A100", 2039.0))


# --- the device ------------------------------------------------------------------------------------------------


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def spec(device: torch.device, table: tuple[tuple[str, float], ...]) -> float | None:
    """The spec-sheet figure of this device from `table`, or None for a device the table does not know."""
    name = device_name(device)
    return next((value for key, value in table if all(word in name for word in key.split())), None)


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def matmul_bf16(device: torch.device) -> tuple[Callable[[], Tensor], float, int]:
    """A bf16 n x n x n matrix product to time (n = 8192 on a GPU, 1024 on a CPU), its operations, and n."""
    n = 8192 if device.type == "cuda" else 1024
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=generator).to(device, torch.bfloat16) for _ in range(2))
    return (lambda: a @ b), 2.0 * n**3, n


def copy_bf16(device: torch.device) -> tuple[Callable[[], Tensor], int]:
    """A copy of one large tensor into another (1 GiB on a GPU, 64 MiB on a CPU) and the bytes it moves (each byte
    read once and written once)."""
    n_bytes = 2**30 if device.type == "cuda" else 2**26
    source = torch.ones(n_bytes // 2, dtype=torch.bfloat16, device=device)
    target = torch.empty_like(source)
    return (lambda: target.copy_(source)), 2 * n_bytes


# --- counting --------------------------------------------------------------------------------------------------


def flops_per_token(n_params: int, n_layers: int, n_heads: int, head_dim: int, block: int) -> int:
    """Floating-point operations of one training step per token: 6N + 12 L H Q T.

    6N: each weight takes part in one multiply-add (2 operations) in the forward pass and two in the backward
    (the gradients of its input and of itself). 12 L H Q T: attention's two matrix products (scores Q K^T and
    their weighted sum of V) over the whole block, 2 * 2 * T * H * Q per token and layer forward, three times that
    with the backward; counted as full attention even though a causal model needs only half of it."""
    return 6 * n_params + 12 * n_layers * n_heads * head_dim * block


def position_table(model: nn.Module) -> Tensor:
    """The learned position table: ours (`TransformerLM`) or Hugging Face GPT-2's `transformer.wpe`."""
    if hasattr(model, "decoder"):
        return model.decoder.embeddings.position.embedding.weight
    return model.transformer.wpe.weight


def non_position_params(model: nn.Module) -> int:
    """N of the FLOP and byte counts: every parameter once (tied weights once) except the position table, of which
    a token only uses one row."""
    return sum(p.numel() for p in model.parameters()) - position_table(model).numel()


# --- mfu -------------------------------------------------------------------------------------------------------


def mfu_shape(args: argparse.Namespace) -> LMShape:
    """The --shape preset with --batch, --block and --steps applied."""
    shape = SHAPES[args.shape]
    changes = {k: v for k, v in (("batch", args.batch), ("block", args.block), ("steps", args.steps)) if v}
    return dataclasses.replace(shape, **changes)


def under_bf16(side: Side, device: torch.device) -> Side:
    """The side with its forward and loss under bf16 autocast (parameters and optimizer stay float32)."""

    def loss(batch: tuple[Tensor, ...]) -> Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return side.loss(batch)

    return Side(side.name, side.model, loss, side.judged)


def mfu_table(
    sides: list[Side],
    per_step: dict[str, float],
    warmups: dict[str, float],
    shape: LMShape,
    peak: float | None,
    matmul: tuple[str, float],
) -> list[str]:
    """One row per side and one for the matrix product (its name and TFLOP/s)."""
    label, matmul_tflops = matmul
    rows = [
        "| side | N (no positions) | ms per step | peer / ours | tokens/s | TFLOP/s | MFU | of matmul rate "
        "| warm-up s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    tokens = shape.batch * shape.block
    for side in sides:
        n = non_position_params(side.model)
        t = per_step[side.name]
        tflops = (
            flops_per_token(n, shape.n_layers, shape.n_heads, shape.d_model // shape.n_heads, shape.block)
            * tokens
            / t
            / 1e12
        )
        rows.append(
            f"| {side.name} | {n:,} | {t * 1000:.1f} | {t / per_step['ours']:.2f} | {tokens / t:,.0f} | "
            f"{tflops:.2f} | {percent(peak and tflops / peak)} | {tflops / matmul_tflops:.0%} | "
            f"{warmups[side.name]:.1f} |"
        )
    rows.append(
        f"| {label} | | {per_step['matmul'] * 1000:.2f} per product | | | {matmul_tflops:.2f} | "
        f"{percent(peak and matmul_tflops / peak)} | 100% | |"
    )
    return rows


def mfu(args: argparse.Namespace) -> str | None:
    if quiet_transformers("mfu") is None:
        return None
    shape, device = mfu_shape(args), args.device
    sides = [under_bf16(s, device) for s in lm_sides(shape) if s.name in ("ours", JUDGED_PEER)]
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(shape.vocab, (shape.batch, shape.block + 1), generator=generator)
    batches = [(ids[:, :-1].to(device), ids[:, 1:].to(device))]  # (B, T) inputs and next-token targets
    multiply, multiply_flops, n = matmul_bf16(device)
    run = argparse.Namespace(device=device, compile=not args.no_compile, rounds=args.rounds)
    per_step, warmups = compare(sides, batches, run, "mfu", shape.steps, {"matmul": multiply})

    peak = args.peak_tflops
    matmul_tflops = multiply_flops / per_step["matmul"] / 1e12
    tokens = shape.batch * shape.block
    n_ours = non_position_params(sides[0].model)
    per_token = flops_per_token(n_ours, shape.n_layers, shape.n_heads, shape.d_model // shape.n_heads, shape.block)

    def tflops(name: str) -> float:
        return per_token * tokens / per_step[name] / 1e12

    peers = [s.name for s in sides if s.name != "ours"]
    best = min(peers, key=per_step.__getitem__, default=None)
    peer_text = (
        f"best peer ({best}): MFU {percent(peak and tflops(best) / peak)} ({tflops(best):.2f} TFLOP/s)"
        if best
        else "no peer installed"
    )
    peak_text = f"{peak:g} TFLOP/s" if peak else "unknown (give --peak-tflops)"
    mode = "eager" if args.no_compile else "torch.compile"
    return "\n".join(
        [
            f"### Model FLOPs utilisation of {args.shape} language-model training (bf16 autocast, {mode}, "
            f"{device.type})",
            "",
            *mfu_table(sides, per_step, warmups, shape, peak, (f"bf16 matmul {n}^3", matmul_tflops)),
            "",
            f"- Result: **MFU of ours {percent(peak and tflops('ours') / peak)} (target >= 45%)**, "
            f"{tflops('ours'):.2f} TFLOP/s; {peer_text}; {ratio_text(per_step, sides)}",
            f"- Device: {device_name(device)}, spec dense bf16 peak {peak_text}; a bf16 {n} x {n} x {n} matrix product "
            f"in the same alternation runs at {matmul_tflops:.2f} TFLOP/s (measured peak"
            + (f", {matmul_tflops / peak:.0%} of the spec)" if peak else ")"),
            f"- Work: {shape.name}, block {shape.block}, batch {shape.batch} ({tokens:,} tokens per step), vocabulary "
            f"{shape.vocab:,}"
            + (" (GPT-2's 50,257 padded to a multiple of 64, as nanoGPT and llm.c do)" if shape.vocab == 50304 else "")
            + f"; {per_token / 1e6:,.1f} MFLOP per token by 6N + 12 L H Q T (N = {n_ours:,} parameters without the "
            "position table, the tied output projection counted once; attention counted over the full block)",
            "- Sides: ours, `TransformerLM` of the gpt2-small preset (pre-LN, learned positions, exact GELU, tied "
            'output); transformers `GPT2LMHeadModel(activation_function="gelu", attn_implementation="sdpa")`; every '
            "matrix from N(0, 0.02), dropout 0; float32 weights, gradients and fused AdamW state, forward and cross-"
            f"entropy under `torch.autocast({device.type!r}, dtype=torch.bfloat16)`"
            + ("" if args.no_compile else ", the loss function (model + loss) compiled with `torch.compile`")
            + f". Two warm-up steps, then {args.rounds} alternating rounds of {shape.steps} steps on the same batch of "
            "random tokens; ms per step are medians",
            *footer(SCRIPT, versions("transformers")),
        ]
    )


# --- decode ----------------------------------------------------------------------------------------------------


def decode_twins(args: argparse.Namespace) -> tuple[nn.Module, nn.Module]:
    """Our gpt2-small (or the tiny shape) and GPT2LMHeadModel with the same weights, in bf16 on the device."""
    if args.shape == "gpt2-small":
        ours, hf = gpt2_twins("gpt2-small")
    else:
        s = SHAPES[args.shape]
        ours, hf = gpt2_twins(
            "gpt2-small",
            n_layers=s.n_layers,
            n_heads=s.n_heads,
            d_model=s.d_model,
            d_ff=4 * s.d_model,
            vocab_size=s.vocab,
            max_seq_len=s.block,
        )
    return ours.to(args.device, torch.bfloat16), hf.to(args.device, torch.bfloat16)


def bytes_per_token(model: nn.Module, new_tokens: int) -> tuple[float, float]:
    """Bytes a decoding step reads: the weights (all but the position table, tied ones once) and the KV cache,
    keys and values of every layer, averaged over the generation (P + n/2 tokens on average)."""
    cfg, size = model.cfg, next(model.parameters()).element_size()
    weights = non_position_params(model) * size
    cache = 2 * len(model.decoder.stack.layers) * (PROMPT_LEN + new_tokens / 2) * cfg.kv_heads * cfg.head_dim * size
    return weights, cache


def decode_sides(
    ours: nn.Module, hf: nn.Module, prompt: Tensor, n: int, compile_stack: bool
) -> dict[str, Callable[[], Tensor]]:
    """Each side's call: prompt (1, P) -> prompt + n greedy tokens, (1, P + n)."""
    run_ours, run_hf = greedy_sides(ours, hf, prompt, n)
    sides = {"ours, growing cache": run_ours}
    if compile_stack:
        # A copy whose layer stack is compiled: with a preallocated cache its inputs keep fixed shapes, so every
        # decoding step reuses one graph (and, on a GPU, one CUDA graph).
        compiled = copy.deepcopy(ours)
        cuda = prompt.device.type == "cuda"
        compiled.decoder.stack.compile(mode="reduce-overhead" if cuda else "default", dynamic=False)
        cache = compiled.init_cache(prompt.size(0), prompt.size(1) + n)  # one for every run: CUDA graphs replay

        def run_static() -> Tensor:
            with torch.inference_mode():
                return compiled.generate(prompt, max_new_tokens=n, cache=cache)

        sides["ours, static cache + compiled stack"] = run_static
        # The whole step (embedding, layers, output layer, argmax, cache writes) as one graph: CompiledDecoder.
        decoder = CompiledDecoder(ours, max_len=prompt.size(1) + n)  # a 16-token prompt fills its bucket

        def run_step() -> Tensor:
            return decoder.generate(prompt, max_new_tokens=n)

        sides[COMPILED_STEP] = run_step
    sides["HF generate"] = run_hf
    if compile_stack:
        mask = torch.ones_like(prompt)

        def run_hf_static() -> Tensor:
            with torch.inference_mode():
                return hf.generate(
                    input_ids=prompt,
                    attention_mask=mask,
                    max_new_tokens=n,
                    min_new_tokens=n,
                    do_sample=False,
                    use_cache=True,
                    pad_token_id=0,
                    cache_implementation="static",
                )

        sides["HF generate, static cache"] = run_hf_static
    return sides


def warm_up(sides: dict[str, Callable[[], Tensor]], optional: tuple[str, ...]) -> dict[str, Callable[[], Tensor]]:
    """Run every side WARMUPS times; an optional side that fails is left out, saying why on one line."""
    kept = {}
    for name, fn in sides.items():
        print(f"decode: warming up {name}", file=sys.stderr, flush=True)
        try:
            for _ in range(WARMUPS):
                fn()
        except Exception as error:
            if name not in optional:
                raise
            reason = " ".join(f"{type(error).__name__}: {error}".split())[:300]
            print(f"decode: {name!r} left out: {reason}", file=sys.stderr, flush=True)
            continue
        kept[name] = fn
    return kept


def same_tokens(results: list[dict], name: str, reference: str) -> float:
    """The share of new tokens that side `name` and `reference` agree on, position by position, over the rounds."""
    same = total = 0
    for r in results:
        a, b = r[name][:, PROMPT_LEN:], r[reference][:, PROMPT_LEN:]
        total += a.numel()
        same += int((a == b).sum()) if a.shape == b.shape else 0
    return same / total


def decode_table(
    seconds: dict[str, float],
    results: list[dict],
    n: int,
    per_token_bytes: float,
    bandwidth: float | None,
    copy_gbs: float,
    copy_label: str,
) -> list[str]:
    """One row per side and one for the copy."""
    spec_head = f"of spec {bandwidth:g} GB/s" if bandwidth else "of spec"
    rows = [
        f"| side | s per run | tokens/s | ms per token | GB/s | {spec_head} | of measured copy | time / ours' best "
        "| same tokens as ours |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    best_ours = min(t for name, t in seconds.items() if name.startswith("ours"))
    for name, t in seconds.items():
        if name == "copy":
            continue
        gbs = per_token_bytes * n / t / 1e9
        rows.append(
            f"| {name} | {t:.3f} | {n / t:,.1f} | {t / n * 1000:.2f} | {gbs:.1f} | "
            f"{percent(bandwidth and gbs / bandwidth)} | {gbs / copy_gbs:.1%} | {t / best_ours:.2f} | "
            f"{same_tokens(results, name, 'ours, growing cache'):.1%} |"
        )
    rows.append(f"| {copy_label} | | | | {copy_gbs:.1f} | {percent(bandwidth and copy_gbs / bandwidth)} | 100% | | |")
    return rows


def decode(args: argparse.Namespace) -> str | None:
    transformers = quiet_transformers("decode")
    if transformers is None:
        return None
    transformers.utils.logging.disable_progress_bar()
    device, n = args.device, args.new_tokens
    ours, hf = decode_twins(args)
    assert ours.cfg.eos_id is None and hf.generation_config.eos_token_id is None  # nothing stops a run early
    prompt = torch.randint(ours.cfg.vocab_size, (1, PROMPT_LEN), generator=torch.Generator().manual_seed(0))
    sides = decode_sides(ours, hf, prompt.to(device), n, compile_stack=not args.no_compile)
    sides = warm_up(sides, optional=("HF generate, static cache", COMPILED_STEP))
    copy_fn, copy_bytes = copy_bf16(device)
    copy_fn()
    times, results = alternate({**sides, "copy": copy_fn}, args.rounds, device=device, label="decode ")
    seconds = {name: statistics.median(t) for name, t in times.items()}

    bandwidth = args.bandwidth_gbs
    copy_gbs = copy_bytes / seconds["copy"] / 1e9
    weights, cache = bytes_per_token(ours, n)
    per_token = weights + cache
    ours_names = [name for name in sides if name.startswith("ours")]
    hf_names = [name for name in sides if not name.startswith("ours")]
    best_ours = min(ours_names, key=seconds.__getitem__)
    best_hf = min(hf_names, key=seconds.__getitem__)

    def reached(name: str) -> str:
        gbs = per_token * n / seconds[name] / 1e9
        return (
            f"{percent(bandwidth and gbs / bandwidth)} of the spec bandwidth, {gbs / copy_gbs:.1%} of the "
            f"measured copy bandwidth"
        )

    limit = (
        f"{per_token / (bandwidth * 1e9) * 1000:.3f} ms per token ({bandwidth * 1e9 / per_token:,.0f} tokens/s)"
        if bandwidth
        else "unknown (give --bandwidth-gbs)"
    )
    copy_label = f"copy {copy_bytes // 2 // 2**20} MiB (read + write)"
    cfg = ours.cfg
    return "\n".join(
        [
            f"### Batch-1 decoding of {args.shape} against the memory-bandwidth limit (bf16, {device.type})",
            "",
            *decode_table(seconds, results, n, per_token, bandwidth, copy_gbs, copy_label),
            "",
            f"- Result: **{best_ours} reaches {reached(best_ours)}**; {best_hf}: {reached(best_hf)}; "
            f"**{best_hf} / {best_ours} = {seconds[best_hf] / seconds[best_ours]:.2f}x**. gpt-fast reaches about 70% "
            "of an A100's bandwidth with compile and a static cache",
            f"- Limit: {per_token / 1e6:.2f} MB read per token = {weights / 1e6:.2f} MB of bf16 weights (every "
            f"parameter but the position table, the tied embedding once) + {cache / 1e6:.2f} MB of KV cache (keys and "
            f"values of {cfg.n_layers} layers at {PROMPT_LEN} + {n}/2 tokens on average); at the spec bandwidth "
            f"({device_name(device)}: " + (f"{bandwidth:g} GB/s" if bandwidth else "unknown") + f") the limit is "
            f"{limit}; the copy in the same alternation measures {copy_gbs:.1f} GB/s",
            f"- Work: a prompt of {PROMPT_LEN} random tokens, {n} new tokens, greedy, no EOS, batch 1; tokens/s counts "
            "the new tokens and a run includes the prompt's prefill. Ours: `lm.generate(prompt, max_new_tokens=n)` "
            "under `torch.inference_mode()`"
            + (
                ""
                if args.no_compile
                else '; its copy with `model.decoder.stack.compile(mode="reduce-overhead" on a '
                'GPU, else "default", dynamic=False)` runs `generate(..., cache=cache)` with one preallocated cache '
                "for every run (`init_cache(1, P + n)`, so that CUDA graphs are replayed, not recorded again); "
                "`CompiledDecoder(model, max_len=16 + n).generate(prompt, max_new_tokens=n)` compiles the whole step "
                "(mode reduce-overhead on a GPU)"
            )
            + f". HF: `GPT2LMHeadModel.generate(input_ids, attention_mask, max_new_tokens={n}, min_new_tokens={n}, "
            "do_sample=False, use_cache=True)`"
            + ("" if args.no_compile else ', and the same with `cache_implementation="static"`')
            + ". Same tokens: "
            "the share of new tokens equal to ours (growing cache) position by position; bf16 can flip near-ties",
            f"- Models: `generation.gpt2_twins` ({cfg.n_layers} layers, {cfg.d_model} dims, {cfg.n_heads} heads, "
            f"vocabulary {cfg.vocab_size:,}, tanh GELU, random weights seed 0) cast to bf16; {WARMUPS} warm-up runs of "
            f"every side, then {args.rounds} alternating rounds; s per run are medians",
            *footer(SCRIPT, versions("transformers")),
        ]
    )


# --- command line ----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="+", choices=["mfu", "decode", "all"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--shape",
        choices=list(SHAPES),
        default="gpt2-small",
        help="gpt2-small, or tiny (2 layers, 64 dims, block 32, vocabulary 65) for a CPU smoke test",
    )
    parser.add_argument("--batch", type=int, help="mfu: rows per step (default 16 for gpt2-small, 4 for tiny)")
    parser.add_argument("--block", type=int, help="mfu: tokens per row (default 1024 for gpt2-small, 32 for tiny)")
    parser.add_argument("--steps", type=int, help="mfu: steps per timed round (default 10 for gpt2-small)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds, alternating the sides (default 5)")
    parser.add_argument("--new-tokens", type=int, default=256, help="decode: tokens to generate (default 256)")
    parser.add_argument("--no-compile", action="store_true", help="eager only: no torch.compile, no static caches")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak (default from the device name)")
    parser.add_argument("--bandwidth-gbs", type=float, help="spec memory bandwidth (default from the device name)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    if importlib.util.find_spec("transformers") is None:
        quiet_transformers("gpu")  # says why on stderr
        return
    args.device = torch.device(args.device)
    args.peak_tflops = args.peak_tflops or spec(args.device, PEAK_TFLOPS)
    args.bandwidth_gbs = args.bandwidth_gbs or spec(args.device, BANDWIDTH_GBS)
    if "decode" in args.parts or "all" in args.parts:
        room = SHAPES[args.shape].block if args.shape == "tiny" else 1024
        if PROMPT_LEN + args.new_tokens > room:
            parser.error(f"--new-tokens: {PROMPT_LEN} prompt tokens + {args.new_tokens} exceed the {room} positions")
    parts = ["mfu", "decode"] if "all" in args.parts else args.parts
    for part in parts:
        text = {"mfu": mfu, "decode": decode}[part](args)
        if text is None:
            continue
        print(text, flush=True)
        if not args.no_write:
            write_block(f"{part}-{args.device.type}", text, script="gpu")
        if args.device.type == "cuda":
            torch.cuda.empty_cache()  # the next part starts from free memory


if __name__ == "__main__":
    main()
