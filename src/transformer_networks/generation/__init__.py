"""Decoding: turning a trained model's next-token distributions into sequences.

`generate` (greedy, sampling, beam search, with or without the KV cache) is the entry point; `logits` holds the
sampling filters, `steps` the per-family model adaptors, `search` the strategies. `CompiledDecoder` decodes a
language model with each new token one compiled graph (one CUDA graph on a GPU).

This package knows the models only through what decoding calls on them (`steps.py`: `model.family`, `model.cfg`,
`model(...)`, `model.init_cache`, and a seq2seq model's `encode` / `decode`; `decode_step.py` and `compiled.py`
also call a language model's parts: its embeddings, layer stack and output layer), and imports nothing from
`transformer_networks.models`: the models' own `generate` methods call into it.
"""

from .compiled import CompiledDecoder
from .generate import GenerationOutput, generate, generate_in_batches
from .logits import apply_temperature, process_logits, top_k_filter, top_p_filter
from .search import Hypothesis, gnmt_length_penalty
from .steps import left_pad, left_padded_positions

__all__ = [
    "CompiledDecoder",
    "GenerationOutput",
    "Hypothesis",
    "apply_temperature",
    "generate",
    "generate_in_batches",
    "gnmt_length_penalty",
    "left_pad",
    "left_padded_positions",
    "process_logits",
    "top_k_filter",
    "top_p_filter",
]
