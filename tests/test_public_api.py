"""Every public module of the package's top level (modules and subpackages) says what it offers (`__all__`):
each public function and class defined in it, only names that exist, and none of what it merely imports (torch,
Path, dataclass...)."""

import importlib
import inspect
import pkgutil

import pytest

import transformer_networks

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(transformer_networks.__path__, "transformer_networks.")
    if m.name.count(".") == 1 and not m.name.split(".")[1].startswith("_")
)


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_what_the_module_defines_and_nothing_it_imports(name):
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not have: {missing}"
    imported = [n for n in module.__all__ if inspect.ismodule(getattr(module, n))]
    assert not imported, f"{name}.__all__ lists modules: {imported}"
    defined = [
        n
        for n, v in vars(module).items()
        if not n.startswith("_")
        and (inspect.isfunction(v) or inspect.isclass(v))
        and getattr(v, "__module__", None) == name
    ]
    assert set(defined) <= set(module.__all__), f"{name}: not in __all__: {sorted(set(defined) - set(module.__all__))}"


def test_model_generate_names_every_argument_of_generation_generate():
    # `model.generate(...)` shows its arguments (no **kwargs), the same as generation.generate's, so that help(),
    # editors and type checkers see them.
    from transformer_networks import Seq2SeqTransformer, TransformerLM
    from transformer_networks.generation import generate

    expected = list(inspect.signature(generate).parameters)[1:]  # after the model
    for cls in (TransformerLM, Seq2SeqTransformer):
        params = inspect.signature(cls.generate).parameters
        assert all(p.kind != p.VAR_KEYWORD for p in params.values())
        assert list(params)[1:] == expected
