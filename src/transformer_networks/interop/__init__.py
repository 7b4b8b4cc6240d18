"""Moving weights between this library and others: torch.nn.Transformer, Hugging Face checkpoints, ONNX."""

from .torch_nn import load_torch_transformer
from .weights import WeightMappingError, load_state_dict_strict, map_state_dict, unmap_state_dict

__all__ = [
    "WeightMappingError",
    "load_state_dict_strict",
    "load_torch_transformer",
    "map_state_dict",
    "unmap_state_dict",
]
