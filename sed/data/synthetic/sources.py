"""Sound sources of the synthetic set (version 3): the split of source ids and `_Voice`.

Each class has SOURCES_PER_CLASS fixed sources, SOURCE_SPLITS of them heard only in train,
validation or test. A `_Voice` gives a class renderer its identity draws: a free voice (version
2) the whole range of every parameter, a source's voice only its stratum of the class's
Latin-hypercube design (`_design`), with each discrete choice fixed per source.
"""

from __future__ import annotations

import functools
import zlib
from typing import Any

import numpy as np

# Sources (see the module docstring and docs/synthetic.md): source ids 0..SOURCES_PER_CLASS - 1 of
# each class, split by construction (the design's strata are permuted at random, so the order of
# the ids carries nothing).
SOURCES_PER_CLASS = 10
SOURCE_SPLITS: dict[str, range] = {
    "train": range(0, 6),
    "validation": range(6, 8),
    "test": range(8, 10),
}


@functools.lru_cache(maxsize=1024)
def _design(seed: int, label: str, name: str) -> tuple[int, ...]:
    """Stratum of parameter `name` per source of `label` (a permutation of the strata): one
    column of the class's Latin-hypercube design for dataset `seed`."""
    key = zlib.crc32(f"{label}/{name}".encode())
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 3, key]))
    return tuple(int(k) for k in rng.permutation(SOURCES_PER_CLASS))


def source_split(source: int) -> str:
    """The split whose clips use this source id."""
    return next(split for split, ids in SOURCE_SPLITS.items() if source in ids)


class _Voice:
    """Identity draws of one event. Free (source None, version 2): the whole range of every
    parameter, with exactly version 2's rng calls. Of a source: parameter `name` of [lo, hi] only
    inside the source's stratum of the class's design (a 1 / SOURCES_PER_CLASS slice of the
    range), each discrete choice fixed per source and balanced within its split."""

    def __init__(
        self, rng: np.random.Generator, label: str, source: int | None = None, seed: int = 0
    ):
        self.rng, self.label, self.source, self.seed = rng, label, source, seed

    def stratum(self, name: str, lo: float, hi: float) -> tuple[float, float]:
        """The part of [lo, hi] this voice draws parameter `name` from."""
        if self.source is None:
            return lo, hi
        k = _design(self.seed, self.label, name)[self.source]
        step = (hi - lo) / SOURCES_PER_CLASS
        return lo + k * step, lo + (k + 1) * step

    def uniform(self, name: str, lo: float, hi: float, size: int | None = None) -> Any:
        """An identity parameter drawn uniformly from this voice's stratum of [lo, hi]."""
        return self.rng.uniform(*self.stratum(name, lo, hi), size)

    def timbre(self, name: str, lo: float, hi: float, free: float) -> float:
        """A parameter version 2 held constant (`free`, no draw); a source draws it like uniform."""
        return free if self.source is None else float(self.uniform(name, lo, hi))

    def _position(self, name: str) -> float:
        """Where this source sits in (0, 1) among its split's sources, by `name`'s design."""
        ids = SOURCE_SPLITS[source_split(self.source)]
        design = _design(self.seed, self.label, name)
        rank = sorted(design[i] for i in ids).index(design[self.source])
        return (rank + 0.5) / len(ids)

    def choice(self, name: str, p: float) -> bool:
        """True with probability p per event (free), or fixed per source: true for a share of
        about p of each split's sources (with p = 0.4 or 0.5, every split holds both kinds)."""
        if self.source is None:
            return bool(self.rng.random() < p)
        return self._position(name) < p

    def integers(self, name: str, k: int) -> int:
        """One of 0..k-1: per event (free), or fixed per source, spread evenly over each split."""
        if self.source is None:
            return int(self.rng.integers(k))
        return int(self._position(name) * k)
