"""Weight import as a table: foreign parameter names -> ours, with `{}` standing for a layer index.

    table = {"layers.{}.linear1.weight": "layers.{}.ffn.fc1.weight", ...}
    state = map_state_dict(foreign_state, table, transpose={"h.{}.attn.c_attn.weight"})
    load_state_dict_strict(module, state)

A target may end in `:q`, `:k` or `:v`: the foreign model keeps separate query, key and value projections where we
keep one fused `in_proj` (rows q, then k, then v); the three parts are concatenated.

`map_state_dict` refuses a foreign tensor that no table row claims; `load_state_dict_strict` refuses a missing
tensor or a shape that does not match, naming each. Together they guarantee that every weight was used exactly
where intended.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import torch
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
    parts: dict[str, dict[str, Tensor]] = {}  # fused target -> {"q": ..., "k": ..., "v": ...}
    unused = []
    for key, tensor in source.items():
        for pattern, src, dst in rows:
            match = pattern.match(key)
            if match:
                target = dst.format(*match.groups())
                value = tensor.t() if src in transpose else tensor
                name, _, part = target.partition(":")
                if part:
                    parts.setdefault(name, {})[part] = value
                else:
                    out[target] = value
                break
        else:
            unused.append(key)
    if unused:
        message = f"weights with no place in the model: {', '.join(unused)}"
        raise WeightMappingError(message + (f" ({hint})" if hint else ""))
    for name, qkv in parts.items():
        absent = [p for p in "qkv" if p not in qkv]
        if absent:
            raise WeightMappingError(f"{name}: the {'/'.join(absent)} part(s) of the projection are missing")
        out[name] = torch.cat([qkv["q"], qkv["k"], qkv["v"]], dim=0)
    return out


def unmap_state_dict(
    state: Mapping[str, Tensor],
    table: Mapping[str, str],
    transpose: Iterable[str] = (),
    n_layers: int = 0,
    qkv_rows: tuple[int, int, int] | None = None,
) -> dict[str, Tensor]:
    """The inverse of `map_state_dict`: our tensors under the foreign names (layer rows for 0..n_layers-1).
    qkv_rows: the rows of q, k and v in a fused projection (grouped-query attention has fewer k and v rows);
    None: three equal parts."""
    transpose = set(transpose)
    out: dict[str, Tensor] = {}
    for src, dst in table.items():
        for i in range(n_layers) if "{}" in src else [None]:
            key, target = (src, dst) if i is None else (src.format(i), dst.format(i))
            name, _, part = target.partition(":")
            if name not in state:
                continue
            value = state[name]
            if part:
                parts = value.split(list(qkv_rows), dim=0) if qkv_rows else value.chunk(3, dim=0)
                value = parts["qkv".index(part)]
            out[key] = (value.t() if src in transpose else value).contiguous()
    return out


def load_state_dict_strict(module: nn.Module, state: Mapping[str, Tensor]) -> None:
    """Load `state` into `module`, requiring every tensor (one per group of tied tensors) and every shape."""
    expected = module.state_dict()
    # Tied parameters appear under several names; a group is satisfied when any one of its names is given.
    groups: dict[int | str, list[str]] = {}  # by data pointer; by name for a tensor without storage
    for name, tensor in expected.items():
        groups.setdefault(tensor.data_ptr() or name, []).append(name)
    missing = [names[0] for names in groups.values() if not any(n in state for n in names)]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k} (model {tuple(expected[k].shape)}, weights {tuple(v.shape)})"
        for k, v in state.items()
        if k in expected and expected[k].shape != v.shape
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
