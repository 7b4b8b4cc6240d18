"""`Linear`: `torch.nn.Linear` (the same parameters and state dict) whose float32 products run on oneDNN on a CPU.

PyTorch's CPU build has two libraries for matrix products: MKL, which `F.linear` and `torch.mm` call for float32,
and oneDNN, which the same build ships for its own fused operators (`torch.ops.mkldnn`). On the machine this
project is measured on (AMD EPYC, Zen 5, AVX-512; BENCHMARKS.md) MKL runs its generic code, not its AVX-512 one,
and oneDNN is about 2.2x faster for the same float32 product: a 2048-cube product runs at 234 GFLOP/s through
`torch.mm` and at 524 GFLOP/s through oneDNN on two threads. Training steps are mostly such products, so the
gain shows up there (bench/train_step.py). Both compute in float32, so the results agree to float rounding.

oneDNN works best with the weight reordered into its own blocked layout ("packed"): for the few rows of a
decoding step it then streams the weight at close to memory speed (one row of gpt2-small's 50,257 x 768 output
layer: 1.9 ms, against 7.3 ms through MKL; eight rows: 2.6 ms against 15.1 ms). So:

    training (a gradient is needed)   oneDNN on the weight as it is, through `onednn_linear`: an operator with
                                      its own backward pass, which torch.compile keeps in its graph
    eval mode, no gradient            oneDNN on a packed copy of the weight, made on first use and made again
                                      when the weight changes (an optimizer step, `load_state_dict`, `.to()`);
                                      dropped by `train()` and `eval()`
    train mode, no gradient           oneDNN on the weight as it is (weights change too often there to pack)

The packed copy costs as much memory as the weight itself while the model is used for inference. Writes through
`.data` do not show in a weight's version counter: call `eval()` again after them.

`F.linear` (MKL) is used instead for products too small to pay oneDNN's fixed cost of about 10 us per call
(`MIN_MACS_TRAINING`, `MIN_MACS_INFERENCE`, `MIN_WEIGHT_INFERENCE`), for other dtypes, devices and layouts
(sparse), under autocast, forward-mode AD and `torch.func` transforms, while `torch.jit` or `torch.export` (the
ONNX exporter) traces the model, for tensor subclasses (DTensors), and wherever oneDNN is missing or switched off
(`torch.backends.mkldnn.enabled = False`, read outside torch.compile; or `ONEDNN = False` here). FSDP2 runs its
forward on plain unsharded parameters, so its training uses oneDNN too; a sharded model evaluated in eval mode
keeps a full packed copy of each large weight. On an Intel CPU MKL runs its AVX-512 kernels, and the gain should
mostly disappear (not measured: no Intel machine here). `linear(x, weight, bias)` is the same choice as a function
(never packed), for weights that are not a module's own (cross-attention's slices of a fused projection).
"""

from __future__ import annotations

import platform
import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook

# oneDNN costs about 10 us a call more than MKL. It pays for products of at least these sizes (rows x in x out
# multiply-adds), and in inference also for a weight of at least MIN_WEIGHT_INFERENCE elements whatever the rows:
# decoding streams such a weight from memory, where MKL's few-row path reads it at under 20 GB/s.
MIN_MACS_TRAINING = 2**22  # the unpacked weight costs oneDNN a reorder per call: it pays from larger products
MIN_MACS_INFERENCE = 2**21
MIN_WEIGHT_INFERENCE = 2**18  # 1 MiB of float32: e.g. 768 x 768 and larger


def _onednn_linear_op() -> Any:
    """`torch.ops.mkldnn._linear_pointwise` (x @ w^T + b on oneDNN), or None where it is not available. Only x86-64
    is enabled: that is where it was measured to pay."""
    if platform.machine().lower() not in ("x86_64", "amd64") or not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


_LINEAR_OP = _onednn_linear_op()
ONEDNN = _LINEAR_OP is not None  # set False to use F.linear everywhere


def _onednn(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x (..., in) @ weight^T + bias on oneDNN; weight is (out, in), dense or packed."""
    return _LINEAR_OP(x, weight, bias, "none", [], "")


def _pack(weight: Tensor) -> Tensor:
    """weight (out, in) reordered into oneDNN's layout for products with any number of rows."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach())


def _onednn_applies(x: Tensor, weight: Tensor, bias: Tensor | None, training: bool) -> bool:
    """Whether oneDNN computes x @ weight^T + bias. Decoding asks this ~20 times a token, mostly for products too
    small to pay: the cheap tests come first. torch.export's and torch.jit's traces keep F.linear (torch.compile
    takes `onednn_linear` as an opaque operator)."""
    if not (ONEDNN and type(x) in _PLAIN):  # not a subclass: DTensors, torch.export's fake tensors
        return False
    macs = x.numel() * weight.size(0)
    if training and macs < MIN_MACS_TRAINING:
        return False
    if not training and macs < MIN_MACS_INFERENCE and weight.numel() < MIN_WEIGHT_INFERENCE:
        return False
    return (x.is_cpu and x.dtype == torch.float32 and type(weight) in _PLAIN and weight.dtype == torch.float32
            and x.layout == torch.strided and weight.layout == torch.strided  # not sparse
            and weight.dim() == 2 and x.size(-1) == weight.size(1)  # else F.linear's own error message
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
        if not _onednn_applies(x, weight, bias, training):
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
