"""sed_scores_eval's intermediate statistics (PSDS, collar F1 from scores), computed per detection.

sed_scores_eval evaluates, for every file and class, every detection at every distinct score: a
[distinct scores, local maxima] matrix of detections, each compared with every reference event.
Both sides grow with a file's length, so a 10-minute file (30000 frames) takes minutes and
gigabytes. The same numbers follow from the detections themselves. As the threshold falls
through a file's distinct scores, each frame that switches on creates one run of frames (new,
extended, or two merged), so a file and class has at most T distinct detections (`Runs`), each
alive over a range of thresholds. Whether a run is a relevant detection (DTC), a cross trigger
(CTTC) or a collar hit does not depend on the threshold: it is computed once per run with
sed_scores_eval's own arithmetic (the same float operations, rounded to ``time_decimals``), and
the count at a threshold is the number of such runs alive there. Only the ground-truth criterion
(the intersection of a reference event with the relevant detections alive at a threshold) and the
collar matching look at several detections at once; they are evaluated wherever the detections
touching one reference event change.

The output is sed_scores_eval's ``deltas`` (per file and class: change-point scores and the change
of each statistic there), which its ``psds`` / ``fscore`` functions take as given. The tests check
the resulting PSDS and F1 against sed_scores_eval computing everything itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
from tqdm.auto import tqdm

__all__ = [
    "Runs",
    "collar_statistics",
    "file_deltas",
    "intersection_statistics",
    "runs",
    "score_deltas",
]

Statistics = Callable[..., dict]
_BLOCK = 1 << 22  # elements of a [runs, events] array computed at once (bounds memory)


@dataclass
class Runs:
    """Every detection of one score curve over all thresholds. `levels` are the distinct scores
    (ascending); run n spans frames [start, stop) and is a detection at threshold levels[b] for
    death < b <= birth (death -1: down to the lowest score)."""

    levels: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    birth: np.ndarray
    death: np.ndarray

    def count(self, weight: np.ndarray | None = None) -> np.ndarray:
        """Per level, the number (or summed integer `weight`) of runs alive there."""
        w = np.ones(len(self.start), np.int64) if weight is None else weight.astype(np.int64)
        diff = np.zeros(len(self.levels) + 1, np.int64)
        np.add.at(diff, self.birth, w)
        dies = self.death >= 0
        np.add.at(diff, self.death[dies], -w[dies])
        return np.cumsum(diff[::-1])[::-1][:-1]


def runs(scores: np.ndarray) -> Runs:
    """The detections (frames with score >= threshold, in maximal runs) of a 1-D score curve at
    each of its distinct scores, as sed_scores_eval's onset_offset_curves defines them."""
    levels, level_of = np.unique(scores, return_inverse=True)
    level_of = level_of.ravel()
    order = np.argsort(-level_of, kind="stable").tolist()
    level_list = level_of.tolist()
    n = len(level_list)
    run_start = [-1] * (n + 1)  # run_start[e]: start of the active run ending at frame e
    run_stop = [-1] * (n + 1)  # run_stop[s]: end of the active run starting at frame s
    node_at = [-1] * (n + 1)  # node_at[s]: the run starting at frame s
    start, stop, birth, death = [], [], [], []
    for t in order:
        k = level_list[t]
        s, e = t, t + 1
        if run_start[t] >= 0:  # merge with the run ending here
            s = run_start[t]
            run_start[t] = -1
            death[node_at[s]] = k
        if run_stop[t + 1] >= 0:  # and with the run starting after it
            e = run_stop[t + 1]
            run_stop[t + 1] = -1
            death[node_at[t + 1]] = k
        run_stop[s], run_start[e], node_at[s] = e, s, len(start)
        start.append(s), stop.append(e), birth.append(k), death.append(-1)
    birth_a, death_a = np.array(birth, np.int64), np.array(death, np.int64)
    real = birth_a != death_a  # runs replaced at the level they appeared were never detections
    return Runs(levels, np.array(start)[real], np.array(stop)[real], birth_a[real], death_a[real])


def _pairwise(fn: Callable[[slice], np.ndarray], n_runs: int, n_events: int) -> np.ndarray:
    """fn(rows) -> [rows, events], over blocks of rows, concatenated: bounded memory."""
    step = max(1, _BLOCK // max(n_events, 1))
    return np.concatenate([fn(slice(i, i + step)) for i in range(0, n_runs, step)])


def _alive(r: Runs, rows: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """[len(levels), len(rows)]: whether each run of `rows` is a detection at each level."""
    return (r.death[rows] < levels[:, None]) & (levels[:, None] <= r.birth[rows])


def _segments(r: Runs, rows: np.ndarray) -> np.ndarray:
    """Levels at which the set of alive runs among `rows` changes, as segment upper ends: levels
    (edges[i-1], edges[i]] share one set, represented by edges[i] (edges[0] = -1 excluded)."""
    top = len(r.levels) - 1
    return np.unique(np.concatenate([[-1, top], r.birth[rows], r.death[rows]]))


def _indicator(edges: np.ndarray, value: np.ndarray, size: int) -> np.ndarray:
    """Integer per level from a per-segment boolean (segments (edges[i-1], edges[i]])."""
    diff = np.zeros(size + 1, np.int64)
    hi, lo = edges[1:], edges[:-1]
    np.add.at(diff, hi[value], 1)
    np.add.at(diff, lo[value][lo[value] >= 0], -1)
    return np.cumsum(diff[::-1])[::-1][:-1]


def intersection_statistics(
    r: Runs,
    onsets: np.ndarray,
    offsets: np.ndarray,
    target: tuple[np.ndarray, np.ndarray],
    others: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    dtc_threshold: float,
    gtc_threshold: float,
    cttc_threshold: float | None = None,
    time_decimals: int = 6,
) -> dict:
    """tps, fps, cts per level, as sed_scores_eval.intersection_based.statistics_fn counts them
    (onsets / offsets: the runs' times; target / others: reference onsets and offsets)."""
    t_on, t_off = target
    lengths = offsets - onsets
    size = len(r.levels)

    def overlap(on_times, off_times):
        def fn(rows):
            return np.maximum(
                np.minimum(offsets[rows, None], off_times)
                - np.maximum(onsets[rows, None], on_times),
                0.0,
            )

        return fn

    gi = _pairwise(overlap(t_on, t_off), len(onsets), len(t_on))  # [runs, target events]
    total = np.round(np.sum(gi, axis=-1), decimals=time_decimals)
    relevant = total >= np.round(dtc_threshold * lengths, decimals=time_decimals)
    alive = r.count()
    fps = alive - r.count(relevant)

    tps = np.zeros(size, np.int64)
    needed = np.round(gtc_threshold * (t_off - t_on), decimals=time_decimals)
    for g in range(len(t_on)):
        rows = np.flatnonzero(relevant & (gi[:, g] > 0))
        edges = _segments(r, rows)
        sums = np.zeros(len(edges) - 1)
        step = max(1, _BLOCK // max(len(rows), 1))
        for i in range(0, len(sums), step):
            on = _alive(r, rows, edges[1 + i : 1 + i + step])
            sums[i : i + step] = np.where(on, gi[rows, g], 0.0).sum(axis=-1)
        tps += _indicator(edges, np.round(sums, decimals=time_decimals) >= needed[g], size)

    if cttc_threshold is None:
        return {"tps": tps, "fps": fps, "cts": np.zeros_like(tps)}
    cts = {}
    for name, (o_on, o_off) in others.items():
        if len(o_on) == 0:
            cts[name] = np.zeros_like(tps)
            continue
        oi = _pairwise(overlap(o_on, o_off), len(onsets), len(o_on))
        crossed = np.round(np.sum((1 - relevant[:, None]) * oi, axis=-1), decimals=time_decimals)
        cts[name] = r.count(crossed >= np.round(cttc_threshold * lengths, decimals=time_decimals))
    return {"tps": tps, "fps": fps, "cts": cts}


def collar_statistics(
    r: Runs,
    onsets: np.ndarray,
    offsets: np.ndarray,
    target: tuple[np.ndarray, np.ndarray],
    others: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    onset_collar: float,
    offset_collar: float,
    offset_collar_rate: float = 0.0,
    time_decimals: int = 6,
) -> dict:
    """tps, fps per level, as sed_scores_eval.collar_based.statistics_fn counts them: a maximum
    matching of detections to reference events whose onset and offset lie within the collars."""
    from sed_eval.util import bipartite_match

    t_on, t_off = target
    size = len(r.levels)
    collars = np.maximum(offset_collar, offset_collar_rate * (t_off - t_on))

    def fn(rows):
        onset_ok = (
            np.round(np.abs(onsets[rows, None] - t_on) - onset_collar, decimals=time_decimals)
            <= 0.0
        )
        offset_ok = (
            np.round(np.abs(offsets[rows, None] - t_off) - collars, decimals=time_decimals) <= 0.0
        )
        return onset_ok & offset_ok

    hits = _pairwise(fn, len(onsets), len(t_on))  # [runs, target events]
    pair_run, pair_event = np.nonzero(hits)
    tps = r.count(np.bincount(pair_run, minlength=len(r.start)))
    # Where a run hits two events, or an event has two hitting runs alive, count the matching.
    ambiguous = np.zeros(size, bool)
    for run in np.flatnonzero(hits.sum(-1) > 1):
        ambiguous[r.death[run] + 1 : r.birth[run] + 1] = True
    for g in np.flatnonzero(np.bincount(pair_event, minlength=len(t_on)) > 1):
        rows = pair_run[pair_event == g]
        edges = _segments(r, rows)
        several = _alive(r, rows, edges[1:]).sum(-1) > 1
        ambiguous |= _indicator(edges, several, size) > 0
    for b in np.flatnonzero(ambiguous):
        on = (r.death[pair_run] < b) & (b <= r.birth[pair_run])
        graph: dict[int, list[int]] = {}
        for run, g in zip(pair_run[on].tolist(), pair_event[on].tolist(), strict=True):
            graph.setdefault(run, []).append(g)
        tps[b] = len(bipartite_match(graph))
    return {"tps": tps, "fps": r.count() - tps}


def _deltas(levels: np.ndarray, stats: dict) -> tuple[np.ndarray, dict]:
    """Change-point scores and the change of each statistic there, in sed_scores_eval's format:
    nested keys flattened as "cts\\CLASS", levels where nothing changes dropped."""
    flat = {
        f"{key}\\{sub}" if isinstance(value, dict) else key: v
        for key, value in stats.items()
        for sub, v in (value.items() if isinstance(value, dict) else [(None, value)])
    }
    table = np.stack(list(flat.values()), axis=1)
    deltas = table - np.concatenate((table[1:], np.zeros_like(table[:1])))
    changed = np.flatnonzero(np.abs(deltas).sum(1) > 0)
    return levels[changed], {key: d[changed] for key, d in zip(flat, deltas.T, strict=True)}


def file_deltas(
    scores: np.ndarray,
    hop_seconds: float,
    events: Sequence[tuple[float, float, str]],
    classes: Sequence[str],
    statistics: Mapping[str, Statistics],
) -> dict[str, dict[str, tuple]]:
    """{statistic name: {class: (change-point scores, deltas)}} of one file's scores [T, C]."""
    scores = np.asarray(scores, dtype=np.float64)
    times = np.arange(scores.shape[0] + 1) * float(hop_seconds)
    refs = {}
    for c in classes:
        mine = np.array([(on, off) for on, off, label in events if label == c], dtype=np.float64)
        refs[c] = (mine[:, 0], mine[:, 1]) if len(mine) else (np.empty(0), np.empty(0))
    out: dict[str, dict[str, tuple]] = {name: {} for name in statistics}
    for i, c in enumerate(classes):
        r = runs(scores[:, i])
        onsets, offsets = times[r.start], times[r.stop]
        others = {o: refs[o] for o in classes if o != c}
        for name, fn in statistics.items():
            out[name][c] = _deltas(r.levels, fn(r, onsets, offsets, refs[c], others))
    return out


def score_deltas(
    probs: Mapping[str, np.ndarray],
    hop_seconds: float,
    ground_truth: Mapping[str, Sequence[tuple[float, float, str]]],
    classes: Sequence[str],
    statistics: Mapping[str, Statistics],
    *,
    num_jobs: int = 1,
    progress: bool = False,
) -> dict[str, dict[str, dict]]:
    """{statistic name: sed_scores_eval deltas {file: {class: ...}}} for every file's scores
    [T, len(classes)]; `statistics` maps names to `partial(intersection_statistics, ...)` or
    `partial(collar_statistics, ...)`. Files run in `num_jobs` processes."""
    files = list(probs)
    work = partial(
        file_deltas, hop_seconds=hop_seconds, classes=list(classes), statistics=statistics
    )
    args = ((probs[f], ground_truth.get(f, [])) for f in files)
    bar = partial(
        tqdm,
        total=len(files),
        desc="PSDS",
        unit="file",
        leave=False,
        disable=None if progress else True,
    )
    if num_jobs > 1 and len(files) > 1:
        with ProcessPoolExecutor(num_jobs) as pool:
            chunks = max(1, len(files) // (4 * num_jobs))
            results = list(bar(pool.map(_star, [work] * len(files), args, chunksize=chunks)))
    else:
        results = [work(p, events=e) for p, e in bar(args)]
    return {
        name: {f: result[name] for f, result in zip(files, results, strict=True)}
        for name in statistics
    }


def _star(fn: Callable, args: tuple) -> dict:
    """fn(scores, events=...) for ProcessPoolExecutor.map (a module-level function pickles)."""
    return fn(args[0], events=args[1])
