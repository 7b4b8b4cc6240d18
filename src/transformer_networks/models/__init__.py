"""The four Transformer families, each built from one `TransformerConfig`."""

from .body import ModelBase
from .classifier import TransformerClassifier
from .lm import TransformerLM
from .outputs import TransformerOutput
from .qa import SpanLogits, TransformerQA
from .seq2seq import Seq2SeqTransformer

# The one model registry: family name -> class. Tasks name their family (`tasks.Task.family`); our model
# directories name the class (`model.json`), found here by `__name__`.
MODELS: dict[str, type[ModelBase]] = {
    cls.family: cls for cls in (Seq2SeqTransformer, TransformerLM, TransformerClassifier, TransformerQA)
}


def model_class(name: str) -> type[ModelBase] | None:
    """The model class of a family ("lm") or a class name ("TransformerLM"); None when there is none."""
    return MODELS.get(name) or {cls.__name__: cls for cls in MODELS.values()}.get(name)


__all__ = [
    "MODELS",
    "ModelBase",
    "Seq2SeqTransformer",
    "SpanLogits",
    "TransformerClassifier",
    "TransformerLM",
    "TransformerOutput",
    "TransformerQA",
    "model_class",
]
