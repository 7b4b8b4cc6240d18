"""Scaled dot-product attention and multi-head attention (self and cross); the KV cache is in `cache.py`.

Shape legend:
    B batch, Tq query length, Tk key length, C model dim (d_model),
    H query heads, G key/value heads (G divides H; G = H is ordinary multi-head attention), D head dim (C / H).

Masks are boolean, True = may attend (see `masks.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cache import KVCache
from .masks import causal_mask, combine, on_real_tokens
from .norm import RMSNorm
from .positional import apply_rotary


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    *,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    need_weights: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """softmax(q k^T / sqrt(D)) v, the paper's equation (1).

    q: (B, H, Tq, D); k, v: (B, G, Tk, D) with G dividing H (grouped-query attention shares each key/value head
    between H/G query heads). mask: boolean, True = may attend, broadcastable to (B, H, Tq, Tk). is_causal: query i
    may also only see keys up to its own position, the queries being the last Tq of the Tk positions.

    Returns (output (B, H, Tq, D), weights (B, H, Tq, Tk) or None). Without `need_weights` this calls
    `F.scaled_dot_product_attention`, whose fused kernels never build the Tq x Tk matrix on GPU; with it, the
    plain "math" formula runs and the weights (after dropout) are returned.

    A query row whose keys are all masked (a padding query that only sees padding) would give NaN; such rows
    output zeros instead (and zero weights), so they stay finite and cannot poison gradients.
    """
    Tq, Tk = q.size(-2), k.size(-2)
    if is_causal and (mask is not None or Tq != Tk or need_weights):
        # Build the causal part explicitly; SDPA's own is_causal flag is kept for the mask-free fast path.
        q_positions = torch.arange(Tk - Tq, Tk, device=q.device)
        mask = combine(mask, causal_mask(q_positions, Tk))
        is_causal = False
    has_key = None
    if mask is not None:
        has_key = mask.any(dim=-1, keepdim=True)  # (B|1, H|1, Tq, 1): False for rows that may see nothing
        mask = mask | ~has_key  # let such rows attend somewhere (no NaN), then zero their output below

    n_rep = q.size(1) // k.size(1)
    if not need_weights:
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal, enable_gqa=n_rep > 1
        )
        return (out if has_key is None else out * has_key), None

    if n_rep > 1:
        k = k.repeat_interleave(n_rep, dim=1)  # (B, G, Tk, D) -> (B, H, Tk, D)
        v = v.repeat_interleave(n_rep, dim=1)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, H, Tq, Tk)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    if has_key is not None:
        weights = weights * has_key
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights  # (B, H, Tq, D), (B, H, Tq, Tk)


def stick_breaking_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    *,
    bias: float = 0.0,
    dropout_p: float = 0.0,
    need_weights: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Stick-breaking attention (Tan et al. 2025), both ways for a bidirectional encoder: even heads read the
    earlier tokens, nearest first, odd heads the later ones. Each key in turn takes a share beta = sigmoid(q k^T /
    sqrt(D) + bias) of what the nearer keys left:

        weight(i, j) = beta(i, j) * prod over the keys m strictly between i and j of (1 - beta(i, m))

    so a head finds "the nearest earlier (or later) token that matches", however far it is, without positions.
    A query's weights sum to at most 1 (what is left goes nowhere) and never include itself. `bias` shifts every
    logit: with 0, at the start (q k^T near 0) each key takes half of what is left and a head sees its neighbours
    only; with -4 each takes about 2%, and a head starts out reading far.

    q: (B, H, T, D); k, v: (B, G, T, D) with G dividing H; mask: boolean, True = may attend, broadcastable to
    (B, H, T, T) with one row for all queries (a key mask): a masked key takes nothing and lets the stick pass.
    Returns (output (B, H, T, D), weights (B, H, T, T) or None). Computed in float32 whatever the autocast (the
    sums of log (1 - beta) along a row need it); the output has q's dtype.
    """
    if q.dtype in (torch.bfloat16, torch.float16) or torch.is_autocast_enabled(q.device.type):
        with torch.autocast(q.device.type, enabled=False):
            out, weights = stick_breaking_attention(
                q.float(), k.float(), v.float(), mask, bias=bias, dropout_p=dropout_p, need_weights=need_weights
            )
        return out.to(q.dtype), weights
    B, H, T, D = q.shape
    n_rep = H // k.size(1)
    if n_rep > 1:
        k, v = k.repeat_interleave(n_rep, dim=1), v.repeat_interleave(n_rep, dim=1)
    # Reverse the sequence of the odd heads, so that every head reads the earlier keys: one direction to write.
    q, k, v = _reverse_odd_heads(q), _reverse_odd_heads(k), _reverse_odd_heads(v)
    i = torch.arange(T, device=q.device)
    sees = (i[None, :] < i[:, None]).to(q.dtype)  # (T, T): key j comes before query i
    if mask is not None:
        if mask.size(-2) != 1:
            raise ValueError("stick-breaking attention takes a key mask (one row for all queries)")
        keys = _reverse_odd_heads(mask.expand(mask.size(0), H, 1, T), dims=(3,))  # (B|1, H, 1, T)
        sees = sees * keys.to(q.dtype)  # a masked key takes nothing and lets the stick pass
    z = torch.baddbmm(  # (B*H, T, T): q k^T / sqrt(D) + bias in one call
        q.new_full((1, 1, 1), bias), q.flatten(0, 1), k.flatten(0, 1).transpose(-2, -1), alpha=1 / math.sqrt(D)
    ).view(B, H, T, T)
    weights = _StickBreakingWeights.apply(z, sees)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    out = _reverse_odd_heads(weights @ v)
    if not need_weights:
        return out, None
    return out, _reverse_odd_heads(weights, dims=(2, 3))  # back to the order of the queries and of the keys


def _reverse_odd_heads(x: Tensor, dims: tuple[int, ...] = (2,)) -> Tensor:
    """x (B, H, T, ...) with the sequence of every odd head reversed (along `dims`)."""
    odd = torch.arange(x.size(1), device=x.device) % 2 == 1
    return torch.where(odd.view(-1, *[1] * (x.dim() - 2)), x.flip(dims), x)


class _StickBreakingWeights(torch.autograd.Function):
    """The stick-breaking weights from the logits z (B, H, T, T) where every key j < query i comes nearer first,
    j = i - 1 first; `sees` (0/1, broadcastable) is 1 where query i reads key j. With
    c(i, j) = sum over m <= j of log (1 - beta(i, m)), the sum over the keys strictly between is c(i, T-1) - c(i, j),
    one cumulative sum per row. Hand-written backward: z's gradient from the weights and z alone,

        dz(i, m) = a(i, m) - beta(i, m) * (a(i, m) + sum over j < m of a(i, j)),   a = grad * weights,

    (the first term through log beta(i, m), the second through the log (1 - beta(i, m)) of every farther key j),
    which saves none of the intermediate T x T tensors: forward and backward about 1.5x faster than autograd's at
    75 tokens, 2x at 384."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, sees: Tensor) -> Tensor:
        log_take = F.logsigmoid(z)
        log_leave = (log_take - z).mul_(sees)  # log (1 - beta), 0 for keys the query does not read
        c = log_leave.cumsum(-1)
        weights = log_take.sub_(c).add_(c[..., -1:]).exp_().mul_(sees)
        ctx.save_for_backward(z, weights, sees)
        return weights

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        z, weights, sees = ctx.saved_tensors
        a = grad * weights
        farther = a.cumsum(-1)  # a(i, m) + sum over j < m of a(i, j)
        return a.sub_(farther.mul_(torch.sigmoid(z))).mul_(sees), None


def _shifted_sum(x: Tensor, taps: Tensor) -> Tensor:
    """out[:, t] = sum_j taps[j] * x[:, t + j - K // 2] for x (B, T, N) and taps (K, N), zeros beyond both ends."""
    T, half = x.size(1), taps.size(0) // 2
    padded = F.pad(x, (0, 0, half, half))
    out = padded[:, :T] * taps[0]
    for j in range(1, taps.size(0)):
        out.addcmul_(padded[:, j : j + T], taps[j])
    return out


class _SequenceConvolution(torch.autograd.Function):
    """A centred depthwise convolution over the sequence of x (B, T, N) with weight (N, 1, K), as
    `F.conv1d(x.transpose(1, 2), weight, padding=K // 2, groups=N).transpose(1, 2)` computes it, as K shifted
    multiply-adds each way: on a CPU, 4x faster than conv1d's grouped kernel at attention's shapes (forward and
    backward)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor) -> Tensor:
        taps = weight[:, 0, :].t().to(x.dtype).contiguous()  # (K, N)
        ctx.save_for_backward(x, taps)
        ctx.weight_dtype = weight.dtype
        return _shifted_sum(x, taps)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:
        x, taps = ctx.saved_tensors
        T, K = x.size(1), taps.size(0)
        grad_x = _shifted_sum(grad, taps.flip(0))  # the transposed convolution: the kernel reversed
        padded = F.pad(x, (0, 0, K // 2, K // 2))
        grad_taps = torch.stack([(grad * padded[:, j : j + T]).sum((0, 1)) for j in range(K)], dim=1)  # (N, K)
        return grad_x, grad_taps[:, None, :].to(ctx.weight_dtype)


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Section 3.2.2), one class for self- and cross-attention.

    Self-attention (`context=None`) projects queries, keys and values with one fused matrix multiply. Cross-
    attention uses the same weights split in two: queries from `x`, keys and values from `context` (the encoder
    output), which `project_kv` can compute once per source and pass back in as `kv`.
    `n_kv_heads` < `n_heads` gives grouped-query attention (1 = multi-query).

    The weight layout matches `torch.nn.MultiheadAttention`: `in_proj.weight` stacks W_q, W_k, W_v by rows.
    `sliced_linear(x, weight, bias)` computes cross-attention's products by slices of that weight (`F.linear`); a
    backend may set another function of the same signature on an instance (`backends.onednn` does).
    """

    # (x, weight, bias) -> x @ weight^T + bias, positional: a backend's function need not name them as F.linear does
    sliced_linear: Callable[[Tensor, Tensor, Tensor | None], Tensor] = staticmethod(F.linear)

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        qkv_conv: int = 0,
        qk_norm: bool = False,
        norm_eps: float = 1e-6,
        stick_breaking_heads: int = 0,
        stick_breaking_bias: float = 0.0,
    ) -> None:
        super().__init__()
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if d_model % n_heads or n_heads % n_kv_heads:
            raise ValueError(
                f"need d_model % n_heads == 0 and n_heads % n_kv_heads == 0, got "
                f"d_model={d_model}, n_heads={n_heads}, n_kv_heads={n_kv_heads}"
            )
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.head_dim = d_model // n_heads
        self.q_dim = n_heads * self.head_dim
        self.kv_dim = n_kv_heads * self.head_dim
        self.dropout_p = dropout  # on the attention weights, in training only
        self.in_proj = nn.Linear(d_model, self.q_dim + 2 * self.kv_dim, bias=bias)  # [W_q; W_k; W_v]
        self.out_proj = nn.Linear(self.q_dim, d_model, bias=bias)
        # Primer's multi-dconv-head attention (So et al. 2021), centred for a bidirectional encoder: every query, key
        # and value channel of self-attention is convolved over the sequence (width qkv_conv, one kernel per
        # channel), which hands each position its neighbours' projections. It starts as the identity.
        conv = None
        if qkv_conv:
            if qkv_conv < 0 or qkv_conv % 2 == 0:
                raise ValueError(f"qkv_conv must be 0 or an odd width, got {qkv_conv}")
            conv = torch.zeros(self.q_dim + 2 * self.kv_dim, 1, qkv_conv)
            conv[:, 0, qkv_conv // 2] = 1.0
        self.qkv_conv = None if conv is None else nn.Parameter(conv)
        # QK-norm (as Qwen3 and Gemma 3 have it): each head's query and key RMS-normalised over the head's
        # dimensions, with a learned scale per dimension shared by the heads, before rotary positions. The
        # attention logits are then bounded by the scales, whatever the projections grow to.
        self.q_norm = RMSNorm(self.head_dim, eps=norm_eps) if qk_norm else None
        self.k_norm = RMSNorm(self.head_dim, eps=norm_eps) if qk_norm else None
        # The first `stick_breaking_heads` heads of self-attention use `stick_breaking_attention` (nearest match
        # first, alternately earlier and later tokens) instead of softmax attention; for encoders.
        if not 0 <= stick_breaking_heads <= n_heads:
            raise ValueError(f"stick_breaking_heads must be in 0..n_heads={n_heads}, got {stick_breaking_heads}")
        if stick_breaking_heads % (n_heads // n_kv_heads):
            raise ValueError(
                f"stick_breaking_heads={stick_breaking_heads} must be a multiple of the query heads per key/value "
                f"head ({n_heads // n_kv_heads}): a key/value head serves one kind of attention"
            )
        self.stick_breaking_heads = stick_breaking_heads
        self.stick_breaking_bias = stick_breaking_bias

    def _heads(self, x: Tensor, n_heads: int) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, n_heads, self.head_dim).transpose(1, 2)  # (B, T, n*D) -> (B, n, T, D)

    def split_qkv(self, qkv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The fused projection (B, T, (H + 2G) * D) -> queries (B, H, T, D), keys and values (B, G, T, D)."""
        B, T, _ = qkv.shape
        if self.n_kv_heads == self.n_heads:  # one view for all three (fewer calls: decoding makes ~20 a token)
            q, k, v = qkv.view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        else:
            q, k, v = qkv.split([self.q_dim, self.kv_dim, self.kv_dim], dim=-1)
            q, k, v = self._heads(q, self.n_heads), self._heads(k, self.n_kv_heads), self._heads(v, self.n_kv_heads)
        if self.q_norm is not None:  # one test when there is none (decoding makes this call per layer and token)
            q, k = self.norm_q(q), self.norm_k(k)
        return q, k, v

    def norm_q(self, q: Tensor) -> Tensor:
        """QK-norm of queries (B, H, T, D), when the module has it."""
        return q if self.q_norm is None else self.q_norm(q)

    def norm_k(self, k: Tensor) -> Tensor:
        """QK-norm of keys (B, G, T, D), when the module has it."""
        return k if self.k_norm is None else self.k_norm(k)

    def convolve(self, qkv: Tensor, mask: Tensor | None, padding_zeroed: bool) -> Tensor:
        """`qkv_conv` over the sequence of the fused projection (B, T, N). Padding counts as zeros, as outside the
        sequence, so a padded row gives its real tokens what the row alone gives them: padding is found from a
        key-padding `mask` (B, 1, 1, T), unless `padding_zeroed` says the projection already holds zeros there."""
        assert self.qkv_conv is not None
        if not padding_zeroed and mask is not None and mask.dim() == 4 and mask.shape[1:3] == (1, 1):
            qkv = qkv.masked_fill(~mask[:, 0, 0, :, None], 0.0)
        return _SequenceConvolution.apply(qkv, self.qkv_conv)

    def project_kv(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of `context` (B, Tk, C) for cross-attention: two (B, G, Tk, D) tensors."""
        w = self.in_proj.weight[self.q_dim :]
        b = None if self.in_proj.bias is None else self.in_proj.bias[self.q_dim :]
        k, v = self.sliced_linear(context, w, b).split(self.kv_dim, dim=-1)  # (B, Tk, G*D) each
        return self.norm_k(self._heads(k, self.n_kv_heads)), self._heads(v, self.n_kv_heads)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        is_causal: bool = False,
        rotary: tuple[Tensor, Tensor] | None = None,
        cache: KVCache | None = None,
        positions: Tensor | None = None,
        kv: tuple[Tensor, Tensor] | None = None,
        need_weights: bool = False,
        real_tokens: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """x: (B, Tq, C) queries. context: (B, Tk, C) for cross-attention (None = self-attention).

        mask: boolean, True = may attend, broadcastable to (B, H, Tq, Tk). is_causal: see
        `scaled_dot_product_attention`. rotary: (cos, sin) from `RotaryEmbedding`, applied to the queries and keys
        of self-attention. cache, positions: store this step's keys/values at `positions` (Tq,) and attend over
        all cached ones (with is_causal, each query sees the cache slots up to its own position); a growing cache
        holding L tokens needs positions L .. L+Tq-1 (see `KVCache.update`).
        kv: precomputed `project_kv(context)` for cross-attention. real_tokens: self-attention projects only these
        rows of the flattened (B * Tq) positions, the real tokens of a padded batch (see `masks.on_real_tokens`).

        Returns (output (B, Tq, C), weights (B, H, Tq, Tk) if need_weights else None).
        """
        B, Tq, _ = x.shape
        if context is None and kv is None:
            qkv = on_real_tokens(self.in_proj, x, real_tokens)
            if self.qkv_conv is not None:
                if cache is not None:
                    raise ValueError("qkv_conv is for encoders: a KV cache would need the last projections too")
                qkv = self.convolve(qkv, mask, padding_zeroed=real_tokens is not None)
            q, k, v = self.split_qkv(qkv)
            if rotary is not None:
                q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
            if cache is not None:
                if positions is None:
                    raise ValueError("a KV cache needs the positions of the new tokens")
                k, v = cache.update(positions, k, v)
                if is_causal:  # the queries sit at `positions`, not necessarily at the end of the cache
                    mask = combine(mask, causal_mask(positions, k.size(2)))
                    is_causal = False
        else:
            b = None if self.in_proj.bias is None else self.in_proj.bias[: self.q_dim]
            q = self.norm_q(self._heads(self.sliced_linear(x, self.in_proj.weight[: self.q_dim], b), self.n_heads))
            if kv is None:
                assert context is not None  # the branch above took context and kv both None
                kv = self.project_kv(context)
            k, v = kv

        dropout_p = self.dropout_p if self.training else 0.0
        n_sb = self.stick_breaking_heads if context is None and kv is None else 0
        if n_sb:
            if cache is not None or is_causal:
                raise ValueError("stick-breaking heads are for encoders: they read later tokens too")
            # the first n_sb query heads and the key/value heads they share (n_sb is a multiple of H/G, see init)
            g = n_sb * self.n_kv_heads // self.n_heads
            out, weights = stick_breaking_attention(
                q[:, :n_sb],
                k[:, :g],
                v[:, :g],
                mask,
                bias=self.stick_breaking_bias,
                dropout_p=dropout_p,
                need_weights=need_weights,
            )
            if n_sb < self.n_heads:
                rest, rest_weights = scaled_dot_product_attention(
                    q[:, n_sb:], k[:, g:], v[:, g:], mask, dropout_p=dropout_p, need_weights=need_weights
                )
                out = torch.cat([out, rest], dim=1)
                weights = None if weights is None or rest_weights is None else torch.cat([weights, rest_weights], 1)
        else:
            out, weights = scaled_dot_product_attention(
                q, k, v, mask, is_causal=is_causal, dropout_p=dropout_p, need_weights=need_weights
            )
        # (B, H, Tq, D) -> (B, Tq, H*D); for one query (decoding) the transpose moves nothing and is left out
        out = out.reshape(B, 1, self.q_dim) if Tq == 1 else out.transpose(1, 2).reshape(B, Tq, self.q_dim)
        return on_real_tokens(self.out_proj, out, real_tokens), weights
