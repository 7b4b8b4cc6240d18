"""Weight import as a table: foreign parameter names -> ours, with `{}` standing for a layer index.

    table = {"layers.{}.linear1.weight": "layers.{}.ffn.fc1.weight", ...}
    state = map_state_dict(foreign_state, table, transpose={"h.{}.attn.c_attn.weight"})
    load_state_dict_strict(module, state)

`map_state_dict` refuses a foreign tensor that no table row claims; `load_state_dict_strict` refuses a missing
tensor or a shape that does not match, naming each. Together they guarantee that every weight was used exactly
where intended.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from torch import Tensor, nn

from ..errors import UserError


class WeightMappingError(UserError):
    """Foreign weights do not fit the model: unused, missing or mis-shaped tensors (all named)."""


def _pattern(key: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(key).replace(r"\{\}", r"(\d+)") + "$")


def map_state_dict(
    source: Mapping[str, Tensor], table: Mapping[str, str], transpose: Iterable[str] = (), hint: str = ""
) -> dict[str, Tensor]:
    """Rename every tensor of `source` through `table`; tensors whose foreign key is in `transpose` are
    transposed (e.g. GPT-2's Conv1D stores weights as (in, out), `nn.Linear` as (out, in))."""
    transpose = set(transpose)
    rows = [(_pattern(src), src, dst) for src, dst in table.items()]
    out: dict[str, Tensor] = {}
    unused = []
    for key, tensor in source.items():
        for pattern, src, dst in rows:
            match = pattern.match(key)
            if match:
                out[dst.format(*match.groups())] = tensor.t() if src in transpose else tensor
                break
        else:
            unused.append(key)
    if unused:
        message = f"weights with no place in the model: {', '.join(unused)}"
        raise WeightMappingError(message + (f" ({hint})" if hint else ""))
    return out


def load_state_dict_strict(module: nn.Module, state: Mapping[str, Tensor]) -> None:
    """Load `state` into `module`, requiring every tensor (one per group of tied tensors) and every shape."""
    expected = module.state_dict()
    # Tied parameters appear under several names; a group is satisfied when any one of its names is given.
    groups: dict[int, list[str]] = {}
    for name, tensor in expected.items():
        groups.setdefault(tensor.data_ptr() or name, []).append(name)
    missing = [names[0] for names in groups.values() if not any(n in state for n in names)]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k} (model {tuple(expected[k].shape)}, weights {tuple(v.shape)})"
        for k, v in state.items() if k in expected and expected[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected: {', '.join(unexpected)}")
    if wrong_shape:
        problems.append(f"shape mismatch: {', '.join(wrong_shape)}")
    if problems:
        raise WeightMappingError("; ".join(problems))
    full = dict(state)
    for names in groups.values():
        given = next(n for n in names if n in state)
        for n in names:
            full.setdefault(n, state[given])
    module.load_state_dict(full, strict=True)
