import math

import pytest
import torch

from transformer_networks.errors import ConfigError
from transformer_networks.training.schedules import constant, cosine, inverse_sqrt, make_scheduler, noam


def test_noam_is_the_papers_equation_3():
    # lrate = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5); base model: d_model 512, warmup 4000.
    for step in (1, 100, 4000, 10_000, 100_000):
        expected = 512**-0.5 * min(step**-0.5, step * 4000**-1.5)
        assert noam(step, 512, 4000) == pytest.approx(expected)
    peak = noam(4000, 512, 4000)
    assert peak == pytest.approx(512**-0.5 * 4000**-0.5)  # about 7.0e-4
    assert noam(3999, 512) < peak and noam(4001, 512) < peak


def test_warmup_schedules_peak_at_one():
    assert inverse_sqrt(100, 100) == 1.0 and inverse_sqrt(400, 100) == pytest.approx(0.5)
    assert inverse_sqrt(50, 100) == pytest.approx(0.5)
    assert cosine(10, 10, 110) == pytest.approx(1.0) and cosine(60, 10, 110) == pytest.approx(0.5)
    assert cosine(110, 10, 110) == pytest.approx(0.0) and cosine(500, 10, 110, min_ratio=0.1) == pytest.approx(0.1)
    assert constant(5, 10) == 0.5 and constant(50, 10) == 1.0 and constant(1) == 1.0


def test_scheduler_drives_the_optimizer():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    sched = make_scheduler(opt, "noam", warmup=10, d_model=64)
    rates = []
    for _ in range(20):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates[0] == pytest.approx(noam(1, 64, 10))
    assert max(rates) == pytest.approx(64**-0.5 / math.sqrt(10)) and rates.index(max(rates)) == 9


def test_unknown_schedule_and_missing_total():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ConfigError, match="noam, inverse_sqrt, cosine, constant"):
        make_scheduler(opt, "linear")
    with pytest.raises(ConfigError, match="total number of steps"):
        make_scheduler(opt, "cosine")
