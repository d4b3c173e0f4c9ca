"""Teacher-forcing schedules: the probability of feeding the true previous labels, per batch.

Every sampler counts batches (``i`` = batches seen so far, advanced by ``.step()`` once per
training batch) and exposes ``.probability`` for the current batch, ``probability_at(i)``,
and ``state_dict()`` / ``load_state_dict()`` for checkpoints. Every sampler takes the keyword
``num_batches`` (training batches per epoch), so that a config (``_partial_: true``) is completed
the same way for all: ``ScheduledSampler`` measures its decay in epochs with it; the others count
batches only and accept it unused.

- ``ScheduledSampler``: the Drossos et al. (2019) schedule of DESIGN.md.
- ``LinearDecay``, ``ExponentialDecay``, ``InverseSigmoidDecay``: the three decays of Bengio et
  al. (2015), "Scheduled Sampling for Sequence Prediction with Recurrent Neural Networks",
  with their ``k`` / ``c`` parameters; the paper's ``i`` is the mini-batch index, as here.
- ``ConstantSampler(p)`` and ``NoSampler()`` (p = 0, the free-running baseline).
"""

from __future__ import annotations

import math
from typing import Any

from sed.errors import SamplerError

__all__ = [
    "SamplerError",
    "TeacherForcingSampler",
    "ScheduledSampler",
    "LinearDecay",
    "ExponentialDecay",
    "InverseSigmoidDecay",
    "ConstantSampler",
    "NoSampler",
]


def _number(name: str, value: Any) -> float:
    """A finite real number (bools rejected), or SamplerError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SamplerError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise SamplerError(f"{name} must be finite, got {value!r}")
    return value


def _probability(name: str, value: Any) -> float:
    """A probability in [0, 1], or SamplerError naming the parameter."""
    value = _number(name, value)
    if not 0.0 <= value <= 1.0:
        raise SamplerError(f"{name} must be a probability in [0, 1], got {value!r}")
    return value


def _bounds(p_min: Any, p_max: Any) -> tuple[float, float]:
    """Validated (p_min, p_max) with p_min <= p_max."""
    lo, hi = _probability("p_min", p_min), _probability("p_max", p_max)
    if lo > hi:
        raise SamplerError(f"p_min must be <= p_max, got p_min={lo!r} > p_max={hi!r}")
    return lo, hi


def _count(name: str, value: Any, minimum: int) -> int:
    """An int >= minimum (bools and non-integral floats rejected)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise SamplerError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise SamplerError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


class TeacherForcingSampler:
    """Base class: a teacher-forcing probability that is a function of batches seen so far."""

    #: constructor parameters, saved in state_dict() and restored by load_state_dict()
    _params: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.batches = 0

    def probability_at(self, i: int) -> float:
        """Teacher-forcing probability after ``i`` batches (i >= 0)."""
        return self._at(_count("i", i, 0))

    def _at(self, i: int) -> float:
        """The schedule itself; subclasses implement it for a validated i >= 0."""
        raise NotImplementedError

    @property
    def probability(self) -> float:
        """Teacher-forcing probability for the current batch."""
        return self._at(self.batches)

    def step(self) -> None:
        """Advance by one batch (call once per training batch, after using .probability)."""
        self.batches += 1

    def state_dict(self) -> dict[str, Any]:
        """Plain-Python state (type, parameters, batches seen) for checkpoints."""
        state: dict[str, Any] = {"type": type(self).__name__, "batches": self.batches}
        state.update({name: getattr(self, name) for name in self._params})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state_dict() of the same sampler type (parameters and batches seen)."""
        kind = state.get("type")
        if kind != type(self).__name__:
            raise SamplerError(
                f"state_dict is for sampler type {kind!r}, cannot load into {type(self).__name__}"
            )
        missing = [k for k in ("batches", *self._params) if k not in state]
        if missing:
            raise SamplerError(f"state_dict lacks {missing} for {type(self).__name__}")
        fresh = type(self)(**{name: state[name] for name in self._params})  # validates params
        batches = _count("batches", state["batches"], 0)
        self.__dict__.update(fresh.__dict__)
        self.batches = batches

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._params)
        return f"{type(self).__name__}({args}; batches={self.batches})"


class ScheduledSampler(TeacherForcingSampler):
    """Drossos et al. (2019): p = min(p_max, 1 - min(1 - p_min, 2 / (1 + exp(beta)) - 1)).

    beta = -gamma * i / num_batches with i the batches seen so far; p starts at p_max and decays
    towards p_min (num_batches is typically the batches per epoch, so gamma sets the speed in
    epochs).
    """

    _params = ("num_batches", "gamma", "p_min", "p_max")

    def __init__(self, num_batches: int, gamma: float, p_min: float, p_max: float) -> None:
        super().__init__()
        self.num_batches = _count("num_batches", num_batches, 1)
        self.gamma = _number("gamma", gamma)
        if self.gamma < 0:
            raise SamplerError(f"gamma must be >= 0, got {gamma!r}")
        self.p_min, self.p_max = _bounds(p_min, p_max)

    def _at(self, i: int) -> float:
        """The DESIGN.md formula; beta <= 0, so exp(beta) never overflows (it underflows to 0).

        The outer max(p_min, ...) only absorbs rounding (1 - (1 - p_min) can land 1 ulp below
        p_min); mathematically the formula never goes below p_min.
        """
        beta = -self.gamma * i / self.num_batches
        decay = 2.0 / (1.0 + math.exp(beta)) - 1.0
        return max(self.p_min, min(self.p_max, 1.0 - min(1.0 - self.p_min, decay)))


class _BengioDecay(TeacherForcingSampler):
    """Bengio et al. (2015) decays: one rate parameter (`_rate`) and the [p_min, p_max] clip."""

    _rate = ""
    _params: tuple[str, ...] = ()

    def __init__(
        self, rate: float, p_min: float = 0.0, p_max: float = 1.0, *, num_batches: int | None = None
    ) -> None:
        super().__init__()
        value = _number(self._rate, rate)
        problem = self._check(value)
        if problem:
            raise SamplerError(f"{self._rate} {problem}, got {rate!r}")
        setattr(self, self._rate, value)
        self.p_min, self.p_max = _bounds(p_min, p_max)

    @staticmethod
    def _check(value: float) -> str:
        """What is wrong with the rate parameter, or "" when it is fine."""
        return ""


class LinearDecay(_BengioDecay):
    """Bengio et al. (2015) linear decay: p = max(p_min, p_max - c * i).

    The paper's offset k is p_max and its floor epsilon is p_min; c = (p_max - p_min) / N reaches
    p_min after N batches.
    """

    _rate, _params = "c", ("c", "p_min", "p_max")

    def __init__(self, c: float, p_min: float = 0.0, p_max: float = 1.0, **kw) -> None:
        super().__init__(c, p_min, p_max, **kw)

    @staticmethod
    def _check(value: float) -> str:
        return "" if value >= 0 else "(the slope per batch) must be >= 0"

    def _at(self, i: int) -> float:
        """max(p_min, p_max - c * i)."""
        return max(self.p_min, self.p_max - self.c * i)


class ExponentialDecay(_BengioDecay):
    """Bengio et al. (2015) exponential decay: p = max(p_min, p_max * k**i) with 0 < k <= 1.

    The paper's form is k**i (p_max = 1, p_min = 0).
    """

    _rate, _params = "k", ("k", "p_min", "p_max")

    def __init__(self, k: float, p_min: float = 0.0, p_max: float = 1.0, **kw) -> None:
        super().__init__(k, p_min, p_max, **kw)

    @staticmethod
    def _check(value: float) -> str:
        return "" if 0.0 < value <= 1.0 else "must be in (0, 1] for exponential decay"

    def _at(self, i: int) -> float:
        """max(p_min, p_max * k**i); k**i underflows to 0 for huge i without an error."""
        return max(self.p_min, self.p_max * self.k**i)


class InverseSigmoidDecay(_BengioDecay):
    """Bengio et al. (2015) inverse sigmoid decay: p = k / (k + exp(i / k)), k >= 1.

    Clipped to [p_min, p_max] (defaults 0 and 1: the paper's form). Larger k decays later.
    """

    _rate, _params = "k", ("k", "p_min", "p_max")

    def __init__(self, k: float, p_min: float = 0.0, p_max: float = 1.0, **kw) -> None:
        super().__init__(k, p_min, p_max, **kw)

    @staticmethod
    def _check(value: float) -> str:
        return "" if value >= 1.0 else "must be >= 1 for inverse sigmoid decay"

    def _at(self, i: int) -> float:
        """k / (k + exp(i/k)) = sigmoid(log k - i/k), evaluated without overflow for huge i."""
        z = i / self.k - math.log(self.k)
        if z >= 0:
            e = math.exp(-z)
            p = e / (1.0 + e)
        else:
            p = 1.0 / (1.0 + math.exp(z))
        return min(self.p_max, max(self.p_min, p))


class ConstantSampler(TeacherForcingSampler):
    """The same teacher-forcing probability p for every batch (p = 1: plain teacher forcing)."""

    _params = ("p",)

    def __init__(self, p: float, *, num_batches: int | None = None) -> None:
        super().__init__()
        self.p = _probability("p", p)

    def _at(self, i: int) -> float:
        """p, whatever i."""
        return self.p


class NoSampler(ConstantSampler):
    """No teacher forcing (p = 0): the model always sees its own previous predictions."""

    _params = ()

    def __init__(self, *, num_batches: int | None = None) -> None:
        super().__init__(0.0)
