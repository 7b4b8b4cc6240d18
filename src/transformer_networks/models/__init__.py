"""The three Transformer families, each built from one `TransformerConfig`."""

from .classifier import TransformerClassifier
from .lm import TransformerLM
from .outputs import TransformerOutput
from .seq2seq import Seq2SeqTransformer

__all__ = ["Seq2SeqTransformer", "TransformerClassifier", "TransformerLM", "TransformerOutput"]
