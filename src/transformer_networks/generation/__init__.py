"""Decoding: turning a trained model's next-token distributions into sequences.

`generate` (greedy, sampling, beam search, with or without the KV cache) is the entry point; `logits` holds the
sampling filters, `steps` the per-family model adaptors, `search` the strategies.
"""

from .generate import GenerationOutput, generate, generate_in_batches
from .greedy import greedy_seq2seq
from .logits import apply_temperature, process_logits, top_k_filter, top_p_filter
from .search import Hypothesis, gnmt_length_penalty
from .steps import left_pad, left_padded_positions

__all__ = [
    "GenerationOutput", "Hypothesis", "apply_temperature", "generate", "generate_in_batches", "gnmt_length_penalty",
    "greedy_seq2seq", "left_pad", "left_padded_positions", "process_logits", "top_k_filter", "top_p_filter",
]
