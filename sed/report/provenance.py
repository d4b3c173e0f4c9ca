"""Where the runs come from: warnings when a group's runs, or the groups compared, mix commits or
package versions (each run's environment.json), and summary.md's Provenance section."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from sed.report.markdown import text
from sed.report.status import FINISHED

__all__ = ["provenance_markdown", "provenance_warnings"]


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
            setting = ", ".join(f"{k}={text(v)}" for k, v in zip(keys, key, strict=True))
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
