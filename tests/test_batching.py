import random

import numpy as np
import pytest
import torch

from transformer_networks.data.batching import (
    LazyBatches,
    length_grouped_batches,
    pack_blocks,
    pad_batch,
    token_budget_batches,
)
from transformer_networks.errors import UserError


def test_pad_batch():
    out = pad_batch([[5, 6, 7], [8]], pad_id=0)
    assert out.tolist() == [[5, 6, 7], [8, 0, 0]] and out.dtype == torch.long


def test_token_budget_batches_respect_the_budget_and_cover_every_example():
    rng = random.Random(0)
    lengths = [rng.randint(1, 40) for _ in range(500)]
    for shuffle in (False, True):
        batches = token_budget_batches(lengths, max_tokens=200, shuffle=shuffle, seed=3)
        assert sorted(i for b in batches for i in b) == list(range(500))
        for b in batches:
            assert max(lengths[i] for i in b) * len(b) <= 200
        # Bucketing keeps padding low: at most 15% of the padded tokens are padding.
        padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
        assert sum(lengths) / padded > 0.85
    assert token_budget_batches(lengths, 200, shuffle=True, seed=3) == token_budget_batches(
        lengths, 200, shuffle=True, seed=3
    )
    assert token_budget_batches(lengths, 200, shuffle=True, seed=4) != token_budget_batches(
        lengths, 200, shuffle=True, seed=3
    )


def test_token_budget_refuses_examples_that_never_fit():
    with pytest.raises(UserError, match="longer than --max-tokens=10"):
        token_budget_batches([3, 12], max_tokens=10)


def test_pack_blocks_predicts_the_next_token():
    inputs, targets = pack_blocks(list(range(23)), block_size=5)
    assert inputs.shape == targets.shape == (4, 5)
    assert inputs[1].tolist() == [5, 6, 7, 8, 9] and targets[1].tolist() == [6, 7, 8, 9, 10]
    assert torch.equal(targets[:, :-1], inputs[:, 1:])
    with pytest.raises(UserError, match="too short"):
        pack_blocks([1, 2, 3], block_size=5)


def test_pad_batch_puts_prefix_and_suffix_around_lists_and_arrays():
    out = pad_batch([[5, 6], np.array([7], dtype=np.int32)], pad_id=0, prefix=2, suffix=3)
    assert out.tolist() == [[2, 5, 6, 3], [2, 7, 3, 0]]
    assert pad_batch([np.array([4, 4], dtype=np.int32), [9]], pad_id=1).tolist() == [[4, 4], [9, 1]]
    # an empty row, a negative padding value (-100: a position the loss skips), a suffix alone
    assert pad_batch([[], [7, 8]], pad_id=-100, suffix=1).tolist() == [[1, -100, -100], [7, 8, 1]]
    assert pad_batch([[6], []], pad_id=0, prefix=2).tolist() == [[2, 6], [2, 0]]


def test_lazy_batches_collate_each_group_when_indexed():
    made = []

    def collate(group):
        made.append(group)
        return {"ids": torch.tensor(group)}

    batches = LazyBatches([[0, 1], [2], [3, 4, 5]], collate)
    assert len(batches) == 3 and made == []  # nothing made up front
    assert batches[-1]["ids"].tolist() == [3, 4, 5] and made == [[3, 4, 5]]
    assert [b["ids"].tolist() for b in batches[0:2]] == [[0, 1], [2]]
    assert [b["ids"].tolist() for b in batches] == [[0, 1], [2], [3, 4, 5]]
    with pytest.raises(IndexError):
        batches[3]


def test_length_grouped_batches_pad_less_and_keep_every_example_once():
    rng = random.Random(0)
    lengths = [rng.randint(5, 300) for _ in range(1003)]
    order = list(range(1003))
    random.Random(1).shuffle(order)
    batches = length_grouped_batches(lengths, 8, order, random.Random(2), pool=10)
    assert sorted(i for b in batches for i in b) == list(range(1003))
    assert [len(b) for b in batches[:-1]] == [8] * 125 and len(batches[-1]) == 3  # only the last is short

    def padded(groups):
        return sum(max(lengths[i] for i in b) * len(b) for b in groups)

    plain = [order[s : s + 8] for s in range(0, 1003, 8)]
    assert sum(lengths) / padded(batches) > 0.9 > 0.7 > sum(lengths) / padded(plain)
    # Each pool of 10 batches (80 examples of `order`) is sorted within itself: a batch never mixes pools.
    pool_of = {i: k // 80 for k, i in enumerate(order)}
    assert all(len({pool_of[i] for i in b}) == 1 for b in batches)
    # The batches are shuffled: not in the order of their pools, longest first.
    firsts = [pool_of[b[0]] for b in batches[:-1]]
    assert firsts != sorted(firsts)
    assert batches == length_grouped_batches(lengths, 8, order, random.Random(2), pool=10)
