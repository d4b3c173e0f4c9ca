"""Finding the runs below a directory and reading each one's files into one table: overrides
(.hydra/overrides.yaml, parsed by Hydra's own override parser), config keys (.hydra/config.yaml),
status and metrics (sed.report.status) and provenance (environment.json)."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType
from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sed.errors import ReportError
from sed.report.status import run_status

__all__ = [
    "ALWAYS",
    "RESERVED",
    "RUN_SCALARS",
    "collect_runs",
    "find_run_dirs",
    "is_missing",
    "metric_columns",
    "override_columns",
    "parse_override",
]

RESERVED = ("run_dir", "status", "error", "commit", "environment")
# Config keys every run gets a column for, overridden or not: a method comparison
# (`method=baseline,tf,ss`) is grouped by method even where a run kept the default.
ALWAYS = ("method",)
# metrics.json keys without a `SPLIT/` prefix (DESIGN.md).
RUN_SCALARS = ("best_epoch", "epochs", "train_seconds")
_ABSENT = object()


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


@functools.cache
def _parser() -> OverridesParser:
    """Hydra's override parser (the grammar the runs' command lines were read with)."""
    return OverridesParser.create()


def parse_override(text: str) -> tuple[str, Any]:
    """Split a Hydra override (`key=value`, `+key=value`, `++key=value`, `~key`, `group@pkg=v`)
    into key and value as Hydra reads it (numbers, bools, null, quoted strings); list, dict and
    sweep values stay their text so that they can be grouped on; a deletion `~key` gives None."""
    text = str(text).strip()
    try:
        override = _parser().parse_override(text)
    except HydraException as error:
        raise ReportError(f"override {text!r} is not a Hydra override: {error}") from error
    if not override.key_or_group:
        raise ReportError(f"override {text!r} has no key")
    key = override.get_key_element().lstrip("+~")
    if override.is_delete():
        return key, None
    value = override.value()
    if override.value_type != ValueType.ELEMENT or isinstance(value, list | dict):
        return key, override.get_value_string()
    return key, value


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
    try:
        return dict(parse_override(item) for item in items)
    except ReportError as error:
        raise ReportError(f"{path}: {error}") from error


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
        status, error, metrics = run_status(run_dir)
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
        values = [row[key] for row in rows if key in row and not is_missing(row[key])]
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


def is_missing(value: Any) -> bool:
    """None, NaN or pd.NA (a key a run does not have)."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))
