"""Dialogue (chat): a language model trained on conversations, the loss on the assistant's replies.

    raw example   Conversation(id, messages=(Message(role, content), ...))        (data/dialogue.py)
    encoded       the conversation through the chat template (data/chat_template.py): marker, content and
                  end-of-turn token per message, one sequence; which tokens the loss is on (`train_on`)
    loss          next-token cross-entropy on the chosen tokens only: by default every assistant reply's content
                  and its end-of-turn token, all replies of a conversation in one pass (`train_on=assistant`);
                  `all` every token, `last` the last reply only
    metrics       loss and perplexity on the assistant's tokens; the greedy reply to every user turn of the
                  held-out conversations against the reference: reply_exact_match, context_reply_exact_match
                  (the replies that depend on an earlier turn, built-in data), bleu, chrf, distinct_1, distinct_2

A conversation longer than `max_len` tokens keeps its system message and loses its oldest exchanges until it fits
(counted as truncated); one whose last exchange alone does not fit is dropped (counted).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn

from .. import metrics
from ..data.batching import pad_batch
from ..data.chat_template import ChatTemplate, add_chat_tokens
from ..data.dialogue import Conversation, Message, read_chat
from ..data.readers import DataError
from ..data.tokenizer import TextTokenizer, train_tokenizer
from ..generation import generate, left_pad
from ..generation.steps import DecodingModel
from ..nn.losses import label_smoothed_cross_entropy
from .base import Batch, Encoded, Task

IGNORE = -100  # a position the loss skips


@dataclass
class EncodedConversation:
    conversation: Conversation  # as kept: the oldest exchanges gone when it was too long
    ids: list[int]
    trained: list[bool]  # per token: the loss is on it (as a target) under `train_on`
    assistant: list[bool]  # per token: an assistant reply's content or end-of-turn token (what evaluation scores)


class ChatTask(Task):
    name = "chat"
    family = "lm"
    metric, higher_is_better = "loss", False
    builtin = "builtin:chat"
    default_tokenizer = "bpe"
    default_max_len = 256
    raw_unit, encoded_unit = "conversations", "conversations"

    # --- data, before a tokenizer exists -----------------------------------------------------------------------

    @classmethod
    def read_file(cls, path: str, cfg: Any) -> list:
        return read_chat(path)

    @classmethod
    def texts(cls, train: list) -> tuple[list[str], list[str] | None]:
        return [m.content for c in train for m in c.messages], None

    @classmethod
    def train_tokenizers(cls, train: list, kind: str, cfg: Any) -> tuple[TextTokenizer, TextTokenizer]:
        tok = add_chat_tokens(train_tokenizer(cls.texts(train)[0], kind, cfg.vocab_size))
        return tok, tok

    @classmethod
    def prepare_pretrained_tokenizer(cls, tokenizer: TextTokenizer) -> TextTokenizer:
        return add_chat_tokens(tokenizer)  # a GPT-2-format tokenizer grows by the four markers

    # --- with a tokenizer ---------------------------------------------------------------------------------------

    def __init__(self, cfg: Any, tokenizer: TextTokenizer, *args: Any, **kwargs: Any) -> None:
        super().__init__(cfg, tokenizer, *args, **kwargs)
        self.template = ChatTemplate.of(tokenizer)

    def model_settings(self) -> dict[str, Any]:
        return {"vocab_size": self.tokenizer.vocab_size, "max_seq_len": self.max_len}

    def fit_conversation(self, messages: list[Message], lengths: list[int]) -> tuple[int, int] | None:
        """(the first message kept after the system message, and the system message's count, 0 or 1) so that the
        messages' tokens (`lengths`, per message) fit max_len, dropping the oldest exchanges; None when even the
        last exchange does not fit."""
        head = 1 if messages and messages[0].role == "system" else 0
        first, total = head, sum(lengths)
        while total > self.max_len:
            users = [i for i in range(first, len(messages)) if messages[i].role == "user"]
            if len(users) < 2:
                return None
            total -= sum(lengths[first : users[1]])
            first = users[1]
        return first, head

    def encode(self, raw: list[Conversation]) -> Encoded:
        """Each message tokenized once (all contents in one batch), then the conversations cut to fit."""
        contents = self.tokenizer.encode_batch([m.content for c in raw for m in c.messages])
        out, kept, dropped, cut, n = [], [], 0, 0, 0
        for conversation in raw:
            messages = list(conversation.messages)
            pieces = [
                [self.template.role_ids[m.role], *ids, self.template.end_id]
                for m, ids in zip(messages, contents[n : n + len(messages)], strict=True)
            ]
            n += len(messages)
            fitted = self.fit_conversation(messages, [len(p) for p in pieces])
            if fitted is None:
                dropped += 1
                continue
            first, head = fitted
            cut += first > head
            keep = list(range(head)) + list(range(first, len(messages)))
            messages, pieces = [messages[i] for i in keep], [pieces[i] for i in keep]
            final = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
            ids: list[int] = []
            trained: list[bool] = []
            assistant: list[bool] = []
            for i, (m, piece) in enumerate(zip(messages, pieces, strict=True)):
                # A reply's tokens: its content and end of turn, not its marker (which the prompt gives).
                mine = [m.role == "assistant" and j > 0 for j in range(len(piece))]
                ids += piece
                assistant += mine
                if self.cfg.train_on == "all":
                    trained += [True] * len(piece)
                else:
                    trained += [a and (self.cfg.train_on == "assistant" or i == final) for a in mine]
            fitted_conversation = Conversation(conversation.id, tuple(messages))
            out.append(EncodedConversation(fitted_conversation, ids, trained, assistant))
            kept.append(fitted_conversation)
        return Encoded(out, dropped=dropped, truncated=cut, kept_raw=kept)

    def describe(self, what: str, encoded: Encoded, log: Any) -> None:
        if encoded.truncated:
            log(
                f"{what}: {encoded.truncated:,} conversation(s) longer than max_len={self.max_len} tokens lost "
                "their oldest turns (the system message kept)"
            )
        if encoded.dropped:
            log(
                f"{what}: dropped {encoded.dropped:,} conversation(s) whose last exchange alone is longer than "
                f"max_len={self.max_len} tokens"
            )

    def batches(self, encoded: Encoded, *, epoch: int | None = None) -> list[Batch]:
        order = list(range(len(encoded.examples)))
        if epoch is not None:
            random.Random(self.cfg.seed * 1000 + epoch).shuffle(order)
        size = self.cfg.batch_size
        return [self._batch([encoded.examples[i] for i in order[s : s + size]]) for s in range(0, len(order), size)]

    def _batch(self, examples: list[EncodedConversation]) -> Batch:
        """ids (B, T-1) right-padded, real (B, T-1), and the targets of the trained tokens (-100 elsewhere), plus
        those of the assistant's tokens (what evaluation scores)."""
        pad = self.pad_id if self.pad_id is not None else 0
        batch = {
            "ids": pad_batch([e.ids[:-1] for e in examples], pad),
            "real": pad_batch([[1] * (len(e.ids) - 1) for e in examples], 0).bool(),
        }
        for key in ("trained", "assistant"):
            rows = [
                [t if keep else IGNORE for t, keep in zip(e.ids[1:], getattr(e, key)[1:], strict=True)]
                for e in examples
            ]
            batch[key] = pad_batch(rows, IGNORE)
        return batch

    def tokens_in(self, batch: Batch) -> int:
        return int(batch["real"].sum())

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        logits = model(batch["ids"], attention_mask=batch["real"])  # (B, T, V)
        return label_smoothed_cross_entropy(
            logits, batch["trained"], smoothing=self.cfg.label_smoothing, ignore_index=IGNORE
        )

    # --- evaluation -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def replies(
        self, model: nn.Module, prompts: list[list[Message]], device: torch.device, max_new_tokens: list[int]
    ) -> list[str]:
        """The greedy reply to each prompt (a conversation ending with a user turn), batched by length."""
        encoded = [self.template.encode(p, add_generation_prompt=True)[0] for p in prompts]
        lm = cast(DecodingModel, model)  # a chat model is a TransformerLM
        limit = lm.cfg.max_seq_len
        out = [""] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        size = max(1, self.cfg.batch_size)
        for s in range(0, len(order), size):
            rows = [i for i in order[s : s + size] if len(encoded[i]) < limit]
            if not rows:
                continue
            ids, mask = left_pad([encoded[i] for i in rows], pad_id=self.pad_id if self.pad_id is not None else 0)
            new = min(max(max_new_tokens[i] for i in rows), limit - ids.size(1))
            result = generate(
                lm,
                ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=new,
                eos_id=self.template.end_id,
            )
            assert isinstance(result, Tensor)
            for row, i in enumerate(rows):
                out[i] = self.template.decode(result[row, ids.size(1) :].tolist()).strip()
        return out

    def reply_cases(self, conversations: list[Conversation]) -> list[tuple[list[Message], Message]]:
        """(the conversation up to an assistant turn, that turn) for every assistant turn after a user turn."""
        cases = []
        for c in conversations:
            for j, m in enumerate(c.messages):
                if m.role == "assistant" and j > 0 and c.messages[j - 1].role == "user":
                    cases.append((list(c.messages[:j]), m))
        return cases

    @torch.no_grad()
    def evaluate(self, model: nn.Module, encoded: Encoded, device: torch.device) -> dict[str, float]:
        if not encoded.examples:
            raise DataError("no conversations to evaluate")
        total, count, correct = 0.0, 0, 0
        for batch in self.batches(encoded):
            ids, real, targets = (batch[k].to(device) for k in ("ids", "real", "assistant"))
            logits = model(ids, attention_mask=real)
            total += float(label_smoothed_cross_entropy(logits, targets, ignore_index=IGNORE, reduction="sum"))
            c, n = metrics.token_accuracy(logits, targets, ignore_index=IGNORE)
            correct, count = correct + c, count + n
        loss = total / max(1, count)
        out = {"loss": loss, "perplexity": metrics.perplexity(loss), "token_accuracy": correct / max(1, count)}
        cases = self.reply_cases(encoded.kept_raw or [])
        if not cases:
            return out
        budget = [len(self.tokenizer.encode(ref.content)) + 8 for _, ref in cases]
        got = self.replies(model, [p for p, _ in cases], device, budget)
        refs = [ref.content.strip() for _, ref in cases]
        hits = [g == r for g, r in zip(got, refs, strict=True)]
        out["reply_exact_match"] = sum(hits) / len(hits)
        context = [h for h, (_, ref) in zip(hits, cases, strict=True) if ref.needs_context]
        if context:
            out["context_reply_exact_match"] = sum(context) / len(context)
        out["bleu"] = metrics.bleu(got, refs)
        out["chrf"] = metrics.chrf(got, refs)
        out["distinct_1"], out["distinct_2"] = distinct(got, 1), distinct(got, 2)
        return out

    def samples(self, model: nn.Module, raw: list, n: int, device: torch.device) -> list[dict[str, Any]]:
        kept = self.encode(raw).kept_raw or []
        cases = self.reply_cases(kept)[:n]
        budget = [len(self.tokenizer.encode(ref.content)) + 8 for _, ref in cases]
        got = self.replies(model, [p for p, _ in cases], device, budget)
        return [
            {"user": prompt[-1].content, "prediction": g, "reference": ref.content}
            for (prompt, ref), g in zip(cases, got, strict=True)
        ]


def distinct(texts: list[str], n: int) -> float:
    """Distinct-n (Li et al. 2016): unique word n-grams over all n-grams of the replies (0 when there are none)."""
    grams = [tuple(words[i : i + n]) for t in texts for words in [t.split()] for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0
