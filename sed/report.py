"""Tables and plots of a run or a sweep: `python -m sed.report DIR [--metric KEY] [--group-by KEY ...]`.

DIR is a run directory or a Hydra multirun/sweep directory; every folder below it (DIR included)
that holds `.hydra/` is a run. A run's status is:

- ``finished``: `metrics.json` exists and parses to a JSON object;
- ``failed``: `metrics.json` exists but cannot be parsed, or it is missing and a log of the run
  (`*.log` / `*.err` in the run dir, `.hydra/`, `.submitit/`) holds a Python traceback or Hydra's
  "Error executing job" (or `sed.train: error:`); the `error` column quotes the exception, every
  line of its message;
- ``unfinished``: no `metrics.json` and no error in the logs (still running, or killed without a
  traceback, e.g. out of memory or out of time).

Runs that did not finish are counted per group (`n_failed`, `n_unfinished`), listed in
summary.md and printed: never silently dropped. Output goes to DIR/report/ by default.

Is it better? For runs whose final evaluation wrote `per_file/SPLIT.csv` (sed_eval's counts per
test file), intervals.csv holds a percentile bootstrap interval over test files of each run's
event / segment F1 and ER, and comparisons.csv the paired comparison of every two values of
`--compare` (default: method) trained with the same other settings on the same folds and seeds:
the difference A - B of the metric pooled over the matched runs' test files, with its interval
from resampling those files (seed-to-seed variation beyond the matched runs is not resampled).
tensorboard/ holds every finished run's overrides and headline metrics for TensorBoard's HParams
view (`tensorboard --logdir DIR/report/tensorboard`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sed.io import write_csv, write_text
from sed.stats import bootstrap, paired_bootstrap

__all__ = [
    "ALWAYS",
    "DEFAULT_OVER",
    "Report",
    "ReportError",
    "SWEEP_PARAMS",
    "collect_runs",
    "confidence_intervals",
    "find_run_dirs",
    "main",
    "metric_columns",
    "override_columns",
    "paired_comparisons",
    "parse_override",
    "provenance_warnings",
    "report",
    "summarize",
    "summary_markdown",
    "write_hparams",
]

FINISHED, FAILED, UNFINISHED = "finished", "failed", "unfinished"
COUNTS = ("n", "n_failed", "n_unfinished", "n_commits", "n_environments")
RESERVED = ("run_dir", "status", "error", "commit", "environment")
DEFAULT_OVER = ("seed", "data.fold")
# Config keys every run gets a column for, overridden or not: a method comparison
# (`method=baseline,tf,ss`) is grouped by method even where a run kept the default.
ALWAYS = ("method",)
# Swept parameters plotted against; `gamma` is the top-level key that sampler.gamma reads.
SWEEP_PARAMS = ("gamma", "sampler.gamma", "sampler.p_min", "sampler.p_max")
# metrics.json keys without a `SPLIT/` prefix (DESIGN.md).
RUN_SCALARS = ("best_epoch", "epochs", "train_seconds")
_TRACEBACK = "Traceback (most recent call last)"
# Where a failure's report starts in a log: a traceback, Hydra's line before one, or the line
# `python -m sed.train` prints for a bad input.
_ERROR_MARKERS = (_TRACEBACK, "Error executing job", "sed.train: error: ")
# Lines that end an exception's message: the next record of a Hydra job log, Hydra's hint, a
# chained traceback.
_MESSAGE_END = re.compile(
    r"\[\d{4}-\d\d-\d\d |Set the environment variable HYDRA_FULL_ERROR|The above "
)
_MAX_ERROR_CHARS = 2000
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class ReportError(ValueError):
    """A directory, run or option that sed.report cannot use."""


# --------------------------------------------------------------------------- collecting runs


MARKDOWN_METRICS = (
    "test/event_f1",
    "test/event_er",
    "test/segment_f1",
    "test/segment_er",
    "test/frame_f1",
    "test/psds1",
    "best_epoch",
)


def find_run_dirs(directory: str | Path) -> list[Path]:
    """Every folder at or below `directory` that holds `.hydra/`, in natural order (2 before 10)."""
    root = Path(directory)
    found = []
    for current, dirs, _ in os.walk(root):
        if ".hydra" in dirs:
            found.append(Path(current))
        dirs[:] = [d for d in dirs if not d.startswith(".")]
    return sorted(found, key=_natural_key)


def _natural_key(path: Path) -> list[Any]:
    """Sort key that orders numbered Hydra job dirs numerically."""
    return [
        (0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", str(path)) if t
    ]


def _parse_value(text: str) -> Any:
    """An override value as YAML would read it (numbers, bools, null); lists stay strings so
    that they can be grouped on; `1e-3` counts as a number although YAML 1.1 says string."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, list | dict):
        return text
    return value


def parse_override(text: str) -> tuple[str, Any]:
    """Split a Hydra override (`key=value`, `+key=value`, `++key=value`, `~key`) into key and
    parsed value; a deletion `~key` gives None."""
    text = str(text).strip()
    key, sep, value = text.partition("=")
    key = key.lstrip("+~").strip()
    if not key:
        raise ReportError(f"override {text!r} has no key")
    if text.startswith("~") or not sep:
        return key, None
    return key, _parse_value(value)


def _read_overrides(run_dir: Path) -> dict[str, Any]:
    """The run's overrides (.hydra/overrides.yaml) as key -> value; {} when the file is absent."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    try:
        items = yaml.safe_load(path.read_text()) or []
    except (OSError, yaml.YAMLError) as error:
        raise ReportError(f"{path}: cannot read the overrides: {error}") from error
    if not isinstance(items, list):
        raise ReportError(
            f"{path}: expected a YAML list of 'key=value' strings, got {type(items).__name__}"
        )
    return dict(parse_override(item) for item in items)


_ABSENT = object()


def _config_value(run_dir: Path, key: str) -> Any:
    """`key` (dotted) looked up in the run's .hydra/config.yaml, interpolations such as
    `sampler.gamma: ${gamma}` followed; _ABSENT when it is not there or does not resolve (e.g.
    `${hydra:...}`, which only a running Hydra app can resolve)."""
    path = run_dir / ".hydra" / "config.yaml"
    try:
        config = OmegaConf.load(path)
        node = OmegaConf.select(config, key, default=_ABSENT, throw_on_resolution_failure=False)
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(config, parent_key) if parent_key else config
        # An interpolation that resolves to nothing here (e.g. `${hydra:...}` outside the run):
        # no column rather than a wrong value; a literal null stays null.
        if (
            node is None
            and isinstance(parent, DictConfig)
            and OmegaConf.is_interpolation(parent, leaf)
        ):
            return _ABSENT
    except (OSError, yaml.YAMLError, OmegaConfBaseException):
        return _ABSENT
    if isinstance(node, DictConfig | ListConfig):
        return json.dumps(OmegaConf.to_container(node, resolve=False))
    return node


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metric dicts become `a/b` keys; lists become JSON strings."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list) else value
    return flat


def _log_error(run_dir: Path) -> str | None:
    """The exception of the last failure reported in the run's logs (`LOG: Type: message`, every
    line of the message kept), or None when there is none."""
    logs = [
        *run_dir.glob("*.log"),
        *run_dir.glob("*.err"),
        *(run_dir / ".hydra").glob("*.log"),
        *(run_dir / ".submitit").rglob("*.err"),
        *(run_dir / ".submitit").rglob("*.log"),
    ]
    for log in sorted(logs):
        try:
            text = log.read_text(errors="replace")
        except OSError:
            continue
        start = max(text.rfind(marker) for marker in _ERROR_MARKERS)
        if start < 0:
            continue
        message = _exception_message(text[start:].splitlines())
        return f"{log.name}: {message}"[:_MAX_ERROR_CHARS]
    return None


def _exception_message(lines: list[str]) -> str:
    """The exception a failure report (`lines`, from its marker on) ends with: after a
    traceback's indented frames, the first unindented line and the message's further lines."""
    if lines[0].startswith(_TRACEBACK):
        body = lines[1:]
        while body and (not body[0].strip() or body[0][0].isspace()):
            body = body[1:]
        if not body:
            return lines[0].strip()
    else:
        body = lines
    message = [body[0].strip()]
    for line in body[1:]:
        if not line.strip() or _MESSAGE_END.match(line):
            break
        message.append(line.rstrip())
    return "\n".join(message)


def _run_status(run_dir: Path) -> tuple[str, str, dict[str, Any]]:
    """(status, error, metrics) of one run dir; see the module docstring for the statuses."""
    path = run_dir / "metrics.json"
    if path.is_file():
        try:
            metrics = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            return FAILED, f"metrics.json unreadable: {error}", {}
        if not isinstance(metrics, dict):
            return FAILED, f"metrics.json holds a {type(metrics).__name__}, not an object", {}
        return FINISHED, "", _flatten(metrics)
    error = _log_error(run_dir)
    return (FAILED, error, {}) if error else (UNFINISHED, "", {})


def _provenance(run_dir: Path) -> tuple[Any, Any, dict[str, Any]]:
    """(commit, environment, versions) from a run's environment.json: the commit (with
    `-dirty+HASH` for a modified tree) and a short fingerprint of python and the package
    versions; None for runs made before sed recorded it."""
    try:
        record = json.loads((run_dir / "environment.json").read_text())
        git, packages = record["git"], dict(record["packages"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, None, {}
    commit = git.get("commit") or "no git"
    if git.get("dirty"):
        commit = f"{commit[:12]}-dirty+{(git.get('diff_sha256') or '')[:8]}"
    else:
        commit = commit[:12]
    versions = {"python": record.get("python"), **packages}
    text = json.dumps(versions, sort_keys=True)
    return commit, hashlib.sha256(text.encode()).hexdigest()[:10], versions


def collect_runs(directory: str | Path, config_keys: Sequence[str] = ()) -> pd.DataFrame:
    """One row per run below `directory`: `run_dir`, `status`, `error`, each override as a column
    (parsed values) and every metrics.json key. `config_keys` absent from a run's overrides are
    read from its .hydra/config.yaml (e.g. a group-by key the sweep did not override), and so is
    `method` (ALWAYS) wherever the config has it.

    The override and metric column names are kept in ``table.attrs["overrides"]`` and
    ``table.attrs["metrics"]``.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ReportError(f"{root}: no such directory")
    run_dirs = find_run_dirs(root)
    if not run_dirs:
        raise ReportError(
            f"{root}: no runs found. A run directory holds .hydra/ (Hydra's output dir); give a "
            "run directory or a multirun/sweep directory whose numbered subfolders are runs."
        )
    rows, override_keys, metric_keys = [], {}, {}
    versions: dict[str, dict[str, Any]] = {}
    for run_dir in run_dirs:
        overrides = _read_overrides(run_dir)
        for key in dict.fromkeys((*config_keys, *ALWAYS)):
            value = _ABSENT if key in overrides or key in RESERVED else _config_value(run_dir, key)
            if value is not _ABSENT:
                overrides[key] = value
        status, error, metrics = _run_status(run_dir)
        commit, environment, versions[str(run_dir)] = _provenance(run_dir)
        metrics = {
            (f"metrics:{k}" if k in overrides or k in RESERVED else k): v
            for k, v in metrics.items()
        }
        override_keys.update(dict.fromkeys(overrides))
        metric_keys.update(dict.fromkeys(metrics))
        rows.append(
            {
                "run_dir": str(run_dir),
                "status": status,
                "error": error,
                "commit": commit,
                "environment": environment,
                **overrides,
                **metrics,
            }
        )
    table = pd.DataFrame(rows, columns=[*RESERVED, *override_keys, *metric_keys])
    for key in override_keys:  # integers stay integers when some runs lack the key (not 2.0)
        values = [row[key] for row in rows if key in row and not _missing(row[key])]
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            table[key] = table[key].astype("Int64")
    table.attrs["overrides"] = list(override_keys)
    table.attrs["metrics"] = list(metric_keys)
    table.attrs["versions"] = versions
    return table


def metric_columns(runs: pd.DataFrame) -> list[str]:
    """The numeric metrics.json columns of a runs table (from attrs, else `SPLIT/NAME` and the
    run scalars of DESIGN.md)."""
    names = runs.attrs.get("metrics")
    if names is None:
        names = [
            c
            for c in runs.columns
            if c not in RESERVED and (c in RUN_SCALARS or re.fullmatch(r"[A-Za-z_]\w*/\S+", c))
        ]
    return [
        c
        for c in names
        if c in runs.columns and pd.to_numeric(runs[c], errors="coerce").notna().any()
    ]


def override_columns(runs: pd.DataFrame) -> list[str]:
    """The override columns of a runs table (from attrs, else everything else but metrics)."""
    names = runs.attrs.get("overrides")
    if names is None:
        metrics = set(metric_columns(runs))
        names = [c for c in runs.columns if c not in RESERVED and c not in metrics]
    return [c for c in names if c in runs.columns]


# --------------------------------------------------------------------------- summarizing


def _sorted_groups(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows ordered by the group keys (by their text when the values do not compare)."""
    if not keys:
        return table
    try:
        return table.sort_values(keys, kind="stable", na_position="last").reset_index(drop=True)
    except TypeError:
        order = table[keys].astype(str).apply(tuple, axis=1).sort_values(kind="stable").index
        return table.loc[order].reset_index(drop=True)


def summarize(
    runs: pd.DataFrame,
    group_by: Sequence[str] | None = None,
    over: Sequence[str] = DEFAULT_OVER,
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Mean and std (ddof=1) of every metric per group of finished runs, over seeds and folds.

    Groups are `group_by`, or by default every override key not in `over`. Columns: the group
    keys, `n` (finished runs), `n_failed`, `n_unfinished`, then `{metric}_mean` and
    `{metric}_std` per metric. A group whose runs all failed keeps its row (n = 0, NaN metrics).
    """
    overrides = override_columns(runs)
    if group_by is None:
        keys = [k for k in overrides if k not in over]
    else:
        keys = list(dict.fromkeys(group_by))
        missing = [k for k in keys if k not in runs.columns]
        if missing:
            raise ReportError(
                f"group-by key(s) {missing} are not overrides of any run; overrides: {overrides}"
            )
    metrics = metric_columns(runs) if metrics is None else list(metrics)
    unknown = [m for m in metrics if m not in runs.columns]
    if unknown:
        raise ReportError(
            f"metric(s) {unknown} are in no metrics.json; available: {metric_columns(runs)}"
        )
    groups = runs.groupby(keys, dropna=False, sort=False) if keys else [((), runs)]
    rows = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        finished = group[group["status"] == FINISHED]
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row["n"] = len(finished)
        row["n_failed"] = int((group["status"] == FAILED).sum())
        row["n_unfinished"] = int((group["status"] == UNFINISHED).sum())
        row["n_commits"] = finished["commit"].nunique(dropna=True)
        row["n_environments"] = finished["environment"].nunique(dropna=True)
        for metric in metrics:
            values = pd.to_numeric(finished[metric], errors="coerce")
            row[f"{metric}_mean"] = values.mean()
            row[f"{metric}_std"] = values.std(ddof=1)
        rows.append(row)
    columns = [
        *keys,
        "n",
        "n_failed",
        "n_unfinished",
        "n_commits",
        "n_environments",
        *(f"{m}_{s}" for m in metrics for s in ("mean", "std")),
    ]
    summary = _sorted_groups(pd.DataFrame(rows, columns=columns), keys)
    averaged = [k for k in overrides if k not in keys]  # what each group's runs may differ in
    summary.attrs = {"group_by": keys, "metrics": metrics, "over": averaged}
    return summary


# --------------------------------------------------------------------------- is it better?


def _per_file(run_dir: str | Path, split: str) -> pd.DataFrame | None:
    """The run's per_file/SPLIT.csv (sed_eval counts per file, indexed by filename), or None."""
    path = Path(run_dir) / "per_file" / f"{split}.csv"
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, index_col="filename", keep_default_na=False)
    except (OSError, ValueError) as error:
        raise ReportError(f"{path}: cannot read the per-file counts: {error}") from error


def confidence_intervals(
    runs: pd.DataFrame,
    split: str = "test",
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per finished run with per_file/SPLIT.csv and bootstrapped metric: `run_dir`,
    `metric` (SPLIT/NAME), `value` (on all files), `low`, `high` (percentile bootstrap over files)."""
    rows = []
    for run_dir in runs.loc[runs["status"] == FINISHED, "run_dir"]:
        counts = _per_file(run_dir, split)
        if counts is None or counts.empty:
            continue
        for name, (value, low, high) in bootstrap(
            counts, n_resamples=n_resamples, confidence=confidence, seed=seed
        ).items():
            rows.append(
                {
                    "run_dir": run_dir,
                    "metric": f"{split}/{name}",
                    "value": value,
                    "low": low,
                    "high": high,
                    "n_files": len(counts),
                }
            )
    return pd.DataFrame(rows, columns=["run_dir", "metric", "value", "low", "high", "n_files"])


def paired_comparisons(
    runs: pd.DataFrame,
    compare: str = "method",
    match: Sequence[str] = DEFAULT_OVER,
    split: str = "test",
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """A - B for every two values A < B of `compare` among finished runs that agree on every other
    override: runs are paired on the `match` keys (fold, seed), their per-file counts pooled over
    the pairs, and the difference resampled file by file (stats.paired_bootstrap). Columns: the
    shared settings, `a`, `b`, `n_pairs`, `n_files`, `metric`, `difference`, `low`, `high`."""
    if compare not in runs.columns:
        return pd.DataFrame()
    match_keys = [k for k in match if k in runs.columns]
    others = [k for k in override_columns(runs) if k != compare and k not in match_keys]
    done = runs[(runs["status"] == FINISHED) & runs[compare].notna()]
    rows = []
    groups = done.groupby(others, dropna=False, sort=False) if others else [((), done)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        by_value: dict[Any, dict[tuple, str]] = {}
        for _, run in group.iterrows():
            ident = tuple(None if _missing(run[k]) else run[k] for k in match_keys)
            by_value.setdefault(run[compare], {})[ident] = run["run_dir"]
        values = sorted(by_value, key=str)
        for i, a in enumerate(values):
            for b in values[i + 1 :]:
                pairs = sorted(set(by_value[a]) & set(by_value[b]), key=str)
                stacked = _stack_pairs([(by_value[a][p], by_value[b][p]) for p in pairs], split)
                if stacked is None:
                    continue
                counts_a, counts_b, n_pairs = stacked
                try:
                    result = paired_bootstrap(
                        counts_a,
                        counts_b,
                        n_resamples=n_resamples,
                        confidence=confidence,
                        seed=seed,
                    )
                except ValueError as error:
                    raise ReportError(f"{compare}={a} vs {compare}={b}: {error}") from error
                for name, (diff, low, high) in result.items():
                    rows.append(
                        {
                            **dict(zip(others, key, strict=True)),
                            "a": a,
                            "b": b,
                            "n_pairs": n_pairs,
                            "n_files": len(counts_a),
                            "metric": f"{split}/{name}",
                            "difference": diff,
                            "low": low,
                            "high": high,
                        }
                    )
    columns = [*others, "a", "b", "n_pairs", "n_files", "metric", "difference", "low", "high"]
    table = pd.DataFrame(rows, columns=columns)
    table.attrs["compare"] = compare
    return table


def _stack_pairs(
    pairs: list[tuple[str, str]], split: str
) -> tuple[pd.DataFrame, pd.DataFrame, int] | None:
    """Per-file counts of the paired runs, stacked with index `PAIR:filename`; None when no pair
    has counts on both sides."""
    parts_a, parts_b = [], []
    for number, (dir_a, dir_b) in enumerate(pairs):
        a, b = _per_file(dir_a, split), _per_file(dir_b, split)
        if a is None or b is None or a.empty or b.empty:
            continue
        if set(a.index) != set(b.index):
            only = sorted(set(a.index) ^ set(b.index))[:3]
            raise ReportError(
                f"{dir_a} and {dir_b} are paired (same fold and seed) but were tested on "
                f"different files, e.g. {only}"
            )
        parts_a.append(a.rename(index=lambda f, n=number: f"{n}:{f}"))
        parts_b.append(b.rename(index=lambda f, n=number: f"{n}:{f}"))
    if not parts_a:
        return None
    return pd.concat(parts_a), pd.concat(parts_b), len(parts_a)


def write_hparams(runs: pd.DataFrame, log_dir: str | Path, root: Path | None = None) -> Path:
    """Every finished run's overrides (hyperparameters) and SPLIT/NAME metrics under `log_dir`, one
    TensorBoard run each, for the HParams view: `tensorboard --logdir LOG_DIR`."""
    from torch.utils.tensorboard import SummaryWriter

    log_dir = Path(log_dir)
    params = override_columns(runs)
    metrics = [m for m in metric_columns(runs) if "/" in m]
    with SummaryWriter(str(log_dir)) as writer:
        for _, run in runs[runs["status"] == FINISHED].iterrows():
            hparams = {k: _hparam(run[k]) for k in params if not _missing(run[k])}
            values = {m: float(run[m]) for m in metrics if _is_number(run[m])}
            name = re.sub(r"[^\w.-]+", "_", _relative(run["run_dir"], root))
            writer.add_hparams(hparams, values, run_name=name)
    return log_dir


def _hparam(value: Any) -> int | float | str | bool:
    """A value TensorBoard's HParams accepts (numbers, bools, strings)."""
    if hasattr(value, "item"):
        value = value.item()
    return value if isinstance(value, bool | int | float | str) else str(value)


def _is_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _interval(value: float, low: float, high: float) -> str:
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def significance_markdown(
    intervals: pd.DataFrame, comparisons: pd.DataFrame, metric: str, root: Path | None
) -> list[str]:
    """The "Is it better?" section of summary.md: each run's interval of `metric` (when it is
    bootstrapped) and the paired differences."""
    lines = ["## Is it better?", ""]
    shown = metric if metric in set(intervals["metric"]) else None
    if shown is None and not intervals.empty:
        shown = intervals["metric"].iloc[0]
    if shown is None:
        return [*lines, "No run has per_file/ counts (written by the final evaluation).", ""]
    rows = intervals[intervals["metric"] == shown]
    lines += [
        f"`{shown}` per run with its 95 % percentile bootstrap interval over test files "
        "(intervals.csv has every bootstrapped metric):",
        "",
        _markdown_table(
            ["run", shown, "files"],
            [
                [
                    f"`{_relative(r['run_dir'], root)}`",
                    f"{r['value']:.3f} [{r['low']:.3f}, {r['high']:.3f}]",
                    str(int(r["n_files"])),
                ]
                for _, r in rows.iterrows()
            ],
        ),
        "",
    ]
    if not comparisons.empty:
        compare = comparisons.attrs.get("compare", "method")
        table = comparisons[comparisons["metric"] == shown]
        others = [c for c in comparisons.columns if c not in _COMPARISON_COLUMNS]
        lines += [
            f"Paired comparisons of `{compare}` (A - B on the same test files of runs with the "
            f"same folds and seeds; 95 % interval; an interval excluding 0 is a difference these "
            f"test files support):",
            "",
            _markdown_table(
                [*others, "A", "B", "pairs", f"A - B: {shown}"],
                [
                    [
                        *(_text(r[k]) for k in others),
                        _text(r["a"]),
                        _text(r["b"]),
                        str(int(r["n_pairs"])),
                        _interval(r["difference"], r["low"], r["high"]),
                    ]
                    for _, r in table.iterrows()
                ],
            ),
            "",
        ]
    return lines


_COMPARISON_COLUMNS = ("a", "b", "n_pairs", "n_files", "metric", "difference", "low", "high")


# --------------------------------------------------------------------------- writing


def _missing(value: Any) -> bool:
    """None, NaN or pd.NA (a key a run does not have)."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _text(value: Any) -> str:
    """A table cell: absent values as a dash, `|` escaped."""
    if _missing(value):
        return "–"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _mean_std(mean: float, std: float) -> str:
    """`0.512 ± 0.034`; only the mean when the std is undefined (one run); a dash for no runs."""
    if isinstance(mean, float) and math.isnan(mean):
        return "–"
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _higher_is_better(metric: str) -> bool:
    """Error rates, losses and times are minimised; F1 and PSDS maximised."""
    return not re.search(r"(_er|loss|seconds)$", metric)


def _relative(run_dir: str, root: Path | None) -> str:
    """A run dir relative to the report's root, for the Markdown listing."""
    if root is None:
        return run_dir
    try:
        return Path(run_dir).relative_to(root).as_posix() or "."
    except ValueError:
        return run_dir


def summary_markdown(
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    metric: str,
    root: str | Path | None = None,
    plots: Sequence[Path] = (),
    out_dir: str | Path | None = None,
) -> str:
    """summary.md: counts, the `mean ± std` table (metric first, 3 decimals), settings shared by
    every run, the failed / unfinished runs with their errors, and links to the plots (relative
    to `out_dir`, where summary.md goes)."""
    root = Path(root) if root is not None else None
    keys = summary.attrs.get("group_by") or [
        c for c in summary.columns if c not in COUNTS and not re.search(r"_(mean|std)$", c)
    ]
    metrics = summary.attrs.get("metrics") or [
        c[:-5] for c in summary.columns if c.endswith("_mean")
    ]
    # The Markdown table keeps the chosen metric and the headline test metrics (summary.csv has
    # every metric); without any headline metric in the table, everything is shown.
    headline = [m for m in metrics if m == metric or m in MARKDOWN_METRICS]
    metrics = sorted(headline or metrics, key=lambda m: m != metric)
    over = summary.attrs.get("over", [])
    counts = runs["status"].value_counts()
    lines = [
        "# Report" + (f": `{root}`" if root is not None else ""),
        "",
        f"{len(runs)} run(s): {counts.get(FINISHED, 0)} finished, {counts.get(FAILED, 0)} failed, "
        f"{counts.get(UNFINISHED, 0)} unfinished. Cells are mean ± std (ddof=1) over the finished "
        f"runs of each group (averaged over: {', '.join(over) or 'nothing'}); n counts them.",
        "",
    ]
    constant = [k for k in keys if len(summary) > 1 and summary[k].nunique(dropna=False) == 1]
    if constant:
        shared = ", ".join(f"`{k}={_text(summary[k].iloc[0])}`" for k in constant)
        lines += [f"Shared by every group: {shared}.", ""]
    shown = [k for k in keys if k not in constant]
    mean_col = f"{metric}_mean"
    if mean_col in summary.columns and summary[mean_col].notna().any():
        values = summary[mean_col]
        best = summary.loc[values.idxmax() if _higher_is_better(metric) else values.idxmin()]
        setting = ", ".join(f"{k}={_text(best[k])}" for k in shown) or "all runs"
        lines += [
            f"Best `{metric}`: **{_mean_std(best[mean_col], best[f'{metric}_std'])}** "
            f"({setting}; n={int(best['n'])}).",
            "",
        ]
    not_finished = summary["n_failed"].sum() + summary["n_unfinished"].sum() > 0
    header = [*shown, "n", *(["failed", "unfinished"] if not_finished else []), *metrics]
    rows = []
    for _, row in summary.iterrows():
        cells = [_text(row[k]) for k in shown] + [str(int(row["n"]))]
        if not_finished:
            cells += [str(int(row["n_failed"])), str(int(row["n_unfinished"]))]
        cells += [_mean_std(row[f"{m}_mean"], row[f"{m}_std"]) for m in metrics]
        rows.append(cells)
    lines += [_markdown_table(header, rows), ""]

    problems = runs[runs["status"] != FINISHED]
    lines += [
        "## Failed and unfinished runs",
        "",
        "*failed*: metrics.json unreadable, or missing with a traceback in the run's logs; "
        "*unfinished*: no metrics.json and no error in the logs (still running, killed, or "
        "crashed without logging its traceback: Hydra prints a job's exception to stderr only).",
        "",
    ]
    if problems.empty:
        lines += ["None: every run finished.", ""]
    else:
        overrides = override_columns(runs)
        listing = []
        for _, run in problems.iterrows():
            settings = " ".join(f"{k}={_text(run[k])}" for k in overrides if not _missing(run[k]))
            listing.append(
                [
                    f"`{_relative(run['run_dir'], root)}`",
                    run["status"],
                    _text(settings or "–"),
                    _text(run["error"] or "–"),
                ]
            )
        lines += [_markdown_table(["run", "status", "overrides", "error"], listing), ""]
    if plots:
        lines += ["## Plots", ""]
        for plot in plots:
            link = Path(os.path.relpath(plot, out_dir)).as_posix() if out_dir else plot.as_posix()
            lines += [f"![{plot.stem}]({link})", ""]
    return "\n".join(lines)


def _differences(runs: pd.DataFrame) -> str:
    """The recorded versions that differ between `runs`: 'torch 2.11.0 / 2.12.0, ...'."""
    versions = runs.attrs.get("versions", {})
    records = [versions.get(run_dir, {}) for run_dir in runs["run_dir"]]
    names = sorted({name for record in records for name in record})
    differ = []
    for name in names:
        seen = sorted({str(record.get(name)) for record in records if record})
        if len(seen) > 1:
            differ.append(f"{name} {' / '.join(seen)}")
    return ", ".join(differ)


def provenance_warnings(runs: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """A warning per group whose finished runs mix commits or package versions, and one when
    the groups compared with each other do (environment.json of each run)."""
    finished = runs[runs["status"] == FINISHED]
    keys = summary.attrs.get("group_by", [])
    groups = finished.groupby(keys, dropna=False, sort=False) if keys else [((), finished)]
    warnings = []

    def mixes(table: pd.DataFrame) -> str:
        parts = []
        commits = sorted(table["commit"].dropna().unique())
        if len(commits) > 1:
            parts.append(f"{len(commits)} commits ({', '.join(commits)})")
        if table["environment"].nunique(dropna=True) > 1:
            parts.append(f"{table['environment'].nunique()} environments ({_differences(table)})")
        return " and ".join(parts)

    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        mixed = mixes(group)
        if mixed:
            setting = ", ".join(f"{k}={_text(v)}" for k, v in zip(keys, key, strict=True))
            warnings.append(f"the mean of {setting or 'all runs'} mixes {mixed}")
    if keys and len(summary) > 1:
        mixed = mixes(finished)
        if mixed and not warnings:
            warnings.append(f"the groups compared here come from {mixed}")
        elif mixed:
            warnings.append(f"comparisons between groups mix {mixed}")
    unknown = int(finished["commit"].isna().sum())
    if unknown and unknown < len(finished):
        warnings.append(
            f"{unknown} run(s) have no environment.json, so their provenance is unknown"
        )
    return warnings


def provenance_markdown(runs: pd.DataFrame, warnings: Sequence[str]) -> list[str]:
    """The summary.md section on where the runs come from."""
    finished = runs[runs["status"] == FINISHED]
    lines = ["## Provenance", ""]
    if warnings:
        lines += [f"- **Warning**: {w}." for w in warnings] + [""]
        lines += ["Decide whether the difference matters before reading the comparison.", ""]
    elif finished["commit"].notna().any():
        commit = finished["commit"].dropna().iloc[0]
        lines += [
            f"Every finished run comes from commit `{commit}` and one environment "
            f"(`{finished['environment'].dropna().iloc[0]}`, environment.json).",
            "",
        ]
    else:
        lines += ["No run has an environment.json (made before sed recorded provenance).", ""]
    return lines


def _write_text(text: str, path: Path) -> Path:
    """Atomic text write."""
    return write_text(text, path)


def _write_csv(table: pd.DataFrame, path: Path) -> Path:
    """Atomic CSV write."""
    return write_csv(table, path, index=False)


@dataclass
class Report:
    """What `report` produced: the tables and the files it wrote."""

    runs: pd.DataFrame
    summary: pd.DataFrame
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)


def report(
    directory: str | Path,
    metric: str = "test/event_f1",
    group_by: Sequence[str] | None = None,
    over: Sequence[str] = DEFAULT_OVER,
    out: str | Path | None = None,
    verbose: bool = True,
    compare: str = "method",
    n_resamples: int = 1000,
    hparams: bool = True,
) -> Report:
    """Collect, summarize and write runs.csv, summary.csv, summary.md and the sweep plots of
    `metric` against sampler.gamma / p_min / p_max (those that vary) under `out` (DIR/report).
    Runs are grouped by `group_by`, by default by every override (and the `method` of their
    config) except the `over` keys. With `n_resamples` > 0, intervals.csv and comparisons.csv
    (paired by the `over` keys, `compare` against `compare`) from the runs' per-file counts of
    the metric's split; with `hparams`, tensorboard/ for the HParams view."""
    from sed.plots import plot_metric_vs_params

    root = Path(directory).resolve()
    runs = collect_runs(root, config_keys=group_by or ())
    summary = summarize(runs, group_by=group_by, over=over)
    available = summary.attrs["metrics"]
    if (runs["status"] == FINISHED).any() and metric not in available:
        raise ReportError(f"--metric {metric!r} is in no metrics.json; available: {available}")
    out_dir = Path(out) if out is not None else root / "report"
    keys = summary.attrs["group_by"]
    plots = []
    done = summary[summary["n"] > 0]
    params = [p for p in SWEEP_PARAMS if p in keys and done[p].nunique(dropna=False) > 1]
    if params and metric in available:
        name = re.sub(r"[^\w.-]+", "_", metric)
        path = out_dir / "plots" / f"{name}_vs_{'_'.join(p.split('.')[-1] for p in params)}.png"
        plot_metric_vs_params(done, metric, params, path, by=[k for k in keys if k not in params])
        plots.append(path)
    text = summary_markdown(runs, summary, metric, root=root, plots=plots, out_dir=out_dir)
    warnings = provenance_warnings(runs, summary)
    text += "\n" + "\n".join(provenance_markdown(runs, warnings))
    files = [_write_csv(runs, out_dir / "runs.csv"), _write_csv(summary, out_dir / "summary.csv")]
    if n_resamples > 0:
        split = metric.split("/")[0] if "/" in metric else "test"
        intervals = confidence_intervals(runs, split, n_resamples=n_resamples)
        comparisons = paired_comparisons(runs, compare, over, split, n_resamples=n_resamples)
        text += "\n" + "\n".join(significance_markdown(intervals, comparisons, metric, root))
        files.append(_write_csv(intervals, out_dir / "intervals.csv"))
        if not comparisons.empty:
            files.append(_write_csv(comparisons, out_dir / "comparisons.csv"))
    files.append(_write_text(text + "\n", out_dir / "summary.md"))
    if hparams and (runs["status"] == FINISHED).any():
        files.append(write_hparams(runs, out_dir / "tensorboard", root))
    if verbose:
        print(text)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        problems = runs[runs["status"] != FINISHED]
        for _, run in problems.iterrows():
            print(
                f"{run['status'].upper()}: {run['run_dir']}"
                + (f" ({run['error']})" if run["error"] else ""),
                file=sys.stderr,
            )
        print(f"wrote {', '.join(str(f) for f in files + plots)}")
    return Report(runs, summary, out_dir, files, plots)


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m sed.report`."""
    parser = argparse.ArgumentParser(
        prog="python -m sed.report",
        description=(
            "Summarize a run directory or a Hydra multirun/sweep directory: one row per run\n"
            "(runs.csv), mean ± std over seeds and folds per setting (summary.csv, summary.md)\n"
            "and plots of --metric against sampler.gamma / p_min / p_max when they vary."
        ),
        epilog=(
            "run statuses:\n"
            "  finished    metrics.json parses\n"
            "  failed      metrics.json unreadable, or missing with a traceback in the run's logs\n"
            "  unfinished  no metrics.json and no error logged (running, killed, or crashed\n"
            "              without logging: Hydra prints a job's exception to stderr only)\n"
            "Failed and unfinished runs are listed in summary.md and printed.\n\n"
            "example:\n"
            "  python -m sed.report outputs/smoke/multiruns/2024-05-01_12-00-00 \\\n"
            "      --metric test/event_f1 --group-by sampler.gamma sampler.p_min"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "dir",
        type=Path,
        help="a run dir or a multirun/sweep dir (searched recursively for folders holding .hydra/)",
    )
    parser.add_argument(
        "--metric",
        default="test/event_f1",
        help="metrics.json key to rank settings by and to plot (default: %(default)s)",
    )
    parser.add_argument(
        "--group-by",
        nargs="+",
        metavar="KEY",
        default=None,
        help="override keys to group by (default: every override key and the run's method, "
        "except the --over keys); keys no run overrides are read from .hydra/config.yaml",
    )
    parser.add_argument(
        "--over",
        nargs="*",
        metavar="KEY",
        default=list(DEFAULT_OVER),
        help="keys averaged over when grouping by default (default: %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: DIR/report)"
    )
    parser.add_argument(
        "--compare",
        default="method",
        metavar="KEY",
        help="key whose values are compared pairwise on the same folds and seeds "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--resamples",
        type=int,
        default=1000,
        help="bootstrap resamples over test files for intervals and comparisons; 0 skips them "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--no-tensorboard",
        action="store_true",
        help="do not write tensorboard/ (the HParams view of every run)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for a user error, printed without a traceback)."""
    args = build_parser().parse_args(argv)
    try:
        report(
            args.dir,
            metric=args.metric,
            group_by=args.group_by,
            over=args.over,
            out=args.out,
            compare=args.compare,
            n_resamples=args.resamples,
            hparams=not args.no_tensorboard,
        )
    except ReportError as error:
        print(f"sed.report: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
