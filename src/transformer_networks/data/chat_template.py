"""The chat template: how a conversation becomes one sequence of token ids for a language model.

Each message is its role's marker token, the content's tokens, and the end-of-turn token:

    <|system|>You are terse.<|end|><|user|>Hi, I am Ann.<|end|><|assistant|>Hello, Ann.<|end|><|user|>...

and a prompt for the next reply ends with `<|assistant|>` (the generation prompt), after which the model writes the
reply and closes it with `<|end|>`, where generation stops. The four markers are special tokens added to the
tokenizer (`add_chat_tokens`: a tokenizer trained here, or a GPT-2-format one given with `--init`, whose embedding
and output rows then grow by four), so they are single tokens that no text can produce by accident, and they are
saved with the tokenizer in every checkpoint.

The template has no separators besides the markers, so that the token ids are the same whether the conversation
is encoded message by message (`ChatTemplate.encode`, which also says which tokens are the assistant's) or rendered
to one string and tokenized (Hugging Face `apply_chat_template` with `JINJA`, written to `tokenizer_config.json`
by `export --hf`): a tokenizer splits its text at special tokens before anything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import UserError
from .dialogue import Message
from .tokenizer import TextTokenizer

ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
END_OF_TURN = "<|end|>"
CHAT_TOKENS = (*ROLE_TOKENS.values(), END_OF_TURN)

# The same rendering in Jinja, as Hugging Face tokenizers apply it (`apply_chat_template`).
JINJA = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def render(messages: Sequence[Message], add_generation_prompt: bool = False) -> str:
    """The conversation as the one string `JINJA` renders."""
    text = "".join(f"{ROLE_TOKENS[m.role]}{m.content}{END_OF_TURN}" for m in messages)
    return text + (ROLE_TOKENS["assistant"] if add_generation_prompt else "")


def add_chat_tokens(tokenizer: TextTokenizer) -> TextTokenizer:
    """The tokenizer with the chat markers as special tokens (at the end of its vocabulary); unchanged when it
    has them already. Changes the underlying `tokenizers.Tokenizer` in place."""
    from tokenizers import AddedToken

    missing = [t for t in CHAT_TOKENS if tokenizer.tokenizer.token_to_id(t) is None]
    if missing:
        tokenizer.tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
    return tokenizer


@dataclass(frozen=True)
class ChatTemplate:
    """The marker ids of one tokenizer; `encode` turns conversations into ids."""

    tokenizer: TextTokenizer
    role_ids: dict[str, int]
    end_id: int

    @classmethod
    def of(cls, tokenizer: TextTokenizer) -> ChatTemplate:
        found = {t: tokenizer.tokenizer.token_to_id(t) for t in CHAT_TOKENS}
        ids = {t: i for t, i in found.items() if i is not None}
        missing = [t for t in CHAT_TOKENS if t not in ids]
        if missing:
            raise UserError(f"the tokenizer has no chat markers ({', '.join(missing)}): not a chat model's tokenizer")
        return cls(tokenizer, {role: ids[t] for role, t in ROLE_TOKENS.items()}, ids[END_OF_TURN])

    def message(self, role: str, content: str) -> list[int]:
        """One message's ids: marker, content, end of turn."""
        return [self.role_ids[role], *self.tokenizer.encode(content), self.end_id]

    def encode(self, messages: Sequence[Message], add_generation_prompt: bool = False) -> tuple[list[int], list[int]]:
        """(ids, owner): the ids of the conversation, and for each id the index of the message it belongs to
        (-1 for the generation prompt). An assistant message owns its marker, content and end-of-turn token."""
        ids: list[int] = []
        owner: list[int] = []
        for i, m in enumerate(messages):
            piece = self.message(m.role, m.content)
            ids += piece
            owner += [i] * len(piece)
        if add_generation_prompt:
            ids.append(self.role_ids["assistant"])
            owner.append(-1)
        return ids, owner

    def decode(self, ids: Sequence[int]) -> str:
        """The text of a reply's ids (special tokens dropped; stops at the end of turn)."""
        ids = list(ids)
        if self.end_id in ids:
            ids = ids[: ids.index(self.end_id)]
        return self.tokenizer.tokenizer.decode(ids, skip_special_tokens=True)
