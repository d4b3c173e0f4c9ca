"""The config tree: the defaults are the synthetic recipe, every experiment composes *and*
instantiates with every method, each group holds exactly what its target takes, and the four TUT
experiments carry the authors' settings value by value (docs/paper_settings.md)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from sed.checkpoints import build_model, model_spec
from sed.features import LogMel
from sed.postprocess import PostProcessing
from sed.sampling import ConstantSampler, NoSampler, ScheduledSampler
from sed.training import TrainerSettings

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
METHODS = ("baseline", "tf", "ss")
SAMPLERS = sorted(p.stem for p in (CONFIGS / "sampler").glob("*.yaml"))

# The authors' settings (dr-costas/SEDLM at a4c8252, settings/FILE.yaml; the model and loop
# settings are the same in all four files). Keys are ours; each value is theirs.
COMMON = {
    "trainer.batch_size": 8,  # data_loader.batch_size
    "trainer.drop_last": True,  # data_loader.drop_last
    "trainer.patience": 50,  # training.validation_patience
    "trainer.seq_len": 1024,  # seq_len=1024 in data_feeders/_tut_sed_real_life_*.py
    "model.channels": 256,  # sed_model.cnn_channels
    "model.hidden": 256,  # sed_model.rnn_out_dim
    "model.dropout": 0.25,  # sed_model.cnn_dropout and rnn_dropout
    "sampler.p_min": 0.05,  # tf.min_prob
    "sampler.p_max": 0.9,  # tf.max_prob
    "features.sample_rate": 44100,  # the paper: 40 log mel-bands, 1024-sample Hamming window,
    "features.n_mels": 40,  # 50% overlap (the repository holds pre-extracted features)
    "features.win_length": 1024,
    "features.hop_length": 512,
    "features.window": "hamming",
}
PAPER = {
    "tut2016_home": {  # settings/real_life_2016_home.yaml
        "optimizer.lr": 1e-3,
        "trainer.epochs": 200,
        "trainer.grad_clip": None,  # grad_norm: -1 (no clipping)
        "gamma": 10 / 120,  # gamma_factor / mul_factor
        "data.classes": 11,  # nb_classes
    },
    "tut2016_residential": {  # settings/real_life_2016_residential_area.yaml
        "optimizer.lr": 1e-3,
        "trainer.epochs": 200,
        "trainer.grad_clip": None,
        "gamma": 10 / 120,
        "data.classes": 7,  # their file says 11 (copied from home); the scene has 7 classes
    },
    "tut2017": {  # settings/real_life_2017.yaml
        "optimizer.lr": 5e-4,
        "trainer.epochs": 200,
        "trainer.grad_clip": 0.5,
        "gamma": 10 / 120,
        "data.classes": 6,
    },
    "tut2016_synthetic": {  # settings/synthetic_2016.yaml
        "optimizer.lr": 1e-4,
        "trainer.epochs": 300,
        "trainer.grad_clip": 0.5,
        "gamma": 10 / 80,
        "data.classes": 16,
    },
}
FOLDS = {"tut2016_home": 4, "tut2016_residential": 4, "tut2017": 4, "tut2016_synthetic": 1}


def select(cfg: DictConfig, key: str) -> object:
    """A dotted key of the composed (and resolved) config; lists count as their length."""
    node: object = cfg
    for part in key.split("."):
        node = node[part]  # type: ignore[index]
    return len(node) if key == "data.classes" else node  # type: ignore[arg-type]


def test_defaults_are_the_synthetic_recipe_with_scheduled_sampling(
    compose: Callable[..., DictConfig],
) -> None:
    cfg = compose("train")
    assert "experiment" not in cfg and cfg.task_name == "train"
    assert cfg.data.name == "synthetic" and cfg.method == "ss" and cfg.model.label_feedback
    assert cfg.sampler._target_ == "sed.sampling.ScheduledSampler"
    assert cfg.sampler.gamma == cfg.gamma == 0.125


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_and_method_instantiates(
    experiment: str, method: str, compose: Callable[..., DictConfig]
) -> None:
    """Model, features, sampler, optimizer, trainer settings and post-processing build from the
    composed config, and the method sets the sampler and the label feedback together."""
    cfg = compose("train", f"+experiment={experiment}", f"method={method}")
    assert cfg.method == method and cfg.task_name == experiment
    classes = cfg.data.get("classes") or ["a", "b", "c"]
    kwargs = {
        k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k != "_target_"
    }
    model = build_model(model_spec(cfg.model._target_, {**kwargs, "num_classes": len(classes)}))
    instantiate(cfg.optimizer)(model.parameters())
    assert instantiate(cfg.tuning).space.thresholds
    LogMel(**cfg.features)
    PostProcessing(**cfg.postprocess)
    settings = instantiate(cfg.trainer)
    assert isinstance(settings, TrainerSettings) and settings.monitor == cfg.monitor
    sampler = instantiate(cfg.sampler)(num_batches=10)
    if method == "baseline":
        assert isinstance(sampler, NoSampler) and not model.label_feedback
    elif method == "tf":
        assert type(sampler) is ConstantSampler and sampler.p == 1.0 and model.label_feedback
    else:
        assert isinstance(sampler, ScheduledSampler) and model.label_feedback
        assert sampler.gamma == cfg.gamma and sampler.num_batches == 10


@pytest.mark.parametrize("experiment", sorted(PAPER))
def test_tut_experiments_carry_the_authors_settings(
    experiment: str, compose: Callable[..., DictConfig]
) -> None:
    cfg = compose("train", f"+experiment={experiment}", hydra_node=True)
    for key, expected in {**COMMON, **PAPER[experiment]}.items():
        assert select(cfg, key) == expected, f"{experiment}: {key}"
    sweep = cfg.hydra.sweeper.params
    assert (str(sweep["data.fold"]) == "1,2,3,4") if FOLDS[experiment] == 4 else not sweep


def test_docs_list_the_pinned_settings() -> None:
    """docs/paper_settings.md's table has one row per setting, one column per dataset, and says
    what this test checks against the configs."""
    text = (REPO / "docs" / "paper_settings.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 6:
            rows[cells[0].strip("`")] = cells[1:5]
    order = ["tut2016_home", "tut2016_residential", "tut2017", "tut2016_synthetic"]
    for key in [*COMMON, *PAPER["tut2017"]]:
        assert key in rows, f"docs/paper_settings.md lacks a row for {key}"
        for experiment, cell in zip(order, rows[key], strict=True):
            expected = {**COMMON, **PAPER[experiment]}[key]
            assert _doc_value(cell) == expected, f"docs/paper_settings.md: {key}, {experiment}"


def _doc_value(cell: str) -> object:
    """A table cell as a number, None, bool or string ("10 / 120" -> 10 / 120)."""
    cell = re.sub(r"\s*\(.*\)$", "", cell.replace("`", "")).strip()
    if cell in ("none", "null"):
        return None
    if cell in ("yes", "no"):
        return cell == "yes"
    if m := re.fullmatch(r"([\d.]+) / ([\d.]+)", cell):
        return float(m[1]) / float(m[2])
    try:
        number = float(cell)
    except ValueError:
        return cell
    return int(number) if number.is_integer() and "." not in cell and "e" not in cell else number


def test_trainer_group_is_exactly_the_trainer_settings(compose: Callable[..., DictConfig]) -> None:
    """Every key of every trainer option is a TrainerSettings field and vice versa: no key is
    silently ignored."""
    fields = {f.name for f in dataclasses.fields(TrainerSettings)}
    for path in sorted((CONFIGS / "trainer").glob("*.yaml")):
        cfg = compose("train", f"trainer={path.stem}")
        assert cfg.trainer._target_ == "sed.training.TrainerSettings"
        assert set(cfg.trainer) - {"_target_"} == fields, path.name


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_option_is_a_partial_taking_num_batches(
    sampler: str, compose: Callable[..., DictConfig]
) -> None:
    cfg = compose("train", f"sampler={sampler}")
    built = instantiate(cfg.sampler)(num_batches=7)
    assert 0.0 <= built.probability <= 1.0
    assert type(built).__name__ == cfg.sampler._target_.rsplit(".", 1)[1]


def test_a_sweep_overrides_the_sampler_gamma_directly(compose: Callable[..., DictConfig]) -> None:
    cfg = compose("train", "+experiment=tut2017", "sampler.gamma=0.5")
    assert instantiate(cfg.sampler)(num_batches=3).gamma == 0.5
