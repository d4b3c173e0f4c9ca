"""sed.report on fake Hydra run and multirun directories with known metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from sed.report import (
    ReportError,
    collect_runs,
    find_run_dirs,
    main,
    parse_override,
    report,
    summarize,
)
from sed.stats import METRICS as STATS_METRICS
from sed.stats import bootstrap, per_file_counts

# sampler.gamma -> test/event_f1 of seeds 1, 2, 3
F1 = {0.1: [0.2, 0.3, 0.4], 0.5: [0.5, 0.5, 0.8]}
# Hand-computed mean and std (ddof=1): 0.5 -> sqrt(((-0.1)^2 + (-0.1)^2 + 0.2^2) / 2) = sqrt(0.03)
EXPECTED = {0.1: (0.3, 0.1), 0.5: (0.6, math.sqrt(0.03))}
TRACEBACK = """[2024-05-01 12:00:00,000][__main__][INFO] - epoch 1
Traceback (most recent call last):
  File "sed/train.py", line 10, in main
    raise RuntimeError("boom")
RuntimeError: boom
"""


def make_run(run_dir, overrides, metrics=None, log=None, config=None):
    hydra = run_dir / ".hydra"
    hydra.mkdir(parents=True)
    if overrides is not None:
        (hydra / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (hydra / "config.yaml").write_text(
        yaml.safe_dump(
            config
            or {
                "seed": 1234,
                "sampler": {"_target_": "sed.sampling.ScheduledSampler", "gamma": 0.125},
            }
        )
    )
    if metrics is not None:
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    if log is not None:
        (run_dir / "train.log").write_text(log)
    return run_dir


@pytest.fixture
def multirun(tmp_path):
    """2 gammas x 3 seeds finished (jobs 0-5), job 6 failed with a traceback, job 7 unfinished."""
    root = tmp_path / "multiruns" / "2024-05-01_12-00-00"
    job = 0
    for gamma, values in F1.items():
        for seed, f1 in zip([1, 2, 3], values, strict=True):
            make_run(
                root / str(job),
                ["+experiment=smoke", f"sampler.gamma={gamma}", f"seed={seed}"],
                {
                    "test/event_f1": f1,
                    "test/event_er": 1 - f1,
                    "best_epoch": seed,
                    "epochs": 10,
                    "train_seconds": 3.5,
                },
            )
            job += 1
    make_run(root / "6", ["+experiment=smoke", "sampler.gamma=0.5", "seed=4"], log=TRACEBACK)
    make_run(root / "7", ["+experiment=smoke", "sampler.gamma=0.1", "seed=4"], log="epoch 1\n")
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def test_parse_override():
    assert parse_override("+experiment=smoke") == ("experiment", "smoke")
    assert parse_override("sampler.gamma=0.1") == ("sampler.gamma", 0.1)
    assert parse_override("seed=2") == ("seed", 2) and isinstance(parse_override("seed=2")[1], int)
    assert parse_override("++optimizer.lr=1e-3") == ("optimizer.lr", 0.001)
    assert parse_override("data.classes=[a,b]") == ("data.classes", "[a,b]")
    assert parse_override("model.label_feedback=false") == ("model.label_feedback", False)
    assert parse_override("~trainer.max_minutes") == ("trainer.max_minutes", None)


def test_collect_runs_statuses_overrides_metrics(multirun):
    runs = collect_runs(multirun)
    assert len(runs) == 8
    assert [r.rsplit("/", 1)[1] for r in runs["run_dir"]] == [str(i) for i in range(8)]
    status = dict(zip(runs["run_dir"].str.rsplit("/", n=1).str[1], runs["status"], strict=True))
    assert [status[str(i)] for i in range(6)] == ["finished"] * 6
    assert status["6"] == "failed" and status["7"] == "unfinished"
    failed = runs[runs["status"] == "failed"].iloc[0]
    assert "RuntimeError: boom" in failed["error"] and "train.log" in failed["error"]
    assert runs.loc[runs["status"] == "unfinished", "error"].iloc[0] == ""
    assert runs["sampler.gamma"].tolist() == [0.1] * 3 + [0.5] * 3 + [0.5, 0.1]
    assert runs["seed"].tolist() == [1, 2, 3, 1, 2, 3, 4, 4]
    assert set(runs["experiment"]) == {"smoke"}
    assert runs["test/event_f1"].iloc[:6].tolist() == F1[0.1] + F1[0.5]
    assert runs["test/event_f1"].iloc[6:].isna().all()
    assert runs.attrs["overrides"] == ["experiment", "sampler.gamma", "seed"]
    assert "test/event_er" in runs.attrs["metrics"] and "best_epoch" in runs.attrs["metrics"]


def check_summary(summary):
    assert summary["sampler.gamma"].tolist() == [0.1, 0.5]
    assert summary["n"].tolist() == [3, 3]
    assert summary["n_failed"].tolist() == [0, 1]
    assert summary["n_unfinished"].tolist() == [1, 0]
    for _, row in summary.iterrows():
        mean, std = EXPECTED[row["sampler.gamma"]]
        assert row["test/event_f1_mean"] == pytest.approx(mean)
        assert row["test/event_f1_std"] == pytest.approx(std)
        assert row["test/event_er_mean"] == pytest.approx(1 - mean)
    assert summary["best_epoch_mean"].tolist() == [2.0, 2.0]


def test_summarize_groups_by_overrides_except_seed(multirun):
    summary = summarize(collect_runs(multirun))
    assert list(summary.columns[:5]) == [
        "experiment",
        "sampler.gamma",
        "n",
        "n_failed",
        "n_unfinished",
    ]
    assert "seed" not in summary.columns
    check_summary(summary)


def test_summarize_explicit_group_by_and_over(multirun):
    runs = collect_runs(multirun)
    check_summary(summarize(runs, group_by=["sampler.gamma"]))
    # Grouping by nothing averages everything: six finished runs, one of each other status.
    (row,) = summarize(runs, group_by=[]).to_dict("records")
    assert (row["n"], row["n_failed"], row["n_unfinished"]) == (6, 1, 1)
    assert row["test/event_f1_mean"] == pytest.approx(sum(F1[0.1] + F1[0.5]) / 6)
    # Not averaging over seeds: one group per (gamma, seed).
    assert len(summarize(runs, over=())) == 8
    with pytest.raises(ReportError, match="sampler.nope"):
        summarize(runs, group_by=["sampler.nope"])


def test_report_writes_tables_markdown_and_plot(multirun, capsys):
    result = report(multirun, metric="test/event_f1")
    out = multirun / "report"
    assert result.out_dir == out
    for name in ["runs.csv", "summary.csv", "summary.md"]:
        assert (out / name).stat().st_size > 0
    runs_csv = pd.read_csv(out / "runs.csv")
    assert len(runs_csv) == 8 and sorted(runs_csv["status"].unique()) == [
        "failed",
        "finished",
        "unfinished",
    ]
    summary_csv = pd.read_csv(out / "summary.csv")
    assert summary_csv["test/event_f1_std"].round(6).tolist() == [0.1, round(math.sqrt(0.03), 6)]
    (plot,) = result.plots
    assert plot.parent == out / "plots" and plot.read_bytes()[:4] == b"\x89PNG"
    assert plot.stat().st_size > 5000

    md = (out / "summary.md").read_text()
    assert "| sampler.gamma | n | failed | unfinished | test/event_f1 |" in md
    assert "| 0.1 | 3 | 0 | 1 | 0.300 ± 0.100 |" in md
    assert "| 0.5 | 3 | 1 | 0 | 0.600 ± 0.173 |" in md
    assert "`experiment=smoke`" in md  # shared setting, stated once instead of a column
    assert "8 run(s): 6 finished, 1 failed, 1 unfinished" in md
    assert "(averaged over: seed)" in md
    failures = md.split("## Failed and unfinished runs")[1]
    assert (
        "`6` | failed | experiment=smoke sampler.gamma=0.5 seed=4 | train.log: RuntimeError: boom"
        in failures
    )
    assert "`7` | unfinished |" in failures
    assert f"]({plot.relative_to(out).as_posix()})" in md
    captured = capsys.readouterr()
    assert "FAILED: " in captured.err and "RuntimeError: boom" in captured.err
    assert "UNFINISHED: " in captured.err
    assert "0.600 ± 0.173" in captured.out


def test_report_single_run_dir(tmp_path):
    run = make_run(
        tmp_path / "runs" / "2024-05-01_12-00-00",
        [],
        {"test/event_f1": 0.42, "test/event_er": 0.9, "best_epoch": 3},
    )
    result = report(run, out=tmp_path / "out", verbose=False)
    assert len(result.runs) == 1 and result.runs["status"].iloc[0] == "finished"
    (row,) = result.summary.to_dict("records")
    assert row["n"] == 1 and row["test/event_f1_mean"] == pytest.approx(0.42)
    assert math.isnan(row["test/event_f1_std"])
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "| n | test/event_f1 |" in md and "| 1 | 0.420 |" in md
    assert "None: every run finished." in md
    assert result.plots == []  # no sampler parameter varies


def test_nested_run_dirs_and_natural_order(tmp_path):
    for job in [10, 2, 1]:
        make_run(tmp_path / "sweep" / "a" / str(job), [f"seed={job}"], {"test/event_f1": job / 10})
    found = find_run_dirs(tmp_path)
    assert [p.name for p in found] == ["1", "2", "10"]
    runs = collect_runs(tmp_path)
    assert runs["seed"].tolist() == [1, 2, 10]


def test_corrupt_metrics_is_failed(tmp_path):
    run = make_run(tmp_path / "0", ["seed=1"])
    (run / "metrics.json").write_text('{"test/event_f1": 0.')
    runs = collect_runs(tmp_path)
    assert runs["status"].tolist() == ["failed"]
    assert "metrics.json unreadable" in runs["error"].iloc[0]


MULTILINE = """[2024-05-01 12:00:00,000][sed.train][ERROR] - training failed
Traceback (most recent call last):
  File "sed/train.py", line 10, in main
    raise PredictionError(message)
sed.predict.PredictionError: 1 of 3 input file(s) could not be read:
  broken.wav: cannot read audio file
[2024-05-01 12:00:01,000][sed.train][INFO] - next record
"""
# What Hydra writes to a job's stderr (.submitit/*.err) when a job fails.
HYDRA_STDERR = """Error executing job with overrides: ['seed=1']
Traceback (most recent call last):
  File "sed/train.py", line 10, in main
    raise ValueError(message)
ValueError: first line
second line

Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.
"""


@pytest.mark.parametrize(
    ("name", "log", "error"),
    [
        (
            "train.log",
            MULTILINE,
            "train.log: sed.predict.PredictionError: 1 of 3 input file(s) could not be read:\n"
            "  broken.wav: cannot read audio file",
        ),
        ("job.err", HYDRA_STDERR, "job.err: ValueError: first line\nsecond line"),
        (
            "train.log",
            "[2024-05-01 12:00:00,000][__main__][ERROR] - sed.train: error: a\n  b\n",
            "train.log: sed.train: error: a\n  b",
        ),
    ],
)
def test_the_error_column_keeps_every_line_of_the_reason(tmp_path, name, log, error):
    run = make_run(tmp_path / "0", ["seed=1"])
    (run / name).write_text(log)
    runs = collect_runs(tmp_path)
    assert runs["status"].tolist() == ["failed"]
    assert runs["error"].tolist() == [error]


def test_group_by_key_from_config(multirun):
    # `sampler._target_` is overridden by no run: it is read from each run's config.yaml.
    summary = report(multirun, group_by=["sampler._target_"], verbose=False).summary
    assert summary["sampler._target_"].tolist() == ["sed.sampling.ScheduledSampler"]
    assert summary["n"].tolist() == [6]


def test_cli(multirun, tmp_path, capsys):
    assert main([str(multirun), "--metric", "test/event_er", "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "summary.md").read_text()
    assert "| sampler.gamma | n | failed | unfinished | test/event_er |" in md
    assert "Best `test/event_er`: **0.400 ± 0.173**" in md  # error rates: lower is better
    capsys.readouterr()

    assert main([str(multirun), "--metric", "test/nope"]) == 2
    err = capsys.readouterr().err
    assert "test/nope" in err and "test/event_f1" in err

    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    assert main([str(empty)]) == 2
    assert "no runs found" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 2
    assert main([str(multirun), "--group-by", "sampler.nope"]) == 2  # in no override or config
    assert "sampler.nope" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert "--group-by" in help_text and "unfinished" in help_text


def test_no_runs_error(tmp_path):
    with pytest.raises(ReportError, match="no runs found"):
        collect_runs(tmp_path)


def test_keys_missing_from_some_runs(tmp_path):
    make_run(tmp_path / "0", ["seed=1", "model.hidden=64"], {"test/event_f1": 0.5})
    make_run(tmp_path / "1", ["seed=2", "model.hidden=64"], {"test/event_f1": 0.7})
    make_run(tmp_path / "2", ["seed=1"], {"test/event_f1": 0.1})
    result = report(tmp_path, verbose=False)
    assert str(result.runs["model.hidden"].dtype) == "Int64"  # not 64.0 because of the gap
    summary = result.summary
    assert summary["n"].tolist() == [2, 1]
    assert summary["test/event_f1_mean"].tolist() == pytest.approx([0.6, 0.1])
    md = (tmp_path / "report" / "summary.md").read_text()
    assert "| 64 | 2 | 0.600 ± 0.141 |" in md and "| – | 1 | 0.100 |" in md


def test_groups_by_method_also_where_a_run_kept_the_default(tmp_path):
    """`python -m sed.train -m +experiment=X method=baseline,tf,ss seed=1,2`: one row per method;
    a run that kept the default method (no `method=` override) joins its group from config.yaml."""
    f1 = {"baseline": [0.3, 0.4], "tf": [0.2, 0.2], "ss": [0.5, 0.6]}
    job = 0
    for method, values in f1.items():
        for seed, value in enumerate(values, 1):
            overrides = ["+experiment=tut2017", f"seed={seed}"]
            if method != "ss" or seed == 1:
                overrides.append(f"method={method}")
            make_run(
                tmp_path / str(job),
                overrides,
                {"test/event_f1": value},
                config={"seed": seed, "method": method},
            )
            job += 1
    summary = report(tmp_path, verbose=False).summary
    assert summary["method"].tolist() == ["baseline", "ss", "tf"]
    assert summary["n"].tolist() == [2, 2, 2]
    assert summary["test/event_f1_mean"].tolist() == pytest.approx([0.35, 0.55, 0.2])


def test_config_keys_follow_interpolations(tmp_path):
    # Hydra saves config.yaml unresolved: sampler.gamma reads the top-level gamma.
    for job, gamma in enumerate([0.1, 0.5]):
        config = {"gamma": gamma, "sampler": {"gamma": "${gamma}"}, "out": "${hydra:runtime.x}"}
        make_run(tmp_path / str(job), [f"seed={job}"], {"test/event_f1": gamma}, config=config)
    runs = collect_runs(tmp_path, config_keys=["sampler.gamma", "out"])
    assert runs["sampler.gamma"].tolist() == [0.1, 0.5]
    assert "out" not in runs  # unresolvable outside Hydra: no column rather than a wrong value


def test_config_keys_keep_literal_nulls(tmp_path):
    # grad_clip: null is a setting (no clipping), not a missing key: it gets its column.
    for job in range(2):
        config = {"trainer": {"grad_clip": None}}
        make_run(tmp_path / str(job), [f"seed={job}"], {"test/event_f1": 0.5}, config=config)
    runs = collect_runs(tmp_path, config_keys=["trainer.grad_clip"])
    assert runs["trainer.grad_clip"].isna().all() and len(runs) == 2


# --------------------------------------------------------------------------- is it better?


def _events(seed: int, n_files: int = 20, miss: float = 0.0):
    """Reference events of `n_files` 10 s files, and a system that finds each with probability
    1 - miss (shifted by up to 0.1 s) and inserts a few."""
    rng = np.random.default_rng(seed)
    ref, est = [], []
    for i in range(n_files):
        name = f"file{i:02d}.wav"
        for _ in range(int(rng.integers(1, 4))):
            onset = float(rng.uniform(0, 8))
            event = (name, onset, onset + float(rng.uniform(0.5, 2)), str(rng.choice(["a", "b"])))
            ref.append(event)
            if rng.random() >= miss:
                est.append((name, event[1] + 0.05, event[2] - 0.05, event[3]))
        if miss and rng.random() < 0.3:
            est.append((name, 1.0, 2.0, "a"))
    cols = ["filename", "onset", "offset", "event_label"]
    durations = {f"file{i:02d}.wav": 10.0 for i in range(n_files)}
    return pd.DataFrame(ref, columns=cols), pd.DataFrame(est, columns=cols), durations


def _counts_run(run_dir, overrides, miss, seed=0):
    """A finished run whose per_file/test.csv holds the counts of the _events system."""
    ref, est, durations = _events(seed, miss=miss)
    counts = per_file_counts(ref, est, ["a", "b"], durations)
    run = make_run(run_dir, overrides, {"test/event_f1": 0.5, "test/event_er": 0.5})
    (run / "per_file").mkdir()
    counts.to_csv(run / "per_file" / "test.csv")
    return run, counts


def test_bootstrap_intervals_contain_the_point_estimate(tmp_path):
    _, counts = _counts_run(tmp_path / "0", ["method=ss", "seed=1"], miss=0.3)
    result = report(tmp_path, n_resamples=200, verbose=False, hparams=False)
    table = pd.read_csv(result.out_dir / "intervals.csv")
    assert sorted(table["metric"]) == sorted(f"test/{m}" for m in STATS_METRICS)
    for _, row in table.iterrows():
        assert row["low"] <= row["value"] <= row["high"], row["metric"]
        assert row["low"] < row["high"]  # 20 files that differ: a real interval
    f1 = table.set_index("metric").loc["test/event_f1", "value"]
    assert f1 == pytest.approx(bootstrap(counts, ["event_f1"], n_resamples=10)["event_f1"][0])
    md = (result.out_dir / "summary.md").read_text()
    assert "## Is it better?" in md and f"{f1:.3f} [" in md


def test_paired_comparison_of_a_run_with_itself_is_zero(tmp_path):
    for method in ("a", "b"):
        _counts_run(tmp_path / method, [f"method={method}", "seed=1"], miss=0.3)
    result = report(tmp_path, n_resamples=200, verbose=False, hparams=False)
    table = pd.read_csv(result.out_dir / "comparisons.csv")
    assert len(table) == len(STATS_METRICS)
    assert (table["a"] == "a").all() and (table["b"] == "b").all() and (table["n_pairs"] == 1).all()
    assert (table[["difference", "low", "high"]] == 0).all().all()


def test_paired_comparison_pairs_seeds_and_sees_a_better_method(tmp_path):
    for seed in (1, 2):
        _counts_run(tmp_path / f"good{seed}", ["method=good", f"seed={seed}"], 0.0, seed)
        _counts_run(tmp_path / f"bad{seed}", ["method=bad", f"seed={seed}"], 0.5, seed)
    _counts_run(tmp_path / "bad3", ["method=bad", "seed=3"], 0.5, 3)  # no partner: not paired
    table = report(tmp_path, n_resamples=200, verbose=False, hparams=False).out_dir
    comparisons = pd.read_csv(table / "comparisons.csv").set_index("metric")
    f1 = comparisons.loc["test/event_f1"]
    assert (f1["a"], f1["b"], f1["n_pairs"], f1["n_files"]) == ("bad", "good", 2, 40)
    assert f1["high"] < 0 and f1["low"] <= f1["difference"] <= f1["high"]  # bad - good < 0
    assert comparisons.loc["test/event_er", "low"] > 0


def test_hparams_for_tensorboard(multirun):
    out = report(multirun, verbose=False).out_dir / "tensorboard"
    runs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert runs == [str(job) for job in range(6)]  # the finished runs only
    data = b"".join(p.read_bytes() for p in (out / "3").glob("events.out.tfevents.*"))
    assert b"hparams" in data and b"sampler.gamma" in data and b"test/event_f1" in data


# --------------------------------------------------------------------------- status.json


def write_status(run_dir, status, message=None):
    """status.json as the entry points write it."""
    record = {
        "status": status,
        "entry": "train",
        "message": message,
        "started": "2024-05-01T12:00:00+00:00",
        "ended": None if status == "running" else "2024-05-01T12:05:00+00:00",
    }
    (run_dir / "status.json").write_text(json.dumps(record))


@pytest.fixture
def recorded(tmp_path):
    """One run per status.json status, and each without its status.json beside them: finished
    (0), failed with a message that the log contradicts (1), interrupted (2), running (3)."""
    root = tmp_path / "sweep"
    finished = make_run(root / "0", ["seed=1"], {"test/event_f1": 0.5})
    write_status(finished, "finished")
    failed = make_run(root / "1", ["seed=2"], log=TRACEBACK)
    write_status(failed, "failed", "DivergenceError: the loss is NaN at epoch 3")
    interrupted = make_run(root / "2", ["seed=3"], log="epoch 1\n")
    write_status(interrupted, "interrupted", "interrupted after epoch 1; resume with: ...")
    running = make_run(root / "3", ["seed=4"], log="epoch 1\n")
    write_status(running, "running")
    return root


def statuses(root):
    runs = collect_runs(root)
    names = runs["run_dir"].str.rsplit("/", n=1).str[1]
    return dict(zip(names, zip(runs["status"], runs["error"], strict=True), strict=True))


def test_status_json_decides_the_status(recorded):
    found = statuses(recorded)
    assert found["0"] == ("finished", "")
    # The message, not the log's traceback: status.json is read before the logs.
    assert found["1"] == ("failed", "status.json: DivergenceError: the loss is NaN at epoch 3")
    assert found["2"] == ("interrupted", "interrupted after epoch 1; resume with: ...")
    assert found["3"] == ("running", "")
    runs = collect_runs(recorded)
    assert runs["test/event_f1"].tolist()[0] == 0.5 and runs["test/event_f1"][1:].isna().all()


def test_without_status_json_the_logs_decide(recorded):
    for run in recorded.iterdir():
        (run / "status.json").unlink()
    found = statuses(recorded)
    assert found["0"] == ("finished", "")
    assert found["1"] == ("failed", "train.log: RuntimeError: boom")
    assert found["2"] == ("unfinished", "") and found["3"] == ("unfinished", "")


def test_status_json_that_does_not_add_up_is_a_failure(tmp_path):
    no_metrics = make_run(tmp_path / "0", ["seed=1"])
    write_status(no_metrics, "finished")
    no_message = make_run(tmp_path / "1", ["seed=2"], log=TRACEBACK)
    write_status(no_message, "failed")  # the log's exception stands in for the message
    bare = make_run(tmp_path / "2", ["seed=3"])
    write_status(bare, "failed")
    corrupt = make_run(tmp_path / "3", ["seed=4"], {"test/event_f1": 0.5})
    (corrupt / "status.json").write_text('{"status": "fini')
    unknown = make_run(tmp_path / "4", ["seed=5"], {"test/event_f1": 0.5})
    write_status(unknown, "done")
    bad_metrics = make_run(tmp_path / "5", ["seed=6"])
    (bad_metrics / "metrics.json").write_text("[1]")
    write_status(bad_metrics, "finished")
    found = statuses(tmp_path)
    assert found["0"] == ("failed", "status.json says finished, but there is no metrics.json")
    assert found["1"] == ("failed", "train.log: RuntimeError: boom")
    assert found["2"] == ("failed", "status.json: failed, without a message")
    assert found["3"][0] == "failed" and found["3"][1].startswith("status.json: unreadable: ")
    assert found["4"] == (
        "failed",
        "status.json: unreadable: status 'done' is none of "
        "['running', 'finished', 'failed', 'interrupted']",
    )
    assert found["5"] == ("failed", "metrics.json holds a list, not an object")


def test_report_counts_and_lists_every_status(recorded, capsys):
    make_run(recorded / "4", ["seed=5"])  # no status.json, no metrics, no error: unfinished
    result = report(recorded, group_by=[], n_resamples=0, hparams=False)
    (row,) = result.summary.to_dict("records")
    counts = ("n", "n_failed", "n_unfinished", "n_interrupted", "n_running")
    assert tuple(row[c] for c in counts) == (1, 1, 1, 1, 1)
    md = (result.out_dir / "summary.md").read_text()
    assert "5 run(s): 1 finished, 1 failed, 1 unfinished, 1 interrupted, 1 running." in md
    assert "| n | failed | unfinished | interrupted | running | test/event_f1 |" in md
    assert "| 1 | 1 | 1 | 1 | 1 | 0.500 |" in md
    failures = md.split("## Failed and unfinished runs")[1]
    assert "`1` | failed | seed=2 | status.json: DivergenceError: the loss is NaN" in failures
    assert "`2` | interrupted | seed=3 | interrupted after epoch 1; resume with: ... |" in failures
    assert "`3` | running | seed=4 | – |" in failures
    err = capsys.readouterr().err
    assert "INTERRUPTED: " in err and "RUNNING: " in err


def test_overrides_are_read_by_hydras_parser(tmp_path):
    assert parse_override("model@encoder=crnn") == ("model@encoder", "crnn")
    assert parse_override("name='a b'") == ("name", "a b")
    assert parse_override("tag='1'") == ("tag", "1")  # quoted: a string, as Hydra reads it
    assert parse_override("data.fold=1,2") == ("data.fold", "1,2")  # a sweep stays its text
    assert parse_override("x=null") == ("x", None)
    with pytest.raises(ReportError, match="has no key"):
        parse_override("=1")
    make_run(tmp_path / "0", ["seed=1", "model.hidden=[64"])
    with pytest.raises(ReportError, match=r"overrides\.yaml: override 'model.hidden=\[64'"):
        collect_runs(tmp_path)
