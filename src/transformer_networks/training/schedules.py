"""Learning-rate schedules, as functions of the step (1-based: the first optimizer step is step 1).

    noam(step, d_model, warmup)     the paper's equation (3): d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)
    inverse_sqrt(step, warmup)      the same shape scaled to peak at 1.0: linear warmup, then 1/sqrt decay
    cosine(step, warmup, total)     linear warmup to 1.0, then half a cosine down to `min_ratio` at `total`
    constant(step, warmup)          linear warmup to 1.0, then flat

`noam` returns the learning rate itself (the paper sets no base rate; multiply by a factor if wanted); the others
return a multiplier of the optimizer's base learning rate, for `torch.optim.lr_scheduler.LambdaLR`.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from ..errors import ConfigError

SCHEDULES = ("noam", "inverse_sqrt", "cosine", "constant")


def noam(step: int, d_model: int, warmup: int = 4000) -> float:
    step = max(step, 1)
    return d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


def inverse_sqrt(step: int, warmup: int = 4000) -> float:
    step = max(step, 1)
    return min(step / warmup, math.sqrt(warmup / step)) if warmup > 0 else 1 / math.sqrt(step)


def cosine(step: int, warmup: int, total: int, min_ratio: float = 0.0) -> float:
    if step < warmup:
        return max(step, 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def constant(step: int, warmup: int = 0) -> float:
    return min(1.0, max(step, 1) / warmup) if warmup > 0 else 1.0


def make_scheduler(
    optimizer: Optimizer,
    name: str,
    *,
    warmup: int = 4000,
    total_steps: int | None = None,
    d_model: int = 512,
    min_ratio: float = 0.0,
) -> LambdaLR:
    """A LambdaLR for one of `SCHEDULES`. For "noam" the optimizer's base learning rate is a factor on the
    paper's formula (set it to 1.0 for the paper's exact rates)."""
    if name == "noam":
        fn = lambda step: noam(step + 1, d_model, warmup)  # noqa: E731
    elif name == "inverse_sqrt":
        fn = lambda step: inverse_sqrt(step + 1, warmup)  # noqa: E731
    elif name == "cosine":
        if total_steps is None:
            raise ConfigError("the cosine schedule needs the total number of steps (max_steps)")
        fn = lambda step: cosine(step + 1, warmup, total_steps, min_ratio)  # noqa: E731
    elif name == "constant":
        fn = lambda step: constant(step + 1, warmup)  # noqa: E731
    else:
        raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}; got {name!r}")
    return LambdaLR(optimizer, fn)
