"""Translation: source/target pairs, token-budget batches, teacher-forced loss; BLEU, chrF and exact match of
decoded translations (greedy while training, beam search in `evaluate`)."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from .. import metrics
from ..data.batching import LazyBatches, compact, pad_batch, token_budget_batches
from ..data.readers import DataError, read_parallel, read_translation
from ..errors import UserError
from ..generation import generate_in_batches
from ..generation.steps import DecodingModel
from ..nn.losses import label_smoothed_cross_entropy
from .base import Batch, Encoded, Task


class TranslationTask(Task):
    name = "translation"
    family = "seq2seq"
    metric, higher_is_better = "bleu", True
    builtin = "builtin:scan"

    def __init__(self, cfg: Any, tokenizer: Any, source_tokenizer: Any = None, labels: Any = None) -> None:
        super().__init__(cfg, tokenizer, source_tokenizer)
        # Decoding for BLEU: greedy during training (fast); `evaluate` switches to the paper's beam search.
        self.num_beams = 1
        self.length_penalty = 1.0

    @classmethod
    def read_pair(cls, source_file: str | None, target_file: str | None, option: str) -> list:
        if not (source_file and target_file):
            raise UserError(f"give both --{option}source-file and --{option}target-file")
        return read_parallel(source_file, target_file)

    @classmethod
    def read_file(cls, path: str, cfg: Any) -> list:
        return read_translation(path, cfg.source_lang, cfg.target_lang)

    @classmethod
    def texts(cls, train: list) -> tuple[list[str], list[str] | None]:
        return [t for _, t in train], [s for s, _ in train]

    def model_settings(self) -> dict[str, Any]:
        # Room for decoding up to 50 tokens past the longest input (the paper's max output length).
        settings: dict[str, Any] = {"max_seq_len": self.max_len + 50, "pad_id": self.pad_id}
        if self.source_tokenizer is self.tokenizer:
            settings.update(vocab_size=self.tokenizer.vocab_size, src_vocab_size=None, tgt_vocab_size=None)
        else:
            settings.update(
                vocab_size=self.tokenizer.vocab_size,
                src_vocab_size=self.source_tokenizer.vocab_size,
                tgt_vocab_size=self.tokenizer.vocab_size,
            )
        return settings

    def encode(self, raw: list[tuple[str, str]]) -> Encoded:
        """(source ids + EOS, target ids) as int32 arrays: the decoder reads BOS + target and predicts target +
        EOS."""
        out, kept, dropped, truncated = [], [], 0, 0
        eos = self.tokenizer.eos_id
        sources = self.source_tokenizer.encode_each([s for s, _ in raw])
        targets = self.tokenizer.encode_each([t for _, t in raw])
        for pair, src, tgt in zip(raw, sources, targets, strict=True):
            if not src or not tgt:
                dropped += 1
                continue
            src_fit, cut_src = self.fit(src, self.max_len - 1)
            tgt_fit, cut_tgt = self.fit(tgt, self.max_len - 1)
            if src_fit is None or tgt_fit is None:
                dropped += 1
                continue
            truncated += cut_src or cut_tgt
            out.append((compact(src_fit + [eos]), compact(tgt_fit)))
            kept.append(pair)
        return Encoded(out, dropped, truncated, kept)

    def _collate(self, examples: list[tuple[Any, Any]]) -> Batch:
        bos, eos = self.tokenizer.bos_id, self.tokenizer.eos_id
        targets = [t for _, t in examples]
        return {
            "src": pad_batch([s for s, _ in examples], self.pad_id),
            "tgt_in": pad_batch(targets, self.pad_id, prefix=bos),
            "tgt_out": pad_batch(targets, self.pad_id, suffix=eos),
        }

    def batches(self, encoded: Encoded, *, epoch: int | None = None) -> LazyBatches:
        examples = encoded.examples
        lengths = [max(len(s), len(t) + 1) for s, t in examples]
        groups = token_budget_batches(
            lengths, self.cfg.max_tokens, shuffle=epoch is not None, seed=self.cfg.seed * 1000 + (epoch or 0)
        )
        return LazyBatches(groups, lambda group: self._collate([examples[i] for i in group]))

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        # The model computes the loss itself (padding, its cfg.pad_id = self.pad_id, is no target): its output layer
        # then skips the padding positions.
        return model(
            batch["src"], batch["tgt_in"], labels=batch["tgt_out"], label_smoothing=self.cfg.label_smoothing
        ).loss

    def tokens_in(self, batch: Batch) -> int:
        return int((batch["src"] != self.pad_id).sum()) + int((batch["tgt_out"] != self.pad_id).sum())

    @torch.no_grad()
    def translate(
        self, model: nn.Module, sources: list[list[int]], device: torch.device, batch_size: int = 128
    ) -> list[str]:
        """Translations of encoded sources (each ending in EOS), in order, detokenized: greedy, or beam search
        when `num_beams` > 1."""
        # The cast: the model this task trains, a Seq2SeqTransformer.
        hypotheses = generate_in_batches(
            cast(DecodingModel, model),
            [[int(i) for i in s] for s in sources],  # lists, as generation takes them (encoded: int32 arrays)
            pad_id=self.pad_id,
            batch_size=batch_size,
            bos_id=self.tokenizer.bos_id,
            eos_id=self.tokenizer.eos_id,
            num_beams=self.num_beams,
            length_penalty=self.length_penalty,
        )
        return [self.tokenizer.decode(hyps[0].tokens) for hyps in hypotheses]

    @torch.no_grad()
    def evaluate(self, model: nn.Module, encoded: Encoded, device: torch.device) -> dict[str, float]:
        if not encoded.examples:
            raise DataError("no evaluation example fits max_len")
        total, correct, count = 0.0, 0, 0
        for batch in self.batches(encoded):
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(batch["src"], batch["tgt_in"])
            total += float(
                label_smoothed_cross_entropy(logits, batch["tgt_out"], ignore_index=self.pad_id, reduction="sum")
            )
            c, n = metrics.token_accuracy(logits, batch["tgt_out"], ignore_index=self.pad_id)
            correct, count = correct + c, count + n
        hypotheses = self.translate(model, [s for s, _ in encoded.examples], device)
        assert encoded.kept_raw is not None  # `encode` keeps them
        references = [t for _, t in encoded.kept_raw]
        loss = total / count
        return {
            "loss": loss,
            "perplexity": metrics.perplexity(loss),
            "token_accuracy": correct / count,
            "bleu": metrics.bleu(hypotheses, references),
            "chrf": metrics.chrf(hypotheses, references),
            "exact_match": metrics.exact_match(hypotheses, references),
        }

    def samples(self, model: nn.Module, raw: list, n: int, device: torch.device) -> list[dict[str, Any]]:
        encoded = self.encode(raw[:n])
        hypotheses = self.translate(model, [s for s, _ in encoded.examples], device)
        assert encoded.kept_raw is not None  # `encode` keeps them
        return [
            {"source": s, "prediction": h, "reference": t}
            for (s, t), h in zip(encoded.kept_raw, hypotheses, strict=True)
        ]
