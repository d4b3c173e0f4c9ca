"""sed.io.atomic_write and the writers built on it: a failed write keeps the old file and leaves
no temporary file; every kind of result file goes through it."""

from __future__ import annotations

import json
import math
import os
import stat

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

import sed.io
from sed.annotations import write_tsv
from sed.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from sed.io import atomic_write, write_csv, write_json, write_text
from sed.plots import save_figure


def test_atomic_write_replaces_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "deep" / "er" / "file.txt"
    write_text("old\n", path)
    write_text("a\r\nb\n", path)
    assert path.read_bytes() == b"a\r\nb\n"  # newlines exactly as given
    assert [p.name for p in path.parent.iterdir()] == ["file.txt"]
    mode = stat.S_IMODE(path.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # honours the umask, unlike mkstemp's private files


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "file.bin"
    atomic_write(path, lambda handle: handle.write(b"old"))

    def half(handle):
        handle.write(b"new but incomplete")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, half)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_json_nan_becomes_null(tmp_path):
    path = write_json({"b": 1.5, "a": math.nan, "c": math.inf}, tmp_path / "m.json")
    text = path.read_text()
    assert json.loads(text) == {"a": None, "b": 1.5, "c": None}
    assert text.index('"a"') < text.index('"b"') and text.endswith("}\n")


def test_csv_matches_pandas(tmp_path):
    table = pd.DataFrame({"x": [1.0, 2.5], "y": ["a", "b"]})
    path = write_csv(table, tmp_path / "t.csv", index=False, float_format="%.3f")
    assert path.read_text() == table.to_csv(index=False, float_format="%.3f")


def _failing_atomic_write(calls):
    real = sed.io.atomic_write

    def fail_after_writing(path, write, text=False):
        calls.append(path)

        def broken(handle):
            write(handle)
            raise OSError("simulated crash after the payload")

        return real(path, broken, text=text)

    return fail_after_writing


@pytest.mark.parametrize("kind", ["checkpoint", "figure", "tsv", "json", "csv"])
def test_every_writer_is_atomic(kind, tmp_path, monkeypatch):
    """Each writer keeps the previous file when its write fails half way."""
    path = tmp_path / f"out.{kind}"
    events = pd.DataFrame(
        {"filename": ["a.wav"], "onset": [0.0], "offset": [1.0], "event_label": ["dog"]}
    )
    writers = {
        "checkpoint": lambda: save_checkpoint({"w": torch.ones(2)}, path),
        "figure": lambda: save_figure(Figure(), path),
        "tsv": lambda: write_tsv(events, path),
        "json": lambda: write_json({"a": 1}, path),
        "csv": lambda: write_csv(events, path),
    }
    writers[kind]()
    before = path.read_bytes()
    calls: list = []
    failing = _failing_atomic_write(calls)
    for module in ("sed.io", "sed.checkpoints", "sed.plots"):
        monkeypatch.setattr(f"{module}.atomic_write", failing)
    # save_checkpoint reports the failure as a CheckpointError that says the old file is intact.
    with pytest.raises((OSError, CheckpointError), match="simulated crash"):
        writers[kind]()
    assert calls, f"{kind} does not write through sed.io.atomic_write"
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_checkpoint_round_trip(tmp_path):
    state = {"w": torch.arange(3.0), "classes": ["a", "b"], "arr": np.arange(2).tolist()}
    path = save_checkpoint(state, tmp_path / "ckpt" / "best.pt")
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["w"], state["w"]) and loaded["classes"] == ["a", "b"]
