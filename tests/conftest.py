"""Shared fixtures, after ashleve/lightning-hydra-template's tests/conftest.py: the training config
is composed once per session and each test gets a copy whose run directory is its own, so tests
call `sed.train.train(cfg)` in-process, exactly as `python -m sed.train` would."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import hydra
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from sed import schemas

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def compose_config(name: str, *overrides: str, hydra_node: bool = False) -> DictConfig:
    """configs/NAME.yaml composed with command-line style `overrides`; with `hydra_node`, the
    `hydra` node (sweeper params, runtime choices) is kept, as Hydra itself sees it."""
    GlobalHydra.instance().clear()
    schemas.register()  # as every entry point does on import (sed.cli)
    with hydra.initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return hydra.compose(name, overrides=list(overrides), return_hydra_config=hydra_node)


def compose_train(*overrides: str, root: Path, output_dir: Path) -> DictConfig:
    """The training config that `python -m sed.train OVERRIDES` would run with SED_ROOT=root and
    hydra.run.dir=output_dir: data, feature cache and outputs under `root`."""
    cfg = compose_config("train", *overrides)
    with open_dict(cfg):
        cfg.paths.root_dir = str(root)
        cfg.paths.output_dir = str(output_dir)
    return cfg


@pytest.fixture(scope="session")
def compose() -> Callable[..., DictConfig]:
    """compose(NAME, *overrides, hydra_node=False): configs/NAME.yaml composed in-process."""
    return compose_config


@pytest.fixture(scope="session")
def sed_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SED_ROOT for the session: the smoke data set and its features are made once."""
    return tmp_path_factory.mktemp("sed_root")


@pytest.fixture(scope="session")
def cfg_train_global(sed_root: Path) -> DictConfig:
    """The smoke experiment's training config, composed once (one CPU thread, as the numbers in
    tests/smoke_golden.json were recorded)."""
    return compose_train(
        "+experiment=smoke", "trainer.num_threads=1", root=sed_root, output_dir=sed_root / "unset"
    )


@pytest.fixture
def cfg_train(cfg_train_global: DictConfig, tmp_path: Path) -> Iterator[DictConfig]:
    """A copy of the smoke config whose run directory is this test's tmp_path / "run"; torch's
    thread count, which train(cfg) sets, is restored afterwards."""
    cfg = cfg_train_global.copy()
    cfg.paths.output_dir = str(tmp_path / "run")
    threads = torch.get_num_threads()
    yield cfg
    torch.set_num_threads(threads)
