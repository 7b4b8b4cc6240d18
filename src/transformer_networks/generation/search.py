"""Search strategies over a `Steps` object: greedy / sampling, and beam search.

Both return, per row, the generated tokens (EOS included when produced) and a score. Shapes: B inputs, K beams,
N rows (B * K, or B * samples per input), V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .logits import process_logits, sample
from .steps import LMSteps, Seq2SeqSteps

Steps = LMSteps | Seq2SeqSteps


@dataclass
class Hypothesis:
    tokens: list[int]  # generated tokens, EOS included when the hypothesis ended with one
    score: float  # beam search: log-probability / length penalty; greedy and sampling: log-probability


def _at_least_float32(logits: Tensor) -> Tensor:
    """Scores are computed in float32 (float64 for a float64 model), whatever the model's precision."""
    if logits.dtype in (torch.float32, torch.float64):
        return logits  # (no call: greedy decoding of a small model makes every call per token count)
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


# How often greedy / sampling asks whether every row has finished. The answer is a read back from the device, so on
# a GPU each question stalls the host until the queued steps have run; asking every few tokens keeps the queue full
# and decodes at most EOS_CHECK_EVERY - 1 tokens too many once the last row has ended (they are dropped, so the
# output is the same). On a CPU the read costs nothing and every token is checked.
EOS_CHECK_EVERY = 8


def _eos_check_every(device: torch.device | None) -> int:
    return 1 if device is None or device.type == "cpu" else EOS_CHECK_EVERY


def gnmt_length_penalty(length: int, alpha: float) -> float:
    """((5 + length) / 6) ^ alpha (Wu et al. 2016, the GNMT paper); a hypothesis's score is its log-probability
    divided by this. alpha = 0 ranks by log-probability alone; larger alpha favours longer outputs."""
    return ((5.0 + length) / 6.0) ** alpha


@torch.no_grad()
def greedy_or_sample(
    steps: Steps,
    n_rows: int,
    *,
    max_new_tokens: int,
    min_new_tokens: int = 0,
    eos_id: int | None = None,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> list[Hypothesis]:
    """Each row takes the most likely token (greedy) or a sampled one, until EOS or `max_new_tokens`. The score
    is the model's own log-probability of the tokens taken (before temperature, filtering or the EOS ban of
    `min_new_tokens`)."""
    logits = steps.first() if max_new_tokens > 0 else None
    device = logits.device if logits is not None else None
    # Tokens and scores stay on the model's device until the end: without an EOS no step waits for the device.
    finished = torch.zeros(n_rows, dtype=torch.bool, device=device)
    score_dtype = torch.float32 if device is not None and device.type == "mps" else torch.float64  # MPS has no f64
    scores = torch.zeros(n_rows, dtype=score_dtype, device=device)
    taken: list[Tensor] = []
    check_every = _eos_check_every(device)
    for t in range(max_new_tokens):
        assert logits is not None  # max_new_tokens > 0: steps.first() ran
        logits = _at_least_float32(logits)
        allowed = logits
        if eos_id is not None and t < min_new_tokens:
            allowed = logits.clone()  # EOS may not be taken yet, but the score stays the model's own
            allowed[:, eos_id] = float("-inf")
        if do_sample:
            tokens = sample(process_logits(allowed, temperature=temperature, top_k=top_k, top_p=top_p), generator)
        else:
            tokens = allowed.argmax(dim=-1)
        logp = logits.log_softmax(dim=-1).gather(1, tokens[:, None]).squeeze(1)  # (N,)
        if eos_id is None:  # no row can finish early
            scores += logp
            taken.append(tokens)
        else:
            scores += logp.masked_fill(finished, 0.0)
            taken.append(tokens.masked_fill(finished, -1))
            finished |= tokens == eos_id
            if (t + 1) % check_every == 0 and bool(finished.all()):
                break
        if t == max_new_tokens - 1:
            break
        logits = steps.next(tokens)
    rows = torch.stack(taken, dim=1).tolist() if taken else [[] for _ in range(n_rows)]
    return [Hypothesis([x for x in row if x >= 0], float(s)) for row, s in zip(rows, scores.tolist(), strict=True)]


@torch.no_grad()
def beam_search(
    steps: Steps,
    batch_size: int,
    num_beams: int,
    *,
    max_new_tokens: int,
    min_new_tokens: int = 0,
    eos_id: int | None = None,
    length_penalty: float = 1.0,
) -> list[list[Hypothesis]]:
    """Beam search, batched: K = num_beams rows per input, ordered input by input (row b * K + k).

    Each step extends every live beam by every token, and keeps the K best non-finished candidates; a candidate
    ending in EOS is set aside as a finished hypothesis with score log p / gnmt_length_penalty(length). An input is
    done when it has K finished hypotheses and no live beam can still beat the worst of them (log p only falls as
    a beam grows, so its best possible final score is log p over the largest penalty it may still reach; the
    paper's tensor2tensor code stops on the same bound). At `max_new_tokens` the live beams are finished as they
    are. Returns each input's finished hypotheses, best first.
    """
    B, K = batch_size, num_beams
    n = B * K
    logits = steps.first() if max_new_tokens > 0 else None
    if logits is None:
        return [[] for _ in range(B)]
    device, dtype = logits.device, _at_least_float32(logits).dtype
    # Scores stay on the model's device; only the 2K best candidates per input come back to the CPU each step.
    beam_scores = torch.full((B, K), float("-inf"), dtype=dtype, device=device)
    beam_scores[:, 0] = 0.0  # all K rows start identical: only one of them may spread, or the beams would repeat
    beam_scores = beam_scores.view(n)
    history = torch.empty(n, 0, dtype=torch.long)  # (N, t) tokens of each live beam
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    done = [False] * B

    def penalty(length: int) -> float:
        return gnmt_length_penalty(length, length_penalty)

    def add(b: int, tokens: list[int], logp: float) -> None:
        hyps = finished[b]
        hyps.append(Hypothesis(tokens, logp / penalty(len(tokens))))
        hyps.sort(key=lambda h: -h.score)
        del hyps[K:]

    for t in range(max_new_tokens):
        logp = logits.to(dtype).log_softmax(dim=-1)  # (N, V)
        V = logp.size(1)
        if eos_id is not None and t < min_new_tokens:
            logp[:, eos_id] = float("-inf")
        candidates = (beam_scores[:, None] + logp).view(B, K * V)
        top = candidates.topk(min(2 * K, K * V), dim=1)  # (B, 2K): enough for K non-EOS
        top_scores, top_index = top.values.tolist(), top.indices.tolist()
        rows, tokens, scores = [], [], []
        last = t == max_new_tokens - 1
        for b in range(B):
            chosen = 0
            if not done[b]:
                for s, index in zip(top_scores[b], top_index[b], strict=True):
                    if s == float("-inf") or chosen == K:
                        break
                    row, token = b * K + index // V, index % V
                    if token == eos_id:
                        add(b, history[row].tolist() + [token], s)
                        continue
                    rows.append(row)
                    tokens.append(token)
                    scores.append(s)
                    chosen += 1
            for _ in range(K - chosen):  # a dead slot: any row of this input, never chosen again
                rows.append(b * K)
                tokens.append(eos_id if eos_id is not None else 0)
                scores.append(float("-inf"))
            if done[b]:
                continue
            live = [s for s in scores[-K:] if s != float("-inf")]
            if last:  # out of room: the live beams are finished as they are
                for row, token, s in zip(rows[-K:], tokens[-K:], scores[-K:], strict=True):
                    if s != float("-inf"):
                        add(b, history[row].tolist() + [token], s)
                done[b] = True
            elif not live:
                done[b] = True
            elif len(finished[b]) == K:
                # A live beam ends at a length between t + 2 and max_new_tokens; the penalty is monotonic in it.
                best_possible = max(max(live) / penalty(t + 2), max(live) / penalty(max_new_tokens))
                done[b] = finished[b][-1].score >= best_possible
        if all(done):
            break
        index = torch.tensor(rows)
        beam_scores = torch.tensor(scores, dtype=dtype, device=device)
        next_tokens = torch.tensor(tokens)
        history = torch.cat([history[index], next_tokens[:, None]], dim=1)
        steps.reorder(index.to(device))
        logits = steps.next(next_tokens.to(device))
    return finished
