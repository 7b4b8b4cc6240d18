"""Decoding: turning a trained model's next-token distributions into sequences."""

from .greedy import greedy_seq2seq

__all__ = ["greedy_seq2seq"]
