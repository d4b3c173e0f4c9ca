"""Frame-based metrics: micro F1 and error rate over all frames and classes (Drossos et al.)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sed.errors import EvaluationError
from sed.evaluation_checks import to_numpy

__all__ = ["frame_metrics"]


def _as_list(x: Any, name: str) -> list[np.ndarray]:
    """[T, C] array, [B, T, C] array/tensor or a sequence of [T, C] arrays -> list of arrays."""
    if hasattr(x, "detach"):
        x = to_numpy(x)
    if isinstance(x, np.ndarray):
        if x.ndim == 2:
            return [x]
        if x.ndim == 3:
            return list(x)
        raise EvaluationError(f"{name} must be [T, C] or [B, T, C], got shape {x.shape}")
    return [to_numpy(a) for a in x]


def frame_metrics(
    reference: Any, estimated: Any, masks: Any = None, threshold: float | None = None
) -> dict[str, float]:
    """Frame-based micro F1 and error rate over all frames and classes.

    reference / estimated: [T, C], [B, T, C] or lists of [T, C] (0/1; estimated may be
    probabilities when ``threshold`` is given, active where ``> threshold``). masks: [T],
    [B, T] or a list of [T] bools marking valid (unpadded) frames. Per frame,
    S = min(FN, FP), D = max(0, FN - FP), I = max(0, FP - FN); ER = (S + D + I) / N with N the
    active reference labels (Drossos et al. / sed_eval's segment-style counting).
    """
    refs, ests = _as_list(reference, "reference"), _as_list(estimated, "estimated")
    if len(refs) != len(ests):
        raise EvaluationError(f"{len(refs)} reference but {len(ests)} estimated arrays")
    if masks is None:
        mask_list: list[np.ndarray | None] = [None] * len(refs)
    else:
        mask_list = [np.asarray(m, dtype=bool) for m in _mask_list(masks)]
        if len(mask_list) != len(refs):
            raise EvaluationError(f"{len(refs)} arrays but {len(mask_list)} masks")
    tp = n_ref = n_sys = s = d = i = 0
    for k, (ref, est, mask) in enumerate(zip(refs, ests, mask_list, strict=True)):
        if ref.shape != est.shape or ref.ndim != 2:
            raise EvaluationError(
                f"item {k}: reference {ref.shape} and estimated {est.shape} must both be [T, C]"
            )
        ref = ref > 0.5
        if threshold is not None:
            est = est > threshold
        elif est.dtype != bool:
            if not np.isin(est, (0, 1)).all():
                raise EvaluationError(
                    f"item {k}: estimated frames are not 0/1; pass threshold= for probabilities"
                )
            est = est > 0.5
        if mask is not None:
            if mask.shape != (ref.shape[0],):
                raise EvaluationError(
                    f"item {k}: mask {mask.shape} does not match T={ref.shape[0]}"
                )
            ref, est = ref[mask], est[mask]
        tp_f = (ref & est).sum(axis=1)
        fn_f = (ref & ~est).sum(axis=1)
        fp_f = (~ref & est).sum(axis=1)
        tp += int(tp_f.sum())
        n_ref += int(ref.sum())
        n_sys += int(est.sum())
        s += int(np.minimum(fn_f, fp_f).sum())
        d += int(np.maximum(0, fn_f - fp_f).sum())
        i += int(np.maximum(0, fp_f - fn_f).sum())
    precision = tp / n_sys if n_sys else 0.0
    recall = tp / n_ref if n_ref else math.nan
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    rate = (lambda x: x / n_ref) if n_ref else (lambda x: math.nan)
    return {
        "frame_f1": float(f1),
        "frame_precision": float(precision),
        "frame_recall": float(recall),
        "frame_er": float(rate(s + d + i)),
        "frame_substitution_rate": float(rate(s)),
        "frame_deletion_rate": float(rate(d)),
        "frame_insertion_rate": float(rate(i)),
    }


def _mask_list(masks: Any) -> list[Any]:
    masks = to_numpy(masks) if hasattr(masks, "detach") else masks
    if isinstance(masks, np.ndarray):
        return [masks] if masks.ndim == 1 else list(masks)
    return list(masks)
