"""The TensorBoard HParams view of a report: every finished run's overrides and metrics, one
TensorBoard run each (torch is imported only here, and only when it is written)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from sed.report.collect import is_missing, metric_columns, override_columns
from sed.report.markdown import relative
from sed.report.status import FINISHED

__all__ = ["write_hparams"]


def write_hparams(runs: pd.DataFrame, log_dir: str | Path, root: Path | None = None) -> Path:
    """Every finished run's overrides (hyperparameters) and SPLIT/NAME metrics under `log_dir`, one
    TensorBoard run each, for the HParams view: `tensorboard --logdir LOG_DIR`."""
    from torch.utils.tensorboard import SummaryWriter

    log_dir = Path(log_dir)
    params = override_columns(runs)
    metrics = [m for m in metric_columns(runs) if "/" in m]
    with SummaryWriter(str(log_dir)) as writer:
        for _, run in runs[runs["status"] == FINISHED].iterrows():
            hparams = {k: _hparam(run[k]) for k in params if not is_missing(run[k])}
            values = {m: float(run[m]) for m in metrics if _is_number(run[m])}
            name = re.sub(r"[^\w.-]+", "_", relative(run["run_dir"], root))
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
