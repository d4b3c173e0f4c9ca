"""The synthetic generator's parameters: one frozen dataclass holding their defaults and checks.

`SyntheticParams` is the single place the parameters are spelled: its fields give the names and
defaults, their metadata the range checks (run in `__post_init__`) and the help the CLI
(sed.data.synthetic.cli) is generated from. `check_params(**params)` builds one from keyword
parameters (a config's `data.generate` block, ensure's keywords) and raises SyntheticError for an
unknown name or a bad value without touching the disk; a message names the parameter, its config
key `data.generate.<name>` and its CLI flag. `as_dict()` is what ROOT/synthetic.json records and
ensure compares (configs/data/synthetic.yaml restates the defaults; a test keeps them equal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from sed.errors import SyntheticError


def _number(default: float, kind: type, lo: float, hi: float, help: str) -> Any:
    """A number field: `kind` (int or float) in [lo, hi]."""
    return field(
        default=default, metadata={"check": "number", "kind": kind, "range": (lo, hi), "help": help}
    )


def _pair(
    default: tuple, kind: type, lo: float, hi: float, metavar: tuple[str, str], help: str
) -> Any:
    """A [low, high] field of `kind` with lo <= low <= high <= hi."""
    metadata = {"check": "pair", "kind": kind, "range": (lo, hi), "metavar": metavar, "help": help}
    return field(default=default, metadata=metadata)


def _flag(default: bool, help: str) -> Any:
    """A true/false field."""
    return field(default=default, metadata={"check": "flag", "kind": bool, "help": help})


def spellings(name: str) -> str:
    """How a user spells parameter `name`: its config key and its CLI flag."""
    return f"config key data.generate.{name}, flag --{name.replace('_', '-')}"


@dataclass(frozen=True)
class SyntheticParams:
    """The parameters of one synthetic set; the same params give bit-identical files.

    Values are checked and normalised on construction (an int-valued float becomes an int, an
    int a float where the field is a float, a pair a tuple); a bad one raises SyntheticError.
    """

    seed: int = _number(
        0, int, 0, 2**63 - 1, "dataset seed: every clip is seeded by (seed, split, index)"
    )
    n_train: int = _number(200, int, 0, math.inf, "clips in the train split")
    n_validation: int = _number(50, int, 0, math.inf, "clips in the validation split")
    n_test: int = _number(50, int, 0, math.inf, "clips in the test split")
    clip_seconds: float = _number(10.0, float, 1.0, 600.0, "length of every clip (s)")
    sample_rate: int = _number(16000, int, 8000, 192000, "sample rate of every clip (Hz)")
    snr_db: tuple[float, float] = _pair(
        (-5.0, 20.0),
        float,
        -30.0,
        60.0,
        ("LOW", "HIGH"),
        "per-event SNR range (dB, in the class's band against the local background)",
    )
    events_per_clip: tuple[int, int] = _pair(
        (2, 6), int, 0, 100, ("MIN", "MAX"), "range of the number of events tried per clip"
    )
    empty_fraction: float = _number(0.04, float, 0.0, 1.0, "share of clips without events")
    max_polyphony: int = _number(3, int, 1, 100, "most events sounding at once")
    background: bool = _flag(
        True, "coloured background noise (default); --no-background renders the events alone"
    )
    sources: bool = _flag(
        True, "per-split sound sources (default); --no-sources writes the version 2 set"
    )

    def __post_init__(self) -> None:
        for spec in fields(self):
            check = spec.metadata["check"]
            value = getattr(self, spec.name)
            if check == "number":
                value = _checked_number(spec.name, value, spec.metadata)
            elif check == "pair":
                value = _checked_pair(spec.name, value, spec.metadata)
            elif not isinstance(value, bool):
                raise SyntheticError(
                    f"synthetic dataset parameter {spec.name}={value!r} must be true or false "
                    f"({spellings(spec.name)})"
                )
            object.__setattr__(self, spec.name, value)

    def as_dict(self) -> dict[str, Any]:
        """The params as synthetic.json records them (pairs as lists, fields in order)."""
        return {
            spec.name: list(value) if isinstance(value, tuple) else value
            for spec in fields(self)
            for value in [getattr(self, spec.name)]
        }


def _checked_number(name: str, value: Any, metadata: Any) -> Any:
    """value as metadata's kind, or SyntheticError unless it is a number in metadata's range."""
    kind, (lo, hi) = metadata["kind"], metadata["range"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SyntheticError(
            f"synthetic dataset parameter {name}={value!r} must be a number ({spellings(name)})"
        )
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise SyntheticError(
            f"synthetic dataset parameter {name}={value!r} must be an integer ({spellings(name)})"
        )
    if not lo <= value <= hi:
        raise SyntheticError(
            f"synthetic dataset parameter {name}={value!r} must be in [{lo}, {hi}] "
            f"({spellings(name)})"
        )
    return kind(value)


def _checked_pair(name: str, value: Any, metadata: Any) -> tuple[Any, Any]:
    """value as a (low, high) tuple of metadata's kind, or SyntheticError."""
    kind, (lo, hi) = metadata["kind"], metadata["range"]
    try:
        a, b = (kind(v) for v in value)
    except (TypeError, ValueError):
        raise SyntheticError(
            f"synthetic dataset parameter {name}={value!r} must be a pair [low, high] "
            f"({spellings(name)})"
        ) from None
    if not lo <= a <= b <= hi:
        raise SyntheticError(
            f"synthetic dataset parameter {name}={[a, b]} must be a pair [low, high] with "
            f"{lo} <= low <= high <= {hi} ({spellings(name)})"
        )
    return a, b


NAMES: tuple[str, ...] = tuple(spec.name for spec in fields(SyntheticParams))
DEFAULTS: dict[str, Any] = {spec.name: spec.default for spec in fields(SyntheticParams)}


def check_params(**params: Any) -> SyntheticParams:
    """SyntheticParams from keyword parameters (defaults for the others), checked; touches no disk.

    Raises SyntheticError naming the parameter (and its config key and CLI flag) at fault, or
    listing the unknown names.
    """
    unknown = sorted(set(params) - set(NAMES))
    if unknown:
        raise SyntheticError(
            f"unknown synthetic dataset parameter(s) {unknown} (under data.generate); "
            f"known: {sorted(NAMES)}"
        )
    return SyntheticParams(**params)
