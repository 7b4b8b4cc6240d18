"""bench/gpu.py: its FLOP count agrees with PyTorch's FLOP counter, its spec table reads device names, and the script
runs end to end on a CPU (tiny shape, eager)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import gpu  # noqa: E402  (bench/ is not a package)
import train_step  # noqa: E402


def test_flops_per_token_is_what_the_flop_counter_counts():
    shape = gpu.SHAPES["tiny"]
    ours = train_step.lm_sides(shape)[0]  # float32, on the CPU, as the mfu side is built
    assert ours.name == "ours"
    ids = torch.randint(shape.vocab, (shape.batch, shape.block + 1), generator=torch.Generator().manual_seed(0))
    # The CPU's fused attention kernel has no formula in FlopCounterMode (it counts 0 for it); the math backend
    # writes attention as matrix products over the whole T x T block (the causal mask applied afterwards), which
    # the counter counts: the full non-causal attention that 12 L H Q T assumes, as the counter's formula for the
    # GPU's flash and memory-efficient kernels does.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        ours.loss((ids[:, :-1], ids[:, 1:])).backward()
    counted = counter.get_total_flops() / (shape.batch * shape.block)

    n = gpu.non_position_params(ours.model)
    estimate = gpu.flops_per_token(n, shape.n_layers, shape.n_heads, shape.d_model // shape.n_heads, shape.block)
    # The counter counts matrix products only. 6N also counts the vectors (biases and norm gains, 1,792 of the
    # 104,256 parameters here) as if each took part in a multiply-add; subtract them and the two agree exactly
    # (softmax, norms and GELU are not counted on either side).
    vectors = sum(p.numel() for p in ours.model.parameters() if p.dim() == 1)
    assert counted == pytest.approx(estimate - 6 * vectors, rel=1e-9)
    # The whole estimate is 1.6% above the count; with the position table in N it would be 3.5% above, without the
    # attention term 5.8% below.
    assert counted == pytest.approx(estimate, rel=0.02)


def test_spec_figures_come_from_the_device_name(monkeypatch):
    cuda = torch.device("cuda")
    for name, peak, bandwidth in (
        ("NVIDIA H100 80GB HBM3", 989, 3350),
        ("NVIDIA H100 PCIe", 756, 2000),
        ("NVIDIA H200", 989, 4800),
        ("NVIDIA A100-SXM4-80GB", 312, 2039),
        ("NVIDIA GeForce RTX 4090", None, None),
    ):
        monkeypatch.setattr(gpu, "device_name", lambda _, name=name: name)
        assert (gpu.spec(cuda, gpu.PEAK_TFLOPS), gpu.spec(cuda, gpu.BANDWIDTH_GBS)) == (peak, bandwidth), name


def test_script_runs_both_parts_on_a_cpu():
    result = subprocess.run(
        [
            sys.executable,
            "bench/gpu.py",
            "mfu",
            "decode",
            "--device",
            "cpu",
            "--shape",
            "tiny",
            "--rounds",
            "1",
            "--steps",
            "1",
            "--new-tokens",
            "4",
            "--no-compile",
            "--no-write",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "### Model FLOPs utilisation of tiny language-model training (bf16 autocast, eager, cpu)" in out
    assert "### Batch-1 decoding of tiny against the memory-bandwidth limit (bf16, cpu)" in out
    for row in (
        "| ours | 104,256 |",
        "| transformers GPT-2 | 104,256 |",
        "| bf16 matmul 1024^3 |",
        "| ours, growing cache |",
        "| HF generate |",
        "| copy 64 MiB (read + write) |",
    ):
        assert row in out, row
    assert "static cache" not in out.split("| side |")[-1].split("\n\n")[0]  # --no-compile: no static-cache rows
    assert "MFU of ours n/a (target >= 45%)" in out  # no peak known for a CPU
    assert out.count("- Command:") == 2
