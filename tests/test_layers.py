"""The package's modules import downward only, and never in a cycle, counting imports inside functions.

The layers, bottom first (a module may import its own package and any layer below it, nothing beside or above):

    errors, version, tokens                   exceptions, the version, the special-token ids
    config, device, metrics                   TransformerConfig / TrainConfig and presets, device choice, metrics
    settings, data, nn, viz                   settings routing, readers/tokenizers/splits, building blocks, plots
    generation                                decoding over any model with the decoding interface (steps.py)
    models                                    the three families (their `generate` calls into generation)
    interop, tasks, backends                  weight tables and export, one module per task, the oneDNN products
    checkpoints                               the one place that writes and reads model directories
    pretrained                                from_pretrained: ours, Hugging Face, checkpoints
    training                                  the trainer, evaluation, averaging, distributed, schedules
    inference                                 checkpoints on text
    serving                                   the HTTP API (continuous batching, the endpoints)
    cli                                       the command line
    __main__, the package's __init__          `python -m transformer_networks`, the public names
"""

import ast
from pathlib import Path

import transformer_networks

ROOT = Path(transformer_networks.__file__).parent
PACKAGE = "transformer_networks"
LAYERS = [
    {"errors", "version", "tokens"},
    {"config", "device", "metrics"},
    {"settings", "data", "nn", "viz"},
    {"generation"},
    {"models"},
    {"interop", "tasks", "backends"},
    {"checkpoints"},
    {"pretrained"},
    {"training"},
    {"inference"},
    {"serving", "explorer"},
    {"cli"},
    {"__main__", "__init__"},
]
RANK = {component: rank for rank, layer in enumerate(LAYERS) for component in layer}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(module: str) -> set[str]:
    """The package's modules that `module` imports anywhere in its file (functions included)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # `from .x import y` imports the module x.y when there is one, else a name of x
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in MODULES and name != module)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def test_the_walk_sees_imports_inside_functions():
    # cli imports the trainer at the top and data.splits inside its train command: both must be seen
    assert f"{PACKAGE}.training.trainer" in GRAPH[f"{PACKAGE}.cli"]
    assert f"{PACKAGE}.data.splits" in GRAPH[f"{PACKAGE}.cli"]
    assert len(MODULES) > 40


def test_every_component_has_a_layer():
    assert {component(m) for m in MODULES} <= set(RANK), {component(m) for m in MODULES} - set(RANK)


def test_imports_go_downward_only():
    wrong = sorted(
        f"{m} -> {t}"
        for m, targets in GRAPH.items()
        for t in targets
        if component(m) != component(t) and RANK[component(t)] >= RANK[component(m)]
    )
    assert not wrong, "imports that go up or sideways:\n" + "\n".join(wrong)


def test_no_import_cycle():
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_models_and_building_blocks_know_nothing_above_them():
    # the two layers users build on: no trainer, no checkpoint storage, no CPU backend in them
    for module, targets in GRAPH.items():
        if component(module) in ("nn", "models", "generation"):
            above = {component(t) for t in targets} & {"training", "checkpoints", "pretrained", "backends", "tasks"}
            assert not above, f"{module} imports {above}"
