"""`Linear`: `torch.nn.Linear` (the same parameters and state dict) whose float32 CPU products run on oneDNN where
that was measured to be faster.

PyTorch's CPU build has two libraries for matrix products: MKL, which `F.linear` and `torch.mm` call for float32,
and oneDNN, which the same build ships for its own fused operators (`torch.ops.mkldnn`). Which one is faster
depends on the processor. Measured on two cores of each (BENCHMARKS.md):

- AMD EPYC (Zen 5, AVX-512): MKL runs its generic code there, not its AVX-512 one, and oneDNN is about 2.2x
  faster for the same float32 product (a 2048-cube product: 234 GFLOP/s through `torch.mm`, 524 through oneDNN).
  Training steps are mostly such products, so the gain shows up there (bench/train_step.py). On a packed weight
  (reordered into oneDNN's blocked layout) oneDNN also streams the weight of a decoding step at close to memory
  speed: one row of gpt2-small's 50,257 x 768 output layer in 1.9 ms, against 7.3 ms through MKL.
- Intel Xeon (Emerald Rapids, AVX-512 and AMX; other Intel generations are assumed to behave alike): MKL runs
  its own AVX-512 kernels. Large products run at the same rate on both (about 180 GFLOP/s), oneDNN costs ~30 us
  more per call, and a training step is 1.2x slower on oneDNN. oneDNN wins in one case only: 4 to 32 rows by a
  packed weight. One to three rows go through MKL's fast matrix-vector code, but from four rows MKL switches to
  its general product, which is slow for so few rows (eight rows by gpt2-small's 3,072 x 768 feed-forward
  weight: 0.44 ms packed against 0.82 ms through MKL).

So `MODE` is "full" on AMD (and Hygon), "few-rows" on Intel, "off" elsewhere (other architectures, vendors not
measured). The environment variable TN_ONEDNN=full|few-rows|off overrides it when the module is imported; set
`MODE` to change it later. Both libraries compute in float32, so the results agree to float rounding.

    "full" mode
    training (a gradient is needed)   oneDNN on the weight as it is, through `onednn_linear`: an operator with
                                      its own backward pass, which torch.compile keeps in its graph
    eval mode, no gradient            oneDNN on a packed copy of the weight, made on first use and made again
                                      when the weight changes (an optimizer step, `load_state_dict`, `.to()`);
                                      dropped by `train()` and `eval()`
    train mode, no gradient           oneDNN on the weight as it is (weights change too often there to pack)

    "few-rows" mode
    eval mode, no gradient,           oneDNN on a packed copy of the weight, as above
    4-32 rows (FEW_ROWS), a weight of
    >= MIN_WEIGHT_INFERENCE elements
    everything else                   F.linear

In both modes the packed copy costs as much memory as the weight itself while the model is used for inference.
Writes through `.data` do not show in a weight's version counter: call `eval()` again after them.

`F.linear` (MKL) is also used for products too small to pay oneDNN's fixed cost (in "full" mode:
`MIN_MACS_TRAINING`, `MIN_MACS_INFERENCE`, `MIN_WEIGHT_INFERENCE`), for other dtypes, devices and layouts
(sparse), under autocast, forward-mode AD and `torch.func` transforms, while `torch.jit` or `torch.export` (the
ONNX exporter) traces the model, for tensor subclasses (DTensors), and wherever oneDNN is missing or switched off
(`torch.backends.mkldnn.enabled = False`, read outside torch.compile; or `ONEDNN = False` here). FSDP2 runs its
forward on plain unsharded parameters, so its training uses oneDNN too; a sharded model evaluated in eval mode
keeps a full packed copy of each large weight. `linear(x, weight, bias)` is the same choice as a function, for
weights that are not a module's own (cross-attention's slices of a fused projection): it never packs, so in
"few-rows" mode it is always F.linear.
"""

from __future__ import annotations

import os
import platform
import warnings
import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook

# "full" mode: on AMD, oneDNN costs about 10 us a call more than MKL. It pays for products of at least these sizes
# (rows x in x out multiply-adds), and in inference also for a weight of at least MIN_WEIGHT_INFERENCE elements
# whatever the rows: decoding streams such a weight from memory, where MKL's few-row path reads it at under 20 GB/s.
MIN_MACS_TRAINING = 2**22  # the unpacked weight costs oneDNN a reorder per call: it pays from larger products
MIN_MACS_INFERENCE = 2**21
MIN_WEIGHT_INFERENCE = 2**18  # 1 MiB of float32: e.g. 768 x 768 and larger
FEW_ROWS = (4, 32)  # "few-rows" mode: the rows for which a packed weight beats MKL (fewer: its matrix-vector path)


def _onednn_linear_op() -> Any:
    """`torch.ops.mkldnn._linear_pointwise` (x @ w^T + b on oneDNN), or None where it is not available. Only x86-64
    is enabled: that is where it was measured to pay."""
    if platform.machine().lower() not in ("x86_64", "amd64") or not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


def cpuinfo(field: str) -> str:
    """A field of Linux's /proc/cpuinfo for the first CPU ("vendor_id", "model name"), or "" where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_vendor() -> str:
    """The CPU's vendor string ("GenuineIntel", "AuthenticAMD", ...), or "" where it cannot be read."""
    vendor = cpuinfo("vendor_id")
    if vendor:
        return vendor
    if platform.system() == "Windows":  # "AMD64 Family 25 Model 17 Stepping 1, AuthenticAMD"
        for vendor in ("GenuineIntel", "AuthenticAMD", "HygonGenuine"):
            if vendor in platform.processor():
                return vendor
    if platform.system() == "Darwin" and platform.machine() == "x86_64":
        return "GenuineIntel"  # every x86 Mac has an Intel CPU
    return ""


MODES = ("full", "few-rows", "off")


def _default_mode() -> str:
    """What the module docstring describes: TN_ONEDNN if set, else by CPU vendor."""
    mode = os.environ.get("TN_ONEDNN", "").strip().lower()
    if mode in MODES:
        return mode
    if mode:
        warnings.warn(f"TN_ONEDNN must be one of {', '.join(MODES)}, got {mode!r}: ignored", stacklevel=2)
    vendor = cpu_vendor()
    if vendor in ("AuthenticAMD", "HygonGenuine"):
        return "full"
    return "few-rows" if vendor == "GenuineIntel" else "off"


_LINEAR_OP = _onednn_linear_op()
ONEDNN = _LINEAR_OP is not None  # set False to use F.linear everywhere
MODE = _default_mode() if ONEDNN else "off"  # "full", "few-rows" or "off"; see the module docstring


def _onednn(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x (..., in) @ weight^T + bias on oneDNN; weight is (out, in), dense or packed."""
    return _LINEAR_OP(x, weight, bias, "none", [], "")


def _pack(weight: Tensor) -> Tensor:
    """weight (out, in) reordered into oneDNN's layout for products with any number of rows."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach())


def _onednn_applies(x: Tensor, weight: Tensor, bias: Tensor | None, training: bool, packable: bool = False) -> bool:
    """Whether oneDNN computes x @ weight^T + bias: `training` (a gradient is needed), `packable` (the caller is a
    `Linear` in eval mode, which packs its weight where it may). Decoding asks this ~20 times a token, mostly for
    products too small to pay: the cheap tests come first. torch.export's and torch.jit's traces keep F.linear
    (torch.compile takes `onednn_linear` as an opaque operator)."""
    if not (ONEDNN and type(x) in _PLAIN):  # not a subclass: DTensors, torch.export's fake tensors
        return False
    if MODE == "few-rows":
        if training or not packable or weight.numel() < MIN_WEIGHT_INFERENCE or not x.dim():
            return False
        rows = x.numel() // max(x.size(-1), 1)
        if not FEW_ROWS[0] <= rows <= FEW_ROWS[1] or torch.compiler.is_compiling() or weight.is_inference():
            return False  # the packed weight cannot enter a compiled graph, nor follow an inference tensor
    elif MODE != "full":
        return False
    else:
        macs = x.numel() * weight.size(0)
        if training and macs < MIN_MACS_TRAINING:
            return False
        if not training and macs < MIN_MACS_INFERENCE and weight.numel() < MIN_WEIGHT_INFERENCE:
            return False
    return (x.is_cpu and x.dtype == torch.float32 and type(weight) in _PLAIN and weight.dtype == torch.float32
            and x.layout == torch.strided and weight.layout == torch.strided  # not sparse
            and weight.dim() == 2 and x.dim() >= 1 and x.size(-1) == weight.size(1)  # else F.linear's error
            and (bias is None or (type(bias) in _PLAIN and bias.dtype == torch.float32))
            and not torch.compiler.is_exporting() and not torch.jit.is_tracing()
            and not torch.is_autocast_enabled("cpu")
            # torch.backends.mkldnn.enabled, and no torch.func transform (vmap, grad) or forward-mode AD under
            # way: read outside torch.compile only (reading them there breaks the graph)
            and (torch.compiler.is_compiling()
                 or (torch._C._get_mkldnn_enabled() and not torch._C._are_functorch_transforms_active()
                     and torch.autograd.forward_ad._current_level < 0)))  # no forward-mode AD: no jvp rule


_PLAIN = (Tensor, nn.Parameter)


def _needs_grad(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    return torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                        or (bias is not None and bias.requires_grad))


@torch.library.custom_op("transformer_networks::onednn_linear", mutates_args=())
def onednn_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x (..., in) @ weight^T + bias on oneDNN, weight a dense (out, in) tensor. An operator of its own: it has its
    backward pass (below), and torch.compile calls it as it is (inductor's lowering of oneDNN's linear operator
    only takes weights frozen into the graph)."""
    return _onednn(x, weight, bias)


@onednn_linear.register_fake
def _(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return x.new_empty((*x.shape[:-1], weight.size(0)))


def _save_for_backward(ctx: Any, inputs: tuple[Tensor, Tensor, Tensor | None], output: Tensor) -> None:
    x, weight, bias = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias = bias is not None


def _backward(ctx: Any, dy: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """dx = dy W and dW = dy^T x, both on oneDNN too; db = the sum of dy over rows."""
    x, weight = ctx.saved_tensors
    dy = dy.reshape(-1, dy.size(-1))  # (M, out)
    dx = dw = db = None
    if ctx.needs_input_grad[0]:
        dx = onednn_linear(dy, weight.t(), None).view(x.shape)  # (M, out) @ (out, in)
    if ctx.needs_input_grad[1]:
        rows = x.reshape(-1, x.size(-1))  # (M, in)
        # oneDNN copies its first operand when that is a transposed view (slowly): transpose the smaller one.
        if rows.size(1) <= dy.size(1):
            dw = onednn_linear(rows.t().contiguous(), dy.t(), None).t()  # ((in, M) @ (M, out))^T
        else:
            dw = onednn_linear(dy.t().contiguous(), rows.t(), None)  # (out, M) @ (M, in)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        db = dy.sum(0)
    return dx, dw, db


onednn_linear.register_autograd(_backward, setup_context=_save_for_backward)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """`F.linear(x, weight, bias)`, computed on oneDNN where that is faster (see the module docstring)."""
    if _onednn_applies(x, weight, bias, training=_needs_grad(x, weight, bias)):
        return onednn_linear(x, weight, bias)
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """`nn.Linear` on oneDNN where that is faster; in eval mode and without gradients it multiplies by a packed
    copy of its weight."""

    _packed: tuple[weakref.ref, tuple[int, int, int], Tensor] | None = None  # (weight, _cache_key(weight), packed)

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.weight, self.bias
        training = _needs_grad(x, weight, bias)
        if not _onednn_applies(x, weight, bias, training, packable=not self.training):
            return F.linear(x, weight, bias)
        if training or torch.compiler.is_compiling():  # a packed weight cannot enter a compiled graph
            return onednn_linear(x, weight, bias)
        if self.training or weight.is_inference():  # a weight that may change unseen (see _packed_weight)
            return _onednn(x, weight, bias)
        return _onednn(x, self._packed_weight(), bias)

    def _packed_weight(self) -> Tensor:
        """The packed copy of the weight, made again when the weight is another tensor, was changed in place (its
        version counter) or moved, or an optimizer has stepped since (fused optimizers leave the version alone).
        Writes through `.data` are not seen: call `train()` or `eval()` after them. Only used in eval mode."""
        weight, packed = self.weight, self._packed  # read once: another thread may call train()/eval()
        key = _cache_key(weight)
        if packed is None or packed[0]() is not weight or packed[1] != key:
            packed = (weakref.ref(weight), key, _pack(weight))
            self._packed = packed
        return packed[2]

    def train(self, mode: bool = True) -> Linear:
        self._packed = None  # the weights are about to change, or were just changed
        return super().train(mode)

    def _apply(self, fn: Any, recurse: bool = True) -> Linear:
        self._packed = None  # .to(), .half(), ...: the packed copy would be stale, or hold memory for nothing
        return super()._apply(fn, recurse)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_packed", None)  # a cache, and oneDNN's packed tensors cannot be copied or pickled
        return state


_optimizer_steps = 0  # optimizer steps taken in this process (a fused step changes weights without a version bump)


def _count_optimizer_step(optimizer: Any, args: Any, kwargs: Any) -> None:
    global _optimizer_steps
    _optimizer_steps += 1


register_optimizer_step_post_hook(_count_optimizer_step)


def _cache_key(weight: Tensor) -> tuple[int, int, int]:
    return weight._version, weight.data_ptr(), _optimizer_steps
