"""Teacher-forcing schedules: the DESIGN.md formula, Bengio et al. (2015) decays, state."""

import math
import warnings

import numpy as np
import pytest

from sed.sampling import (
    ConstantSampler,
    ExponentialDecay,
    InverseSigmoidDecay,
    LinearDecay,
    NoSampler,
    SamplerError,
    ScheduledSampler,
    TeacherForcingSampler,
)


def design_formula(i, num_batches, gamma, p_min, p_max):
    """DESIGN.md, written out independently with numpy."""
    beta = -gamma * i / num_batches
    return min(p_max, 1 - min(1 - p_min, 2 / (1 + np.exp(beta)) - 1))


def advance(sampler, n):
    for _ in range(n):
        sampler.step()
    return sampler


@pytest.mark.parametrize("gamma,p_min,p_max", [(1.0, 0.1, 0.9), (12.0, 0.0, 1.0), (0.3, 0.25, 1.0)])
def test_scheduled_sampler_matches_formula_at_0_N_10N_100N(gamma, p_min, p_max):
    n = 10
    s = ScheduledSampler(n, gamma, p_min, p_max)
    seen = 0
    for i in (0, n, 10 * n, 100 * n):
        advance(s, i - seen)
        seen = i
        assert s.batches == i
        assert s.probability == pytest.approx(design_formula(i, n, gamma, p_min, p_max), abs=1e-12)
        assert s.probability_at(i) == s.probability


def test_scheduled_sampler_hand_values():
    s = ScheduledSampler(10, 1.0, 0.1, 0.9)
    assert s.probability == 0.9  # starts at p_max
    # i = N: beta = -1, 2 / (1 + e^-1) - 1 = tanh(1/2)
    assert s.probability_at(10) == pytest.approx(1 - math.tanh(0.5), abs=1e-12)
    assert s.probability_at(100) == pytest.approx(0.1)  # decayed to p_min
    assert s.probability_at(10**15) == pytest.approx(0.1)
    # gamma = 0 never decays
    assert ScheduledSampler(10, 0.0, 0.1, 0.9).probability_at(10**6) == 0.9


def all_samplers():
    return [
        ScheduledSampler(50, 5.0, 0.2, 0.95),
        LinearDecay(0.01, p_min=0.1, p_max=0.9),
        ExponentialDecay(0.97, p_min=0.05, p_max=1.0),
        InverseSigmoidDecay(20.0, p_min=0.0, p_max=0.8),
        ConstantSampler(0.4),
        NoSampler(),
    ]


@pytest.mark.parametrize("sampler", all_samplers(), ids=lambda s: type(s).__name__)
def test_monotone_and_bounded(sampler):
    assert isinstance(sampler, TeacherForcingSampler)
    lo, hi = getattr(sampler, "p_min", 0.0), getattr(sampler, "p_max", 1.0)
    values = []
    for _ in range(400):
        values.append(sampler.probability)
        sampler.step()
    values = np.array(values)
    assert np.all(np.diff(values) <= 0), "teacher-forcing probability increased"
    assert np.all((values >= lo) & (values <= hi))
    assert np.all((values >= 0) & (values <= 1))


@pytest.mark.parametrize("sampler", all_samplers(), ids=lambda s: type(s).__name__)
def test_huge_iteration_is_safe(sampler):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i in (10**6, 10**12, 10**18):
            p = sampler.probability_at(i)
            assert 0.0 <= p <= 1.0 and math.isfinite(p)
    if not isinstance(sampler, ConstantSampler):
        assert sampler.probability_at(10**18) == pytest.approx(sampler.p_min)


def test_bengio_decays():
    lin = LinearDecay(0.002, p_min=0.2, p_max=0.9)
    assert lin.probability_at(0) == 0.9
    assert lin.probability_at(100) == pytest.approx(0.9 - 0.2)
    assert lin.probability_at(349) == pytest.approx(0.202)
    assert lin.probability_at(1000) == 0.2  # floor epsilon

    exp = ExponentialDecay(0.99)
    assert exp.probability_at(0) == 1.0
    assert exp.probability_at(50) == pytest.approx(0.99**50)
    assert ExponentialDecay(0.5, p_min=0.1).probability_at(10) == 0.1

    inv = InverseSigmoidDecay(100.0)
    for i in (0, 10, 100, 500, 2000):
        assert inv.probability_at(i) == pytest.approx(100 / (100 + math.exp(i / 100)), rel=1e-12)
    assert InverseSigmoidDecay(100.0, p_max=0.5).probability_at(0) == 0.5
    assert InverseSigmoidDecay(1.0, p_min=0.3).probability_at(50) == 0.3


def test_constant_and_none():
    assert ConstantSampler(1.0).probability == 1.0
    assert advance(ConstantSampler(0.7), 1000).probability == 0.7
    none = NoSampler()
    assert none.probability == 0.0
    assert advance(none, 5).probability == 0.0


@pytest.mark.parametrize(
    "make,name",
    [
        (lambda: ScheduledSampler(0, 1.0, 0.1, 0.9), "num_batches"),
        (lambda: ScheduledSampler(-3, 1.0, 0.1, 0.9), "num_batches"),
        (lambda: ScheduledSampler(2.5, 1.0, 0.1, 0.9), "num_batches"),
        (lambda: ScheduledSampler(10, -1.0, 0.1, 0.9), "gamma"),
        (lambda: ScheduledSampler(10, float("nan"), 0.1, 0.9), "gamma"),
        (lambda: ScheduledSampler(10, 1.0, 0.9, 0.1), "p_min"),
        (lambda: ScheduledSampler(10, 1.0, -0.1, 0.9), "p_min"),
        (lambda: ScheduledSampler(10, 1.0, 0.1, 1.5), "p_max"),
        (lambda: ScheduledSampler(10, 1.0, "a", 0.9), "p_min"),
        (lambda: LinearDecay(-0.1), "c"),
        (lambda: LinearDecay(0.1, p_min=0.5, p_max=0.4), "p_min"),
        (lambda: ExponentialDecay(1.5), "k"),
        (lambda: ExponentialDecay(0.0), "k"),
        (lambda: InverseSigmoidDecay(0.5), "k"),
        (lambda: ConstantSampler(1.01), "p"),
        (lambda: ConstantSampler(True), "p"),
        (lambda: ScheduledSampler(10, 1.0, 0.1, 0.9).probability_at(-1), "i"),
    ],
)
def test_bad_values_rejected(make, name):
    with pytest.raises(SamplerError, match=rf"\b{name}\b") as info:
        make()
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("sampler", all_samplers(), ids=lambda s: type(s).__name__)
def test_state_round_trip(sampler):
    advance(sampler, 37)
    state = sampler.state_dict()
    assert state["batches"] == 37 and state["type"] == type(sampler).__name__
    # a fresh sampler of the same type with other parameters takes on the saved ones
    fresh = {
        ScheduledSampler: lambda: ScheduledSampler(1, 0.0, 0.0, 1.0),
        LinearDecay: lambda: LinearDecay(0.5),
        ExponentialDecay: lambda: ExponentialDecay(0.5),
        InverseSigmoidDecay: lambda: InverseSigmoidDecay(1.0),
        ConstantSampler: lambda: ConstantSampler(0.0),
        NoSampler: NoSampler,
    }[type(sampler)]()
    fresh.load_state_dict(state)
    assert fresh.batches == 37
    for _ in range(5):
        assert fresh.probability == sampler.probability
        fresh.step()
        sampler.step()
    assert fresh.state_dict() == sampler.state_dict()


def test_load_state_rejects_other_type_and_bad_state():
    state = advance(ScheduledSampler(10, 1.0, 0.1, 0.9), 3).state_dict()
    with pytest.raises(SamplerError, match="ScheduledSampler"):
        LinearDecay(0.1).load_state_dict(state)
    with pytest.raises(SamplerError, match="batches"):
        ScheduledSampler(10, 1.0, 0.1, 0.9).load_state_dict({**state, "batches": -1})
    with pytest.raises(SamplerError, match="p_min"):
        ScheduledSampler(10, 1.0, 0.1, 0.9).load_state_dict({**state, "p_min": 0.95})


@pytest.mark.parametrize("sampler", all_samplers(), ids=lambda s: type(s).__name__)
def test_every_sampler_takes_num_batches(sampler):
    """configs/sampler/*.yaml are `_partial_`; sed.train completes each with num_batches=N, which
    sets ScheduledSampler's epoch length and leaves the batch-counting schedules as they are."""
    params = {name: getattr(sampler, name) for name in sampler._params if name != "num_batches"}
    built = type(sampler)(**params, num_batches=40)
    if isinstance(sampler, ScheduledSampler):
        assert built.num_batches == 40
        assert built.probability_at(80) == sampler.probability_at(100)  # 2 epochs of each
    else:
        assert [built.probability_at(i) for i in (0, 7, 400)] == [
            sampler.probability_at(i) for i in (0, 7, 400)
        ]
