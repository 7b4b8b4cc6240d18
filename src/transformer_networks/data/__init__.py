"""Data: readers, tokenizers, batching and built-in datasets."""
