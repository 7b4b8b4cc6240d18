"""Logits processors: pure functions that reshape a next-token distribution before sampling.

Each takes logits (N, V) and returns new logits (N, V); removed tokens get -inf, so a softmax gives them zero
probability. They compose in the order Hugging Face `generate` applies them: temperature, then top-k, then top-p.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import InputError


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """Divide by the temperature: < 1 sharpens the distribution, > 1 flattens it."""
    if not temperature > 0:
        raise InputError(f"temperature must be > 0, got {temperature}")
    return logits if temperature == 1.0 else logits / temperature


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the k most likely tokens of each row (ties at the k-th value are kept too)."""
    if k < 1:
        raise InputError(f"top_k must be >= 1, got {k}")
    if k >= logits.size(-1):
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (N, 1) the k-th largest logit
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filtering (Holtzman et al. 2020): keep the smallest set of most likely tokens whose probabilities
    add up to at least p. The most likely token is always kept."""
    if not 0 < p <= 1:
        raise InputError(f"top_p must be in (0, 1], got {p}")
    if p == 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs  # probability mass of the tokens ranked above each one
    remove_sorted = before >= p  # the set already reached p without this token
    remove = remove_sorted.scatter(-1, order, remove_sorted)  # back to vocabulary order
    return logits.masked_fill(remove, float("-inf"))


def check_sampling(temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> None:
    """Refuse out-of-range settings before any work is done (the filters check them again)."""
    if not temperature > 0:
        raise InputError(f"temperature must be > 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise InputError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise InputError(f"top_p must be in (0, 1], got {top_p}")


def process_logits(
    logits: Tensor, *, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> Tensor:
    """Temperature, then top-k, then top-p; None leaves a step out."""
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return logits


def sample(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One token per row drawn from softmax(logits): (N, V) -> (N,)."""
    probs = logits.float().softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
