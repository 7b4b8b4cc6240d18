"""Data: readers, tokenizers, batching and built-in datasets (import the submodules: `data.readers`,
`data.tokenizer`, `data.prepared`, ...)."""

__all__: list[str] = []
