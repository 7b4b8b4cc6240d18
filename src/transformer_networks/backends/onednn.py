"""oneDNN products for float32 models on a CPU: `use_onednn(model)` makes a built model's `nn.Linear` layers
compute on oneDNN where that is faster than MKL, with the same parameters and state dict.

PyTorch's CPU build has two libraries for matrix products: MKL, which `F.linear` and `torch.mm` call for float32,
and oneDNN, which the same build ships for its own fused operators (`torch.ops.mkldnn`). Which one is faster depends
on the processor (the measurements: BENCHMARKS.md, "The oneDNN backend").

    onednn_mode() -> str          "full", "few-rows" or "off": the environment variable TN_ONEDNN if it is set to
                                  one of them, else by CPU vendor: "full" on AMD (and Hygon), "few-rows" on Intel,
                                  "off" elsewhere (other architectures, vendors not measured); "off" wherever
                                  `available()` is False. Read on the first call, then kept.
    available() -> bool           whether this PyTorch has what the oneDNN path uses (an x86-64 CPU, oneDNN built
                                  in, `torch.ops.mkldnn._linear_pointwise` and `_reorder_linear_weight`, and the
                                  `torch._C` checks below); where not, every product is `F.linear`.
    use_onednn(model, mode=None)  turns every `torch.nn.Linear` of `model` (the class itself, not its subclasses)
                                  into an `OneDNNLinear` in place and returns the model; `mode` defaults to
                                  `onednn_mode()`. The modules stay the same objects with the same Parameter
                                  objects: tied weights stay tied, optimizers built before or after keep working,
                                  the state dict and checkpoints are unchanged. Calling it again changes the mode;
                                  `use_onednn(model, "off")` turns the layers back into plain `nn.Linear`. In "full"
                                  mode it also gives each `MultiHeadAttention` this module's `linear` for the
                                  products of cross-attention's slices of its fused projection weight.
    cpuinfo(field), cpu_vendor()  a field of /proc/cpuinfo ("model name"), the CPU's vendor string.

Where the oneDNN path is asked for (TN_ONEDNN, or a `mode` given to `use_onednn`) but is not available, one warning
says so and the model stays on `F.linear`.

When oneDNN computes a product:

    "full" mode
    training (a gradient is needed)   oneDNN on the weight as it is, through `onednn_linear`: an operator with its
                                      own backward pass, which torch.compile keeps in its graph
    eval mode, no gradient            oneDNN on a packed copy of the weight (reordered into oneDNN's blocked
                                      layout), made on first use and made again when the weight changes (an
                                      optimizer step, `load_state_dict`, `.to()`); dropped by `train()` and `eval()`
    train mode, no gradient           oneDNN on the weight as it is (weights change too often there to pack)

    "few-rows" mode
    eval mode, no gradient,           oneDNN on a packed copy of the weight, as above
    4-32 rows (FEW_ROWS), a weight of
    >= MIN_WEIGHT_FEW_ROWS elements
    everything else                   F.linear

`F.linear` (MKL) also computes products too small to pay oneDNN's fixed cost (in "full" mode: `MIN_MACS_TRAINING`,
`MIN_MACS_TRAINING_ZEN4` on an AMD Zen 4, `MIN_MACS_INFERENCE`, `MIN_WEIGHT_INFERENCE`), other dtypes, devices and
layouts (sparse), and runs under autocast, forward-mode AD and `torch.func` transforms, while `torch.jit` or
`torch.export` (the ONNX exporter) traces the model, for tensor subclasses (DTensors), and with
`torch.backends.mkldnn.enabled = False` (read outside torch.compile). FSDP2 runs its forward on plain unsharded
parameters, so its training uses oneDNN too (call `use_onednn` before `fully_shard`); a sharded model evaluated in
eval mode keeps a full packed copy of each large weight. `linear(x, weight, bias)` is the "full" mode's choice as a
function, for weights that are not a module's own: it never packs, so in "few-rows" mode it would always be
F.linear and `use_onednn` leaves attention alone.

Both libraries compute in float32, so the results agree to float rounding. The packed copy costs as much memory as
the weight itself while the model is used for inference. Writes through `.data` do not show in a weight's version
counter: call `eval()` again after them.

Importing this module reads no file and no environment variable, looks up no operator and registers no hook (it
defines its own operator, `transformer_networks::onednn_linear`). The CPU vendor and TN_ONEDNN are read by the
first `onednn_mode()`, the operators looked up by the first `available()`, and the first `use_onednn` that turns a
layer on registers an optimizer step post-hook that counts steps (fused optimizers change weights without bumping
their version counter, so a packed copy is also made again after any optimizer step).
"""

from __future__ import annotations

import os
import platform
import threading
import warnings
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.attention import MultiHeadAttention

__all__ = [
    "FEW_ROWS",
    "MIN_MACS_INFERENCE",
    "MIN_MACS_TRAINING",
    "MIN_MACS_TRAINING_ZEN4",
    "MIN_WEIGHT_FEW_ROWS",
    "MIN_WEIGHT_INFERENCE",
    "MODES",
    "OneDNNLinear",
    "available",
    "cpu_vendor",
    "cpuinfo",
    "linear",
    "onednn_linear",
    "onednn_mode",
    "use_onednn",
]

MODES = ("full", "few-rows", "off")

# "full" mode: oneDNN costs some microseconds a call more than MKL. It pays for products of at least these sizes
# (rows x in x out multiply-adds), and in inference also for a weight of at least MIN_WEIGHT_INFERENCE elements
# whatever the rows: decoding streams such a weight from memory, which oneDNN reads faster from a packed copy.
MIN_MACS_TRAINING = 2**22  # the unpacked weight costs oneDNN a reorder per call: it pays from larger products
# On Zen 4 (AMD family 25 with AVX-512) MKL is much closer to oneDNN than on Zen 5: measured on a 2-core EPYC
# (2026-12-07), a training product (forward and backward) on oneDNN takes 1.07x MKL's time at 38-302M multiply-adds
# and 1.6x at 13M, and wins only from about 900M (0.92-0.98x): there training products start at 2^29.
MIN_MACS_TRAINING_ZEN4 = 2**29
MIN_MACS_INFERENCE = 2**21
# 512 KiB of float32, e.g. 384 x 384: on a 2-core AMD EPYC (2026-12) a packed 384 x 384 weight multiplies one row
# 1.4-1.5x as fast as MKL (1 and 2 threads), a 256 x 256 one only with 2 threads (1.1x; 0.8x with one).
MIN_WEIGHT_INFERENCE = 2**17
FEW_ROWS = (4, 32)  # "few-rows" mode: the rows for which a packed weight beats MKL (fewer: its matrix-vector path)
MIN_WEIGHT_FEW_ROWS = 2**18  # "few-rows" mode: weights of 1 MiB and more (e.g. 768 x 768), as measured on Intel


# --- what this machine and this PyTorch offer (looked up on first use, then kept) --------------------------------


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


class _Ops(NamedTuple):
    linear: Any  # torch.ops.mkldnn._linear_pointwise: x @ w^T + b, w dense or packed
    reorder: Any  # torch.ops.mkldnn._reorder_linear_weight: w packed for products with any number of rows


_UNKNOWN: Any = object()
_found_ops: Any = _UNKNOWN  # _Ops, or None where this PyTorch or machine lacks them; see _ops()
_requested: tuple[str, str | None] | None = None  # (mode, who asked for it or None); see _requested_mode()
_warned_unavailable = False
_lock = threading.Lock()


def _lookup_ops() -> _Ops | None:
    """oneDNN's linear operators, or None where they are missing. Only x86-64 is enabled: that is where they were
    measured to pay. The torch._C and forward-AD checks `_applies` makes must exist too."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        if not torch.backends.mkldnn.is_available():
            return None
        ops = _Ops(torch.ops.mkldnn._linear_pointwise, torch.ops.mkldnn._reorder_linear_weight)
        for check in (torch._C._get_mkldnn_enabled, torch._C._are_functorch_transforms_active):
            check()
        int(torch.autograd.forward_ad._current_level)
    except (AttributeError, RuntimeError, TypeError):
        return None
    return ops


def _ops() -> _Ops | None:
    """`_lookup_ops()`, looked up once. A plain global read once known, so torch.compile traces it as a constant."""
    global _found_ops
    if _found_ops is _UNKNOWN:
        _found_ops = _lookup_ops()
    return _found_ops


def available() -> bool:
    """Whether the oneDNN path can run here (see the module docstring); where not, products are F.linear."""
    return _ops() is not None


_min_macs: int | None = None  # MIN_MACS_TRAINING or MIN_MACS_TRAINING_ZEN4 for this CPU; see _min_macs_training()


def _min_macs_training() -> int:
    """The smallest training product "full" mode computes on oneDNN on this CPU: MIN_MACS_TRAINING_ZEN4 on an AMD
    Zen 4 (family 25 with AVX-512), else MIN_MACS_TRAINING. /proc/cpuinfo is read on the first call."""
    global _min_macs
    if _min_macs is None:
        amd_family = cpuinfo("cpu family") if cpu_vendor() == "AuthenticAMD" else ""
        zen4 = amd_family == "25" and "avx512f" in cpuinfo("flags").split()
        _min_macs = MIN_MACS_TRAINING_ZEN4 if zen4 else MIN_MACS_TRAINING
    return _min_macs


def _choose_mode(env: str, vendor: str) -> str:
    """The mode TN_ONEDNN (`env`, "" when unset) asks for, else the one for the CPU `vendor`."""
    mode = env.strip().lower()
    if mode in MODES:
        return mode
    if mode:
        warnings.warn(f"TN_ONEDNN must be one of {', '.join(MODES)}, got {mode!r}: ignored", stacklevel=4)
    if vendor in ("AuthenticAMD", "HygonGenuine"):
        return "full"
    return "few-rows" if vendor == "GenuineIntel" else "off"


def _requested_mode() -> tuple[str, str | None]:
    """(the mode TN_ONEDNN or else the CPU vendor asks for, "TN_ONEDNN=..." where the environment chose it), read
    on the first call and kept."""
    global _requested
    if _requested is None:
        env = os.environ.get("TN_ONEDNN", "")
        if env.strip().lower() in MODES:
            _requested = _choose_mode(env, ""), f"TN_ONEDNN={env.strip().lower()}"
        else:
            _requested = _choose_mode(env, cpu_vendor()), None
    return _requested


def _warn_unavailable(asked_by: str) -> None:
    global _warned_unavailable
    if not _warned_unavailable:
        _warned_unavailable = True
        warnings.warn(
            f"oneDNN products were asked for ({asked_by}) but are not available here (they need an x86-64 CPU and a "
            "PyTorch with torch.ops.mkldnn._linear_pointwise and _reorder_linear_weight): linear layers use "
            "F.linear",
            stacklevel=3,
        )


def onednn_mode() -> str:
    """ "full", "few-rows" or "off": TN_ONEDNN, else by CPU vendor; "off" where oneDNN is not `available()`."""
    mode, asked_by = _requested_mode()
    if mode != "off" and not available():
        if asked_by is not None:
            _warn_unavailable(asked_by)
        return "off"
    return mode


# --- the products ----------------------------------------------------------------------------------------------


def _onednn(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x (..., in) @ weight^T + bias on oneDNN; weight is (out, in), dense or packed."""
    ops = _ops()
    assert ops is not None  # called only where `_applies`, which needs the operators
    return ops.linear(x, weight, bias, "none", [], "")


def _pack(weight: Tensor) -> Tensor:
    """weight (out, in) reordered into oneDNN's layout for products with any number of rows."""
    ops = _ops()
    assert ops is not None  # called only where `_applies`, which needs the operators
    return ops.reorder(weight.detach())


_PLAIN = (Tensor, nn.Parameter)


def _applies(x: Tensor, weight: Tensor, bias: Tensor | None, training: bool, mode: str, packable: bool = False) -> bool:
    """Whether oneDNN computes x @ weight^T + bias in `mode`: `training` (a gradient is needed), `packable` (the
    caller is an `OneDNNLinear` in eval mode, which packs its weight where it may). Decoding asks this ~20 times a
    token, mostly for products too small to pay: the cheap tests come first. torch.export's and torch.jit's traces
    keep F.linear (torch.compile takes `onednn_linear` as an opaque operator)."""
    if type(x) not in _PLAIN:  # not a subclass: DTensors, torch.export's fake tensors
        return False
    if mode == "few-rows":
        if training or not packable or weight.numel() < MIN_WEIGHT_FEW_ROWS or not x.dim():
            return False
        rows = x.numel() // max(x.size(-1), 1)
        if not FEW_ROWS[0] <= rows <= FEW_ROWS[1] or torch.compiler.is_compiling() or weight.is_inference():
            return False  # the packed weight cannot enter a compiled graph, nor follow an inference tensor
    elif mode != "full":
        return False
    else:
        macs = x.numel() * weight.size(0)
        if training and macs < _min_macs_training():
            return False
        if not training and macs < MIN_MACS_INFERENCE and weight.numel() < MIN_WEIGHT_INFERENCE:
            return False
    return (
        x.is_cpu
        and x.dtype == torch.float32
        and type(weight) in _PLAIN
        and weight.dtype == torch.float32
        and x.layout == torch.strided
        and weight.layout == torch.strided  # not sparse
        and weight.dim() == 2
        and x.dim() >= 1
        and x.size(-1) == weight.size(1)  # else F.linear's error
        and (bias is None or (type(bias) in _PLAIN and bias.dtype == torch.float32))
        and _ops() is not None
        and not torch.compiler.is_exporting()
        and not torch.jit.is_tracing()
        and not torch.is_autocast_enabled("cpu")
        # torch.backends.mkldnn.enabled, and no torch.func transform (vmap, grad) or forward-mode AD under
        # way: read outside torch.compile only (reading them there breaks the graph)
        and (
            torch.compiler.is_compiling()
            or (
                torch._C._get_mkldnn_enabled()
                and not torch._C._are_functorch_transforms_active()
                and torch.autograd.forward_ad._current_level < 0
            )
        )
    )  # no forward-mode AD: no jvp rule


def _needs_grad(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    return torch.is_grad_enabled() and (
        x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    )


@torch.library.custom_op("transformer_networks::onednn_linear", mutates_args=())
def onednn_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x (..., in) @ weight^T + bias on oneDNN, weight a dense (out, in) tensor. An operator of its own: it has its
    backward pass (below), and torch.compile calls it as it is (inductor's lowering of oneDNN's linear operator
    only takes weights frozen into the graph). Only for where `available()`."""
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
    """`F.linear(x, weight, bias)`, computed on oneDNN where the "full" mode would (see the module docstring)."""
    if _applies(x, weight, bias, _needs_grad(x, weight, bias), "full"):
        return onednn_linear(x, weight, bias)
    return F.linear(x, weight, bias)


# --- optimizer steps: fused ones change weights without a version bump -----------------------------------------

_optimizer_steps = 0  # optimizer steps taken in this process since the hook was registered
_step_hook: Any = None  # the hook's handle, once registered


def _count_optimizer_step(optimizer: Any, args: Any, kwargs: Any) -> None:
    global _optimizer_steps
    _optimizer_steps += 1


def _register_step_hook() -> None:
    global _step_hook
    with _lock:
        if _step_hook is None:
            from torch.optim.optimizer import register_optimizer_step_post_hook

            _step_hook = register_optimizer_step_post_hook(_count_optimizer_step)


def _cache_key(weight: Tensor) -> tuple[int, int, int]:
    return weight._version, weight.data_ptr(), _optimizer_steps


# --- the layer -------------------------------------------------------------------------------------------------


class OneDNNLinear(nn.Linear):
    """`nn.Linear` on oneDNN where that is faster in its `onednn_mode`; in eval mode and without gradients it
    multiplies by a packed copy of its weight. `use_onednn` turns existing `nn.Linear` layers into this class."""

    onednn_mode: str = "off"
    _packed: tuple[weakref.ref, tuple[int, int, int], Tensor] | None = None  # (weight, _cache_key(weight), packed)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        mode: str | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias, device, dtype)
        self.onednn_mode = _effective_mode(mode, "OneDNNLinear(mode=...)")
        if self.onednn_mode != "off":
            _register_step_hook()

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.weight, self.bias
        training = _needs_grad(x, weight, bias)
        if not _applies(x, weight, bias, training, self.onednn_mode, packable=not self.training):
            return F.linear(x, weight, bias)
        if training or torch.compiler.is_compiling():  # a packed weight cannot enter a compiled graph
            return onednn_linear(x, weight, bias)
        if self.training or weight.is_inference():  # a weight that may change unseen (see _packed_weight)
            return _onednn(x, weight, bias)
        return _onednn(x, self._packed_weight(), bias)

    def product_for(self, x: Tensor) -> Callable[[Tensor], Tensor]:
        """`forward` for inputs shaped like `x` (its rows, dtype and device), with the choice `forward` makes at
        every call made once: for a loop of many such products while the weights and the global settings stay as
        they are, as a generation's decoding steps are (`generation.decode_step`)."""
        weight, bias = self.weight, self.bias
        training = _needs_grad(x, weight, bias)
        if training or self.training or torch.compiler.is_compiling() or weight.is_inference():
            return self.forward
        if not _applies(x, weight, bias, training, self.onednn_mode, packable=True):
            return lambda rows: F.linear(rows, weight, bias)
        ops, packed = _ops(), self._packed_weight()
        assert ops is not None  # `_applies` needs the operators
        return lambda rows: ops.linear(rows, packed, bias, "none", [], "")

    def _packed_weight(self) -> Tensor:
        """The packed copy of the weight, made again when the weight is another tensor, was changed in place (its
        version counter) or moved, or an optimizer has stepped since (fused optimizers leave the version alone).
        Writes through `.data` are not seen: call `train()` or `eval()` after them. Only used in eval mode."""
        if _step_hook is None:  # a layer unpickled in a new process
            _register_step_hook()
        weight, packed = self.weight, self._packed  # read once: another thread may call train()/eval()
        key = _cache_key(weight)
        if packed is None or packed[0]() is not weight or packed[1] != key:
            packed = (weakref.ref(weight), key, _pack(weight))
            self._packed = packed
        return packed[2]

    def train(self, mode: bool = True) -> OneDNNLinear:
        self._packed = None  # the weights are about to change, or were just changed
        return super().train(mode)

    def _apply(self, fn: Any, recurse: bool = True) -> OneDNNLinear:
        self._packed = None  # .to(), .half(), ...: the packed copy would be stale, or hold memory for nothing
        return super()._apply(fn, recurse)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mode={self.onednn_mode!r}"

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_packed", None)  # a cache, and oneDNN's packed tensors cannot be copied or pickled
        return state


# --- swapping a model's layers ---------------------------------------------------------------------------------


def _effective_mode(mode: str | None, asked_by: str) -> str:
    """`mode` (None: `onednn_mode()`), "off" with one warning where oneDNN is not available."""
    if mode is None:
        return onednn_mode()
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)} or None, got {mode!r}")
    if mode != "off" and not available():
        _warn_unavailable(asked_by)
        return "off"
    return mode


def use_onednn(model: nn.Module, mode: str | None = None) -> nn.Module:
    """Make `model`'s `nn.Linear` layers compute on oneDNN in `mode` (None: `onednn_mode()`), in place; "off" (or
    oneDNN not available) makes them plain `nn.Linear` again. Returns `model`. See the module docstring."""
    mode = _effective_mode(mode, f"use_onednn(mode={mode!r})")
    if mode != "off":
        _register_step_hook()
        _min_macs_training()  # read /proc/cpuinfo now, not inside a compiled forward
    for module in model.modules():
        if type(module) is nn.Linear or type(module) is OneDNNLinear:
            module.__dict__.pop("_packed", None)
            if mode == "off":
                module.__dict__.pop("onednn_mode", None)
                module.__class__ = nn.Linear
            else:
                module.__class__ = OneDNNLinear
                cast(OneDNNLinear, module).onednn_mode = mode  # the class it was just given
        elif isinstance(module, MultiHeadAttention):
            if mode == "full":
                module.sliced_linear = linear  # an instance attribute: called as linear(x, weight, bias)
            else:
                module.__dict__.pop("sliced_linear", None)  # back to the class's F.linear
    return model
