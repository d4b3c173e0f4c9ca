"""sed.benchmark: runs end to end on CPU, honest baselines (same network, same forcing draws)."""

import json
import time

import pytest
import torch

from sed import benchmark
from sed.benchmark import (
    CASES,
    BenchmarkError,
    GRUBaseline,
    SeedLoopCRNN,
    forcing_mask,
    time_call,
)
from sed.models import CRNN

CUDA = torch.cuda.is_available()


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny ops on a shared 2-core machine stall with 2 OpenMP threads; restore afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(tmp_path, *extra):
    """main() with JSON and Markdown output; returns (document, markdown text)."""
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    argv = ["--json", str(out_json), "--markdown", str(out_md), "--quiet", *extra]
    assert benchmark.main(argv) == 0
    return json.loads(out_json.read_text()), out_md.read_text()


def check_document(doc, device, shapes):
    env = doc["environment"]
    for key in ("date", "torch", "cpu", "cpu_count", "torch_threads", "command", "load_average"):
        assert key in env
    assert [e["shape"] for e in doc["results"] if e["device"] == device] == shapes
    for entry in doc["results"]:
        assert set(entry["cases"]) == set(CASES)
        for case, result in entry["cases"].items():
            for kind in ("train_step", "recurrent_step", "eval_forward"):
                timing = result[kind]
                cpu_graph = case == "cuda_graph" and (device == "cpu" or kind == "eval_forward")
                if cpu_graph or (case == "conv" and kind == "recurrent_step"):
                    assert timing["status"] == "skipped"
                    continue
                assert timing["status"] == "ok", (case, kind, timing)
                assert timing["n"] == 1 and timing["median_s"] > 0
        ratios = entry["ratios"]
        for key in ("fast_over_gru_step", "seed_over_fast_step", "recurrent_fast_over_gru_step",
                    "seed_over_fast_eval", "recurrent_share_step"):  # fmt: skip
            assert key in ratios
        assert ratios["recurrent_only_fast_over_gru"] > 0
        assert ratios["recurrent_only_seed_over_fast"] > 0
        assert ratios["fast_case"] == ("cuda_graph" if device.startswith("cuda") else "hoisted")
        assert ratios["fast_over_gru_step"] > 0 and ratios["seed_over_fast_step"] > 0
    assert len(doc["targets"]) >= 4
    assert {t["status"] for t in doc["targets"]} <= {"met", "missed", "not measured"}


def test_small_shape_runs_on_cpu_with_every_case(tmp_path):
    doc, md = run(tmp_path, "--device", "cpu", "--shapes", "small", "--repeats", "1",
                  "--warmup", "0", "--threads", "1")  # fmt: skip
    check_document(doc, "cpu", ["small"])
    assert doc["environment"]["torch_threads"] == 1
    assert "## cpu, small" in md and "skipped: CUDA only" in md
    for case in CASES:
        assert f"| {case} |" in md
    small = [t for t in doc["targets"] if t["device"] == "cpu" and t["shape"] == "small"]
    assert [t["ratio"] for t in small] == [
        "recurrent_fast_over_gru_step",
        "recurrent_only_fast_over_gru",
    ]
    # step - conv of single noisy repeats may come out <= 0 (reported as None); the direct
    # measurement of the recurrent part cannot
    assert small[1]["value"] > 0 and small[1]["value_cpu_time"] > 0


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.cuda
def test_tiny_shape_runs_on_cuda_with_graphs(tmp_path):
    doc, _ = run(tmp_path, "--device", "cuda", "--shapes", "tiny", "--repeats", "1",
                 "--warmup", "0")  # fmt: skip
    check_document(doc, "cuda", ["tiny"])
    assert doc["results"][0]["cases"]["cuda_graph"]["graph_captured"] is True
    assert "gpu" in doc["environment"]


def make_pair(seed=0, **kw):
    torch.manual_seed(seed)
    params = dict(n_mels=40, num_classes=3, channels=4, hidden=8, dropout=0.25, loop="eager")
    params.update(kw)
    model = CRNN(**params).double()
    with torch.no_grad():  # spread the logits around 0 so fed-back labels are mixed 0/1
        model.fc.bias.uniform_(-0.5, 0.5)
    return model, SeedLoopCRNN(model)


def make_data(b=3, t=24, c=3):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(b, t, 40, generator=g, dtype=torch.float64)
    y = (torch.rand(b, t, c, generator=g) < 0.4).double()
    return x, y


def forward_backward(model, x, y, p_tf, gen_seed, rng_seed=5):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(rng_seed)  # dropout draws
    out = model(x, y, p_tf=p_tf, generator=torch.Generator().manual_seed(gen_seed))
    torch.nn.functional.binary_cross_entropy_with_logits(out, y).backward()
    return out.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("p_tf", [0.0, 0.3, 0.5, 1.0])
def test_seed_loop_computes_what_eager_computes(p_tf):
    model, seed_loop = make_pair()
    model.train()
    x, y = make_data()
    out, grads = forward_backward(model, x, y, p_tf, gen_seed=11)
    ref, ref_grads = forward_backward(seed_loop, x, y, p_tf, gen_seed=11)
    torch.testing.assert_close(ref, out, rtol=0, atol=0)
    assert len(ref_grads) == len(grads)
    for a, b in zip(ref_grads, grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    model.loop = "hoisted"  # and the fast loop, to rounding
    fast, _ = forward_backward(model, x, y, p_tf, gen_seed=11)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)


def test_seed_loop_free_running_evaluation_equals_eager():
    model, seed_loop = make_pair()
    model.eval()
    x, _ = make_data()
    with torch.no_grad():
        torch.testing.assert_close(seed_loop(x), model(x), rtol=0, atol=0)


def test_seed_loop_follows_the_forcing_draws():
    """Another generator seed gives another mask and other logits: the draws are really used."""
    model, seed_loop = make_pair()
    model.train()
    x, y = make_data(b=4, t=40)
    a, _ = forward_backward(seed_loop, x, y, 0.5, gen_seed=11)
    b, _ = forward_backward(seed_loop, x, y, 0.5, gen_seed=12)
    assert not torch.equal(a, b)


def test_forcing_mask_consumes_the_generator_as_the_crnn_does():
    model, _ = make_pair()
    x, y = make_data()
    g_model, g_mask = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for p_tf in (0.0, 0.5, 1.0, 0.25):
        with torch.no_grad():
            model(x, y, p_tf=p_tf, generator=g_model)
        mask = forcing_mask(x.shape[0], x.shape[1], p_tf, g_mask, "cpu")
        assert mask.shape == x.shape[:2] and mask.dtype == torch.bool
        assert torch.equal(g_model.get_state(), g_mask.get_state())
    assert forcing_mask(2, 5, 0.0, None, "cpu").sum() == 0
    assert forcing_mask(2, 5, 1.0, None, "cpu").all()


def test_gru_baseline_is_the_same_network_under_full_teacher_forcing():
    model, _ = make_pair(dropout=0.0)
    model.eval()
    gru = GRUBaseline(model).double().eval()
    x, y = make_data()
    with torch.no_grad():
        torch.testing.assert_close(gru(x, y), model(x, y, p_tf=1.0), rtol=1e-10, atol=1e-10)
    n_model = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in gru.parameters()) == n_model


def test_time_call_respects_the_budget():
    def nap():
        time.sleep(0.01)

    cpu = torch.device("cpu")
    ok = time_call(nap, cpu, repeats=3, warmup=1, max_seconds=10)
    assert ok["status"] == "ok" and ok["n"] == 3 and len(ok["samples_s"]) == 3
    assert ok["median_s"] >= 0.009 and ok["q1_s"] <= ok["median_s"] <= ok["q3_s"]
    cold = time_call(nap, cpu, repeats=3, warmup=1, max_seconds=0.001)
    assert cold["status"] == "cold" and cold["n"] == 0 and cold["median_s"] == cold["first_s"]
    assert "upper bound" in cold["note"]
    short = time_call(nap, cpu, repeats=3, warmup=0, max_seconds=0.001)
    assert short["status"] == "truncated" and short["n"] == 1 and short["q1_s"] is None
    forced = time_call(nap, cpu, repeats=1, warmup=0, max_seconds=0.001, min_warmup=2)
    assert forced["status"] == "cold" and forced["seconds_spent"] >= 0.02


def timing(seconds):
    return {"status": "ok", "median_s": seconds, "n": 1}


def test_ratios_and_targets():
    cases = {
        "conv": {"train_step": timing(1.0), "eval_forward": timing(0.5)},
        "seed": {
            "train_step": timing(30.0),
            "recurrent_step": timing(28.0),
            "eval_forward": timing(3.0),
        },
        "hoisted": {
            "train_step": timing(3.0),
            "recurrent_step": timing(1.75),
            "eval_forward": timing(1.0),
        },
        "cudnn_gru": {
            "train_step": timing(2.0),
            "recurrent_step": timing(0.7),
            "eval_forward": timing(0.75),
        },
    }
    r = benchmark.shape_ratios(cases, torch.device("cpu"))
    assert r["fast_case"] == "hoisted"
    assert r["fast_over_gru_step"] == pytest.approx(1.5)
    assert r["seed_over_fast_step"] == pytest.approx(10.0)
    assert r["recurrent_fast_over_gru_step"] == pytest.approx(2.0)  # (3 - 1) / (2 - 1)
    assert r["seed_over_fast_eval"] == pytest.approx(3.0)
    assert r["recurrent_share_step"]["hoisted"] == pytest.approx(2 / 3)
    assert r["recurrent_only_fast_over_gru"] == pytest.approx(2.5)
    assert r["recurrent_only_seed_over_fast"] == pytest.approx(16.0)
    assert r["eager_over_fast_step"] is None and not r["approximate"]
    results = [{"device": "cpu", "shape": "small", "ratios": r}]
    targets = benchmark.evaluate_targets(results)
    cpu = [t for t in targets if t["device"] == "cpu"]
    assert [t["status"] for t in cpu] == ["met", "met"]
    assert [t["value"] for t in cpu] == [pytest.approx(2.0), pytest.approx(2.5)]
    assert {t["status"] for t in targets if t["device"] == "cuda"} == {"not measured"}
    r["recurrent_fast_over_gru_step"] = 3.5
    assert [t["status"] for t in benchmark.evaluate_targets(results)][-2:] == ["missed", "met"]


@pytest.mark.parametrize(
    "argv,key",
    [
        (["--shapes", "huge"], "huge"),
        (["--cases", "eager,turbo"], "turbo"),
        (["--device", "tpu"], "tpu"),
        (["--repeats", "0"], "--repeats"),
        (["--max-seconds", "0"], "--max-seconds"),
        (["--p-tf", "1.5"], "--p-tf"),
    ],
)
def test_bad_options_name_the_option(argv, key):
    args = benchmark.build_parser().parse_args(argv)
    with pytest.raises(BenchmarkError, match=key):
        benchmark.run_benchmark(args)


def test_epoch_mode_splits_data_and_compute(tmp_path, monkeypatch):
    """--epoch at the drossos_synthetic layout, shrunk (files, model) so it runs in a second."""
    setup = benchmark._epoch_setup()
    assert (setup["files"], setup["frames_per_file"], setup["seq_len"]) == (100, 1025, 1024)
    assert (setup["batch_size"], setup["channels"], setup["hidden"]) == (8, 256, 256)
    small = {**setup, "files": 12, "frames_per_file": 50, "seq_len": 32, "batch_size": 4,
             "channels": 4, "hidden": 8}  # fmt: skip
    monkeypatch.setattr(benchmark, "_epoch_setup", lambda: small)
    doc, md = run(tmp_path, "--device", "cpu", "--shapes", "none", "--epoch", "--warmup", "1")
    assert doc["results"] == []
    (epoch,) = doc["epoch"]
    assert epoch["sequences"] == 24 and epoch["batches_per_epoch"] == 6
    assert epoch["batches_timed"] == 6 and not epoch["partial"]
    assert 0 < epoch["data_share"] < 1
    assert epoch["compute_share"] + epoch["data_share"] == pytest.approx(1.0)
    assert epoch["loop"] == "hoisted"
    assert epoch["padded_frame_share"] == pytest.approx(1 - 12 * 50 / (24 * 32))
    assert "--epoch" in doc["environment"]["command"]
    assert "drossos_synthetic training epoch" in md
