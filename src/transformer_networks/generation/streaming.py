"""Streaming detokenization: token ids arriving one at a time become text pieces that are safe to show.

    streamer = TextStreamer(tokenizer, stop=["\\nUser:"])
    for token in next_tokens(lm, cache, prompt_ids, max_new_tokens=200, stop_ids={tokenizer.eos_id}):
        print(streamer.put(token), end="", flush=True)
        if streamer.stopped:
            break
    print(streamer.finish())

    for piece in stream_text(tokenizer, token_ids, stop=["\\n\\n"]):   # the same, as a generator
        ...

The pieces put together are exactly `tokenizer.tokenizer.decode(ids, skip_special_tokens=True)` of the ids put so
far once `finish()` is called (up to a stop string, when one is found). Decoding one token at a time does not give
that text, for two reasons the streamer handles:

- Subword decoders such as Metaspace (ours) drop the leading space of the first token of each decode call, so
  each step decodes a window that starts a few tokens back (`prefix_offset`) and shows only what the tokens after
  `read_offset` add to it. The window moves forward after each step that shows text, so the work per token stays
  bounded (the incremental detokenizers of text-generation-inference and vLLM do the same). Should the window's
  text not extend the text of its first tokens, the whole sequence is decoded instead, which is correct but slow.
- Byte-level BPE (GPT-2's) can split one character over several tokens, and `tokenizers` decodes an incomplete
  character as U+FFFD: text whose decoding ends in U+FFFD is held back until later tokens complete it (or
  `finish()` shows it as it is).

Special tokens (an end-of-turn token, <eos>) produce no text. Stop strings: once the text contains one, the text
before it is shown, `stopped` is set and the rest is dropped; the end of the text that could still become a stop
string is held back until the next tokens settle it, so no part of a stop string is ever shown. `TextTokenizer.
decode` is not used: it ends the text at the first <eos>.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ..data.tokenizer import TextTokenizer
from ..errors import InputError

__all__ = ["TextStreamer", "stream_text"]

CONTEXT_TOKENS = 4  # context ids kept at the start of the window
INCOMPLETE = "\ufffd"  # what `tokenizers` decodes an incomplete (or invalid) UTF-8 sequence to


class TextStreamer:
    """Token ids in (`put`), text out: each call returns the new text that is now safe to show, often "".

    text: all the text returned so far. stopped: a stop string was found; `put` then returns "" and the caller
    should end generation. Call `finish()` at the end for the text still held back.
    """

    def __init__(self, tokenizer: TextTokenizer, stop: Sequence[str] = (), context: Sequence[int] = ()) -> None:
        """stop: strings that end the text (not included in it); none may be empty. context: ids already shown
        (a prompt): the text of the ids put then continues theirs (a word-level tokenizer's space between prompt
        and continuation, a subword's leading space), without showing them again or searching them for stops."""
        if isinstance(stop, str):
            raise InputError("stop must be a list of strings, not a string")
        if any(not s for s in stop):
            raise InputError("stop strings must not be empty")
        self.tokenizer = tokenizer
        self.stop = tuple(stop)
        self.stopped = False
        self.text = ""
        self._decode = tokenizer.tokenizer.decode
        # decode(skip_special_tokens=True) drops these; dropping them here as well keeps them out of the window,
        # where one at its start would make the next token the first of the decode call (and lose its space).
        self._special = {i for i, t in tokenizer.tokenizer.get_added_tokens_decoder().items() if t.special}
        self._ids: list[int] = []  # the non-special ids put so far
        self._prefix_offset = 0  # the window decoded at each step starts here...
        self._read_offset = 0  # ...and the text of the ids before this point has been produced
        self._prefix_text = ""  # decode(ids[prefix_offset:read_offset])
        self._pending = ""  # produced but not shown: it could be the start of a stop string
        self._max_stop = max(map(len, self.stop), default=0)
        self._finished = False
        # The last few context ids start the window: enough for the decoder to place the first new token.
        self._ids = [i for i in context if i not in self._special][-CONTEXT_TOKENS:]
        self._read_offset = len(self._ids)
        self._prefix_text = self._context_text = self._decode(self._ids, skip_special_tokens=True)

    def put(self, token_id: int) -> str:
        """Add one token; the new text that is now safe to show."""
        if self._finished:
            raise RuntimeError("TextStreamer.put after finish()")
        if self.stopped:
            return ""
        token_id = int(token_id)
        if token_id in self._special:
            return ""
        self._ids.append(token_id)
        return self._show(self._detokenize(final=False), final=False)

    def finish(self) -> str:
        """The rest of the text: what was held back (an incomplete character, a possible start of a stop string),
        less any stop string it completes. Later calls return ""."""
        if self._finished or self.stopped:
            self._finished = True
            return ""
        self._finished = True
        return self._show(self._detokenize(final=True), final=True)

    def _detokenize(self, final: bool) -> str:
        """The text that the ids after `read_offset` add, moving the window forward; "" while the text ends in an
        incomplete character (unless final)."""
        if self._read_offset == len(self._ids):
            return ""
        window = self._decode(self._ids[self._prefix_offset :], skip_special_tokens=True)
        if window.startswith(self._prefix_text):
            new = window[len(self._prefix_text) :]
        else:  # the window's decoding is not an extension of its start's: decode everything
            full = self._decode(self._ids, skip_special_tokens=True)
            produced = self._context_text + self.text + self._pending
            # No decoder in `tokenizers` rewrites text it gave for earlier tokens; should one, the text after the
            # part in common is shown, which is the best that can be done once text is on the screen.
            common = produced if full.startswith(produced) else _common_prefix(full, produced)
            new, window = full[len(common) :], full
        if not final and (not new or window.endswith(INCOMPLETE)):
            return ""  # nothing yet, or a character still incomplete: wait for the next token
        self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
        self._prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset], skip_special_tokens=True)
        return new

    def _show(self, new: str, final: bool) -> str:
        """Add `new` to the text held back; return what can be shown of it, stopping at a stop string."""
        pending = self._pending + new
        found = [i for i in (pending.find(s) for s in self.stop) if i >= 0]
        if found:
            piece, self._pending, self.stopped = pending[: min(found)], "", True
        else:
            # Hold back the longest end of the text that is the start of a stop string (shorter than the longest).
            cut = len(pending)
            if not final:
                for i in range(max(0, len(pending) - self._max_stop + 1), len(pending)):
                    if any(s.startswith(pending[i:]) for s in self.stop):
                        cut = i
                        break
            piece, self._pending = pending[:cut], pending[cut:]
        self.text += piece
        return piece


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def stream_text(tokenizer: TextTokenizer, token_ids: Iterable[int], stop: Sequence[str] = ()) -> Iterator[str]:
    """Non-empty pieces of text as the tokens arrive; stops consuming token_ids once a stop string is found."""
    streamer = TextStreamer(tokenizer, stop)
    for token_id in token_ids:
        piece = streamer.put(token_id)
        if piece:
            yield piece
        if streamer.stopped:
            return
    piece = streamer.finish()
    if piece:
        yield piece
