"""Time to first token over a long conversation: the KV cache kept between turns against the history re-encoded.

    python bench/chat.py                 # 12 turns, a 6-layer 384-wide model (random weights: timing only)
    python bench/chat.py --no-write      # print only

A chat session (`inference.ChatSession`) keeps its conversation's KV cache between turns, so turn k prefills only
its own new tokens (the last reply's end of turn, the user message, the assistant marker). Peers that reset the
cache every turn re-encode the whole history first, which grows with every turn. Both sides here run the same
model through the same `generation.incremental.next_tokens`: "kept" feeds the new tokens after the cache, "re-encoded"
empties the cache and feeds the whole conversation, as a stateless server does. Each turn: a user message of
`--user` tokens, then a reply of exactly `--reply` tokens (no stop token, so every round does the same work); the
time to first token is from the call to the first token chosen. The sides alternate turn by turn over --rounds
conversations; medians per turn. Writes its block of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from harness import footer, write_block

from transformer_networks.backends import use_onednn
from transformer_networks.config import TransformerConfig
from transformer_networks.generation.incremental import next_tokens
from transformer_networks.models import TransformerLM

SCRIPT = "bench/chat.py"


def conversation_times(model: TransformerLM, turns: int, user: int, reply: int, seed: int) -> dict[str, list[float]]:
    """Seconds to the first token of each turn, with the cache kept and with the history re-encoded."""
    g = torch.Generator().manual_seed(seed)
    vocab = model.cfg.vocab_size
    messages = [torch.randint(10, vocab, (user,), generator=g).tolist() for _ in range(turns)]
    out: dict[str, list[float]] = {"kept": [], "re-encoded": []}
    for side in out:
        cache = model.init_cache(1)
        history: list[int] = []
        for k in range(turns):
            history += [1, *messages[k], 2, 3]  # end of the last reply (a stand-in id), the message, the marker
            if side == "re-encoded":
                cache.reset()
            start = time.perf_counter()
            tokens = next_tokens(model, cache, history[cache.length :], max_new_tokens=reply)
            first = next(tokens)
            out[side].append(time.perf_counter() - start)
            history += [first, *tokens]  # the rest of the reply (its last token not fed, as in a session)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=12)
    parser.add_argument("--user", type=int, default=40, help="tokens per user message (default 40)")
    parser.add_argument("--reply", type=int, default=60, help="tokens per reply (default 60)")
    parser.add_argument("--rounds", type=int, default=5, help="conversations per side (default 5)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = TransformerConfig.from_preset(
        "gpt2-small", n_layers=6, d_model=384, n_heads=6, d_ff=1536, vocab_size=8000, max_seq_len=2048, dropout=0.0
    )
    model = TransformerLM(cfg).eval()
    use_onednn(model)  # as the chat command runs it on a CPU
    conversation_times(model, 2, args.user, args.reply, seed=99)  # warm-up
    runs = [conversation_times(model, args.turns, args.user, args.reply, seed=r) for r in range(args.rounds)]
    median = {
        side: [statistics.median(r[side][k] for r in runs) for k in range(args.turns)]
        for side in ("kept", "re-encoded")
    }
    rows = [
        "| turn | history tokens | kept: ms to first token | re-encoded: ms | re-encoded / kept |",
        "|---|---|---|---|---|",
    ]
    per_turn = args.user + 3 + args.reply
    for k in range(args.turns):
        kept, again = median["kept"][k] * 1000, median["re-encoded"][k] * 1000
        rows.append(f"| {k + 1} | {k * per_turn + args.user + 3:,} | {kept:.1f} | {again:.1f} | {again / kept:.2f} |")
    last = min(10, args.turns)  # the target compares turn 10 with turn 1
    kept_growth = median["kept"][last - 1] / median["kept"][0]
    again_growth = median["re-encoded"][last - 1] / median["re-encoded"][0]
    text = "\n".join(
        [
            "### Chat: time to first token as the conversation grows",
            "",
            *rows,
            "",
            f"- Result: turn {last} / turn 1 time to first token **{kept_growth:.2f}x** with the cache kept between "
            f"turns (target <= 1.5x), {again_growth:.2f}x with the history re-encoded every turn",
            f"- Setup: a 6-layer, 384-wide, 6-head TransformerLM (gpt2-small's architecture at nanoGPT's size, "
            f"vocabulary 8,000, context 2,048; random weights: the timing does not depend on them), float32, batch 1; "
            f"each turn a {args.user}-token user message and a {args.reply}-token reply; both sides through "
            f"`next_tokens`, medians over {args.rounds} conversations",
            *footer(SCRIPT),
        ]
    )
    print(text)
    if not args.no_write:
        write_block("chat-ttft", text, script="chat")


if __name__ == "__main__":
    main()
