"""sed.plots, sed.event_roll, sed.sweep_plots: every figure is written as a non-empty PNG, and the event roll puts the reference
spans, predicted bars and probability curves where the inputs say."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from sed import event_roll, plots, sweep_plots
from sed.event_roll import ESTIMATED_GID, REFERENCE_GID, plot_event_roll
from sed.plots import PlotError, plot_learning_curves, plot_teacher_forcing
from sed.sweep_plots import plot_metric_vs_params

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5000  # a real figure, not an empty canvas
    assert not list(path.parent.glob(f".{path.stem}.*"))  # no temporary file left behind


def history(epochs: int = 12, event_metrics: bool = True) -> pd.DataFrame:
    e = np.arange(1, epochs + 1)
    table = pd.DataFrame(
        {
            "epoch": e,
            "train_loss": 0.5 / e,
            "validation_loss": 0.5 / e + 0.02 * (e > 7) * (e - 7),
            "validation/frame_f1": 1 - 0.6 / e,
            "validation/frame_er": 0.6 / e + 0.1,
        }
    )
    if event_metrics:
        table["validation/event_f1"] = 0.8 - 0.7 / e
        table["validation/event_er"] = 1.2 / e + 0.3
        table["p_tf_start"] = np.linspace(0.9, 0.1, epochs)
        table["lr"] = 1e-3 * 0.9**e
        table["seconds"] = 3.0
    return table


@pytest.mark.parametrize("event_metrics", [True, False])
def test_learning_curves_png(tmp_path, event_metrics):
    path = tmp_path / "plots" / "learning_curves.png"
    fig = plot_learning_curves(
        history(event_metrics=event_metrics), path, monitor="validation/frame_f1", best_epoch=7
    )
    assert_png(path)
    axes = [a for a in fig.axes if a.get_title()]
    titles = " ".join(a.get_title() for a in axes)
    assert "loss" in titles.lower() and "F1" in titles and "error" in titles.lower()
    assert ("Teacher forcing" in titles) == event_metrics
    for ax in axes:  # the best epoch is marked on every panel
        assert any(list(line.get_xdata()) == [7, 7] for line in ax.lines), ax.get_title()
    f1_ax = next(a for a in axes if "F1" in a.get_title())
    labels = [t.get_text() for t in f1_ax.get_legend().get_texts()]
    assert "validation/frame_f1 (monitored)" in labels
    assert ("validation/event_f1" in labels) == event_metrics
    assert axes[-1].get_xlabel() == "epoch"


def test_learning_curves_infers_best_epoch_from_monitor(tmp_path):
    table = history()
    fig = plot_learning_curves(table, tmp_path / "lc.png", monitor="validation_loss")
    expected = int(table.loc[table["validation_loss"].idxmin(), "epoch"])
    assert any(list(line.get_xdata()) == [expected, expected] for line in fig.axes[0].lines)


def test_learning_curves_errors(tmp_path):
    with pytest.raises(PlotError, match="epoch"):
        plot_learning_curves(pd.DataFrame({"loss": [1.0]}), tmp_path / "x.png")
    with pytest.raises(PlotError, match="nope"):
        plot_learning_curves(history(), tmp_path / "x.png", monitor="nope")


def test_teacher_forcing_png(tmp_path):
    rng = np.random.default_rng(0)
    n, per_epoch = 300, 30
    batches = pd.DataFrame(
        {
            "batch": np.arange(n),
            "epoch": np.arange(n) // per_epoch + 1,
            "p_tf": np.clip(0.9 - np.arange(n) / n, 0.05, 0.9),
            "loss": 0.7 * np.exp(-np.arange(n) / 100) + rng.normal(0, 0.03, n),
        }
    )
    path = tmp_path / "tf.png"
    fig = plot_teacher_forcing(batches, path)
    assert_png(path)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "training batch"
    p_line = next(line for line in ax.lines if "p_tf" in line.get_label())
    np.testing.assert_allclose(p_line.get_ydata(), batches["p_tf"])
    # Every other epoch is shaded: 10 epochs -> 5 spans, the first covering batches 0..29. The
    # shading sits on the loss axis, beneath the loss lines (on top of them it hid the loss).
    loss_ax = fig.axes[1]
    spans = [p for p in loss_ax.patches if isinstance(p, Rectangle)]
    assert all(p.get_zorder() < line.get_zorder() for p in spans for line in loss_ax.lines)
    assert len(spans) == 5
    assert spans[0].get_x() == pytest.approx(-0.5) and spans[0].get_width() == pytest.approx(30)
    with pytest.raises(PlotError, match="p_tf"):
        plot_teacher_forcing(batches.drop(columns="p_tf"), path)


def roll_inputs(classes: list[str], hop: float = 0.02, seconds: float = 10.0):
    frames = int(seconds / hop)
    rng = np.random.default_rng(1)
    features = rng.normal(-40, 10, size=(frames, 64)).astype(np.float32)
    reference = pd.DataFrame(
        {
            "filename": "a.wav",
            "onset": [0.5, 6.0, 2.0, 7.5],
            "offset": [1.5, 8.25, 4.0, 9.0],
            "event_label": [classes[0], classes[0], classes[-1], classes[len(classes) // 2]],
        }
    )
    probs = rng.uniform(0, 0.3, size=(frames, len(classes))).astype(np.float32)
    probs[int(2.1 / hop) : int(3.9 / hop), -1] = 0.9
    estimated = pd.DataFrame(
        {"filename": "a.wav", "onset": [2.1], "offset": [3.9], "event_label": [classes[-1]]}
    )
    return features, reference, probs, estimated


def class_axes(fig: Figure, classes: list[str]) -> dict[str, object]:
    by_label = {a.get_ylabel(): a for a in fig.axes}
    return {name: by_label[name] for name in classes}


def spans(ax, gid: str) -> list[tuple[float, float]]:
    return sorted(
        (round(p.get_x(), 6), round(p.get_x() + p.get_width(), 6))
        for p in ax.patches
        if p.get_gid() == gid
    )


def roll(classes, path, **kwargs):
    """plot_event_roll of roll_inputs(classes) at a 20 ms hop, written to `path`."""
    return plot_event_roll(*roll_inputs(classes), classes, 0.02, path, **kwargs)


@pytest.mark.parametrize("num_classes", [3, 16])
def test_event_roll_png_and_spans(tmp_path, num_classes):
    classes = [f"class_{k:02d}_{'long_name' if k % 3 == 0 else 'x'}" for k in range(num_classes)]
    features, reference, probs, estimated = roll_inputs(classes)
    path = tmp_path / f"roll_{num_classes}.png"
    fig = roll(classes, path, threshold=0.5, title="test: a.wav")
    assert_png(path)
    rows = class_axes(fig, classes)  # one row per class, labelled with the class name
    for name, ax in rows.items():
        expected = sorted(
            reference.loc[reference.event_label == name, ["onset", "offset"]].itertuples(
                index=False, name=None
            )
        )
        assert spans(ax, REFERENCE_GID) == expected, name
        assert spans(ax, ESTIMATED_GID) == ([(2.1, 3.9)] if name == classes[-1] else []), name
    # The probability curve of a class is that class's column, on the time axis in seconds.
    k = num_classes // 2
    curve = next(line for line in rows[classes[k]].lines if len(line.get_xdata()) > 2)
    np.testing.assert_allclose(curve.get_ydata()[:-1], probs[:, k])
    assert curve.get_xdata()[-1] == pytest.approx(10.0)
    spec = fig.axes[0]
    assert spec.get_ylabel() == "mel band" and spec.get_title() == "test: a.wav"
    assert spec.get_xlim() == pytest.approx((0.0, 10.0))
    assert spec.images[0].get_extent()[1] == pytest.approx(10.0)
    assert fig.axes[-1].get_xlabel() == "time (s)"
    width, height = fig.get_size_inches()
    assert height >= 0.4 * num_classes  # rows stay readable as classes are added


def test_event_roll_per_class_thresholds(tmp_path):
    classes = ["a", "b", "c"]
    features, reference, probs, estimated = roll_inputs(classes)
    fig = roll(classes, tmp_path / "r.png", threshold={"a": 0.3, "b": 0.5, "c": 0.7})
    for name, value in zip(classes, [0.3, 0.5, 0.7], strict=True):
        ax = class_axes(fig, classes)[name]
        assert any(list(line.get_ydata()) == [value, value] for line in ax.lines)


def test_event_roll_errors(tmp_path):
    classes = ["a", "b"]
    features, reference, probs, estimated = roll_inputs(classes)
    with pytest.raises(PlotError, match="probs"):
        plot_event_roll(
            features, reference, probs[:, :1], estimated, classes, 0.02, tmp_path / "r.png"
        )
    bad = reference.assign(event_label=["a", "a", "zzz", "b"])
    with pytest.raises(PlotError, match="zzz"):
        plot_event_roll(features, bad, probs, estimated, classes, 0.02, tmp_path / "r.png")
    with pytest.raises(PlotError, match="3 values"):
        plot_event_roll(
            features,
            reference,
            probs,
            estimated,
            classes,
            0.02,
            tmp_path / "r.png",
            threshold=[0.1, 0.2, 0.3],
        )


def sweep_summary() -> pd.DataFrame:
    rows = []
    for gamma in [0.01, 0.1, 1.0]:
        for p_min in [0.0, 0.1]:
            rows.append(
                {
                    "sampler.gamma": gamma,
                    "sampler.p_min": p_min,
                    "n": 3,
                    "test/event_f1_mean": 0.3 + gamma / 4 + p_min,
                    "test/event_f1_std": 0.02,
                }
            )
    return pd.DataFrame(rows)


def test_metric_vs_params_png(tmp_path):
    path = tmp_path / "sweep.png"
    table = sweep_summary()
    fig = plot_metric_vs_params(table, "test/event_f1", ["sampler.gamma", "sampler.p_min"], path)
    assert_png(path)
    gamma_ax, p_min_ax = fig.axes
    assert gamma_ax.get_xlabel() == "sampler.gamma" and "test/event_f1" in gamma_ax.get_ylabel()
    # One line per value of the other param, each sorted by the panel's param.
    labels = [t.get_text() for t in gamma_ax.get_legend().get_texts()]
    assert labels == ["sampler.p_min=0.0", "sampler.p_min=0.1"]
    container = next(c for c in gamma_ax.containers if c.get_label() == labels[1])
    data_line = container.lines[0]
    np.testing.assert_allclose(data_line.get_xdata(), [0.01, 0.1, 1.0])
    np.testing.assert_allclose(data_line.get_ydata(), [0.4025, 0.425, 0.65])
    assert gamma_ax.get_xscale() == "log"  # gamma spans two decades
    assert len([t.get_text() for t in p_min_ax.get_legend().get_texts()]) == 3


def test_metric_vs_params_from_runs(tmp_path):
    runs = pd.DataFrame(
        {
            "sampler.gamma": [0.1, 0.1, 0.5, 0.5],
            "seed": [1, 2, 1, 2],
            "test/event_f1": [0.2, 0.4, 0.5, 0.5],
        }
    )
    fig = plot_metric_vs_params(runs, "test/event_f1", ["sampler.gamma"], tmp_path / "r.png")
    (container,) = fig.axes[0].containers
    np.testing.assert_allclose(container.lines[0].get_ydata(), [0.3, 0.5])
    # error bars: std ddof=1 of (0.2, 0.4) = 0.1414; the bar spans mean +/- std
    segments = container.lines[2][0].get_segments()
    assert segments[0][1][1] - segments[0][0][1] == pytest.approx(2 * np.std([0.2, 0.4], ddof=1))
    with pytest.raises(PlotError, match="test/nope"):
        plot_metric_vs_params(runs, "test/nope", ["sampler.gamma"], tmp_path / "r.png")


def test_moved_figures_stay_importable_from_sed_plots() -> None:
    """The event roll and sweep figures are still sed.plots names (notebooks, sed.report)."""
    assert plots.plot_event_roll is event_roll.plot_event_roll
    assert plots.REFERENCE_GID == REFERENCE_GID and plots.ESTIMATED_GID == ESTIMATED_GID
    assert plots.plot_metric_vs_params is sweep_plots.plot_metric_vs_params
    with pytest.raises(AttributeError, match="no attribute 'plot_nothing'"):
        plots.plot_nothing  # noqa: B018
