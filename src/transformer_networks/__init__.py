"""transformer-networks: Transformer networks (Vaswani et al. 2017) on PyTorch.

import transformer_networks as tn
cfg = tn.TransformerConfig.from_preset("paper-base", vocab_size=37000)
model = tn.Seq2SeqTransformer(cfg)          # also tn.TransformerLM, tn.TransformerClassifier
"""

from .config import PRESETS, TransformerConfig
from .errors import ConfigError, UserError
from .models import Seq2SeqTransformer, TransformerClassifier, TransformerLM, TransformerOutput
from .pretrained import from_pretrained, save_pretrained
from .version import __version__

__all__ = [
    "PRESETS",
    "ConfigError",
    "Seq2SeqTransformer",
    "TransformerClassifier",
    "TransformerConfig",
    "TransformerLM",
    "TransformerOutput",
    "UserError",
    "__version__",
    "from_pretrained",
    "save_pretrained",
]
