import pytest
import torch
import torch.nn.functional as F

from transformer_networks.training.losses import label_smoothed_cross_entropy


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g)
    targets = torch.randint(1, 11, (3, 5), generator=g)
    targets[0, 3:] = 0  # padding
    targets[2, 1:] = 0
    return logits, targets


def test_without_smoothing_equals_cross_entropy_ignoring_padding(batch):
    logits, targets = batch
    expected = F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1), ignore_index=0)
    got = label_smoothed_cross_entropy(logits, targets, ignore_index=0)
    torch.testing.assert_close(got, expected)
    expected_sum = F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1), ignore_index=0, reduction="sum")
    torch.testing.assert_close(
        label_smoothed_cross_entropy(logits, targets, ignore_index=0, reduction="sum"), expected_sum
    )


def test_smoothing_over_all_classes_equals_pytorch(batch):
    logits, targets = batch
    expected = F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1), ignore_index=0, label_smoothing=0.1)
    got = label_smoothed_cross_entropy(logits, targets, smoothing=0.1, ignore_index=0)
    torch.testing.assert_close(got, expected)


def test_smoothing_gives_padding_no_mass(batch):
    # The target distribution of the Annotated Transformer: 0.9 on the truth, 0.1 / (V - 2) on every class that is
    # neither the truth nor padding, 0 on padding; the loss is its cross-entropy with the model.
    logits, targets = batch
    V, eps = 11, 0.1
    dist = torch.full((15, V), eps / (V - 2))
    flat = targets.reshape(-1)
    dist[torch.arange(15), flat] = 1 - eps
    dist[:, 0] = 0
    keep = flat != 0
    per_position = -(dist * F.log_softmax(logits.reshape(-1, V), -1)).sum(-1)
    expected = per_position[keep].mean()
    got = label_smoothed_cross_entropy(logits, targets, smoothing=eps, ignore_index=0, pad_class=0)
    torch.testing.assert_close(got, expected)
