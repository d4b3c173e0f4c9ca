"""scripts/bench.py and scripts/bench_epoch.py: they run, and their baselines are honest (the same
network and the same forcing draws as the CRNN)."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from sed.models import CRNN
from sed.models.crnn import forcing_mask

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
CUDA = torch.cuda.is_available()


def load_script(name: str):
    """Import scripts/NAME.py by path: scripts are run by hand, not part of the package."""
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load_script("bench")
bench_epoch = load_script("bench_epoch")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny ops on a shared 2-core machine stall with 2 OpenMP threads; restore afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_tiny_shape_runs_every_cpu_case(tmp_path, capsys):
    out = tmp_path / "bench.json"
    doc = bench.main(["--shapes", "tiny", "--repeats", "1", "--warmup", "0", "--json", str(out)])
    assert json.loads(out.read_text())["results"] == json.loads(json.dumps(doc["results"]))
    (entry,) = doc["results"]
    cases = entry["cases"]
    assert list(cases) == [c for c in bench.CASES if c != "cuda_graph"]
    for case, result in cases.items():
        keys = {"train_ms", "eval_ms"} | ({"recurrent_ms"} if case != "conv" else set())
        assert set(result) == keys and all(result[k] > 0 for k in keys)
    assert entry["ratios"]["fast loop"] == "hoisted"
    assert entry["ratios"]["seed / fast, recurrent part alone"] > 0
    printed = capsys.readouterr().out
    assert "## cpu, tiny" in printed and "| seed |" in printed and "| gru |" in printed


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_tiny_shape_runs_on_cuda_with_graphs():
    doc = bench.main(["--device", "cuda", "--shapes", "tiny", "--repeats", "1", "--warmup", "0"])
    cases = doc["results"][0]["cases"]
    assert cases["cuda_graph"]["graphs_captured"] == 1
    assert doc["results"][0]["ratios"]["fast loop"] == "cuda_graph"


@pytest.mark.parametrize(
    "argv,key",
    [(["--shapes", "huge"], "huge"), (["--cases", "eager,turbo"], "turbo"),
     (["--repeats", "0"], "--repeats"), (["--p-tf", "1.5"], "--p-tf")],
)  # fmt: skip
def test_bad_options_name_the_option(argv, key, capsys):
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert key in capsys.readouterr().err


def test_epoch_benchmark_times_the_trainers_step(capsys):
    result = bench_epoch.main(["--files", "12", "--frames", "50", "--seq-len", "32",
                               "--batch-size", "4", "--channels", "4", "--hidden", "8"])  # fmt: skip
    assert result["sequences"] == 24 and result["batches_per_epoch"] == 6
    assert result["batches_timed"] == 5  # one warm-up batch
    assert 0 < result["data_share"] < 1 and result["step_s"] > 0
    assert "| 5 of 6 |" in capsys.readouterr().out


def make_model(seed=0, **kw):
    torch.manual_seed(seed)
    params = dict(n_mels=40, num_classes=3, channels=4, hidden=8, dropout=0.25, loop="eager")
    model = CRNN(**(params | kw)).double()
    with torch.no_grad():  # spread the logits around 0 so fed-back labels are mixed 0/1
        model.fc.bias.uniform_(-0.5, 0.5)
    return model


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
def test_seed_loop_computes_the_plain_loop(p_tf):
    """The seed design's loop (training mode, dropout on) equals CRNN.plain_loop exactly."""
    model = make_model().train()
    seed_loop = bench.SeedLoop(model)
    x, y = make_data()
    out, grads = forward_backward(model, x, y, p_tf, gen_seed=11)
    ref, ref_grads = forward_backward(seed_loop, x, y, p_tf, gen_seed=11)
    torch.testing.assert_close(ref, out, rtol=0, atol=0)
    assert len(ref_grads) == len(grads)
    for a, b in zip(ref_grads, grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    model.loop = "auto"  # and the fast loop, to rounding
    fast, _ = forward_backward(model, x, y, p_tf, gen_seed=11)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)


def test_seed_loop_free_running_evaluation_equals_the_crnn():
    model = make_model().eval()
    x, _ = make_data()
    with torch.no_grad():
        torch.testing.assert_close(bench.seed_loop(model, x), model(x), rtol=0, atol=0)
        model.loop = "auto"
        torch.testing.assert_close(bench.seed_loop(model, x), model(x), rtol=1e-10, atol=1e-10)


def test_seed_loop_follows_the_forcing_draws():
    """Another generator seed gives another mask and other logits: the draws are really used."""
    model = make_model().train()
    x, y = make_data(b=4, t=40)
    a, _ = forward_backward(bench.SeedLoop(model), x, y, 0.5, gen_seed=11)
    b, _ = forward_backward(bench.SeedLoop(model), x, y, 0.5, gen_seed=12)
    assert not torch.equal(a, b)


def test_forcing_mask_consumes_the_generator_as_the_crnn_does():
    model = make_model()
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


def test_gru_floor_is_the_same_network_under_full_teacher_forcing():
    model = make_model(dropout=0.0).eval()
    n_params = sum(p.numel() for p in model.parameters())
    x, y = make_data()
    with torch.no_grad():
        expected = model(x, y, p_tf=1.0)
        gru = bench.GRUFloor(bench.build("eager", model)).double().eval()
        torch.testing.assert_close(gru(x, y), expected, rtol=1e-10, atol=1e-10)
    assert sum(p.numel() for p in gru.parameters()) == n_params
