"""The config groups' structured-config schemas (sed.schemas): made from the code they configure,
extended by every group file, and refusing unknown keys and wrong types naming the key."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, List, Literal, Optional  # noqa: UP035

import pytest
import torch
import yaml
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf, open_dict

from sed import schemas
from sed.data.augment import Augment
from sed.errors import ConfigError
from sed.models.crnn import CRNN
from sed.training import TrainerSettings

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# Groups whose options are settings of code (every option file extends a schema).
SCHEMA_GROUPS = ("augment", "callbacks", "data", "features", "model", "optimizer", "paths",
                 "postprocess", "sampler", "scheduler", "trainer", "tuning")  # fmt: skip


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        (int, int),
        (int | None, Optional[int]),  # noqa: UP045
        (float | torch.Tensor, float),  # Adam's lr
        (Sequence[int], List[int]),  # noqa: UP006
        (tuple[float, float], List[float]),  # noqa: UP006
        (float | Sequence[float] | Mapping[str, float], Any),  # a per-class value
        (Literal["min", "max"], str),
        (torch.nn.Module, Any),
    ],
)
def test_annotations_become_what_omegaconf_can_hold(hint, expected) -> None:
    assert schemas._config_type(hint) == expected


def test_every_option_file_of_a_settings_group_extends_a_registered_schema() -> None:
    schemas.register()
    for group in SCHEMA_GROUPS:
        for path in sorted((CONFIGS / group).glob("*.yaml")):
            text = yaml.safe_load(path.read_text()) or {}
            if not text:  # an empty option: the group is off (scheduler=none)
                continue
            defaults = text.get("defaults", [])
            names = [d for d in defaults if isinstance(d, str) and d != "_self_"]
            assert names, f"{path} extends no schema"
            # either a schema of its own group, or another option of the group that has one
            for name in names:
                assert (group, name) in schemas.SCHEMAS or (
                    CONFIGS / group / f"{name}.yaml"
                ).is_file(), (
                    path,
                    name,
                )


def test_a_schema_is_the_code_s_own_settings() -> None:
    schemas.register()
    trainer = schemas.SCHEMAS[("trainer", "schema")]
    assert [f.name for f in dataclasses.fields(trainer)] == [
        "_target_",
        *(f.name for f in dataclasses.fields(TrainerSettings)),
    ]
    augment = {f.name for f in dataclasses.fields(schemas.SCHEMAS[("augment", "schema")])}
    assert augment == {"_target_", *(f.name for f in dataclasses.fields(Augment))}
    model = {f.name: f for f in dataclasses.fields(schemas.SCHEMAS[("model", "schema")])}
    assert "num_classes" not in model  # filled in from the data
    assert model["kernel_size"].default == 5 and model["pool_sizes"].type == List[int]  # noqa: UP006
    crnn = typing.get_type_hints(CRNN.__init__)
    assert set(model) - {"_target_"} == set(crnn) - {"num_classes", "return"}


def test_the_composed_config_is_typed_by_the_schemas(compose) -> None:
    cfg = compose("train")
    for (group, name), schema in schemas.SCHEMAS.items():
        if group == "sampler" and name != "schema_scheduled" or group == "scheduler":
            continue  # not in the default composition
        if group == "optimizer" or group in cfg and OmegaConf.get_type(cfg[group]) is not dict:
            assert OmegaConf.get_type(cfg[group]) is schema, group
    assert OmegaConf.get_type(cfg.tuning.space).__name__ == "SearchSpaceSchema"
    assert OmegaConf.get_type(cfg.data.generate).__name__ == "SyntheticSchema"
    assert cfg.model.kernel_size == 5  # every setting is in the config, defaults included
    assert compose("train", "model.kernel_size=3").model.kernel_size == 3  # no `+` needed


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        (
            "trainer.epoch=3",
            r"Key 'epoch' not in 'TrainerSettingsSchema'\n\s+full_key: trainer\.epoch",
        ),
        ("trainer.epochs=abc", r"could not be converted to Integer\n\s+full_key: trainer\.epochs"),
        ("augment.shift=maybe", r"not a valid bool.*\n\s+full_key: augment\.shift"),
        ("sampler.p_min=low", r"could not be converted to Float\n\s+full_key: sampler\.p_min"),
        ("tuning.space.thresholds=[a]", r"full_key: tuning\.space\.thresholds\[0\]"),
        ("features.n_mels=forty", r"full_key: features\.n_mels"),
    ],
)
def test_unknown_keys_and_wrong_types_are_refused_while_composing(
    compose, override: str, pattern: str
) -> None:
    with pytest.raises(ConfigCompositionException) as caught:
        compose("train", override)
    text = f"{caught.value}\n{caught.value.__cause__}"
    assert re_search(pattern, text), text


def re_search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text, flags=re.IGNORECASE) is not None


def test_keys_added_with_plus_past_a_schema_are_refused_but_a_new_callback_is_not(compose) -> None:
    with pytest.raises(
        ConfigError, match=r"^augment\.shifts is not a setting of augment \(known: "
    ):
        schemas.refuse_added_keys(compose("train", "+augment.shifts=true"))
    with pytest.raises(
        ConfigError, match=r"^callbacks\.csv\.every is not a setting of callbacks\.csv"
    ):
        schemas.refuse_added_keys(compose("train", "+callbacks.csv.every=2"))
    mine = compose("train", "+callbacks.mine._target_=my_package.MyCallback")
    schemas.refuse_added_keys(mine)  # a callback of one's own: its constructor checks it
    schemas.refuse_added_keys(compose("train", "+experiment=tut2017"))
    schemas.refuse_added_keys(compose("train", "data=folder", "data.root=/tmp"))


def test_schema_classes_pickle_by_reference_for_launcher_workers() -> None:
    import pickle

    schemas.register()
    for schema in schemas.SCHEMAS.values():
        assert pickle.loads(pickle.dumps(schema)) is schema
    generate = OmegaConf.structured(schemas.SCHEMAS[("data", "schema")]).generate
    assert generate is None  # no generator for a folder data set unless asked


def test_a_run_from_before_the_schemas_resumes_and_a_real_change_is_still_refused(
    compose, tmp_path: Path
) -> None:
    from sed.checkpoints import model_spec
    from sed.runs import refuse_changed_config, refuse_changed_model

    def composed(*overrides: str):
        c = compose("train", "+experiment=smoke", *overrides)
        with open_dict(c):
            c.paths.root_dir, c.paths.output_dir = str(tmp_path), str(tmp_path / "run")
        return c

    cfg = composed()
    old = OmegaConf.to_container(cfg, resolve=True)
    for group, key in (("model", "kernel_size"), ("model", "threshold"), ("augment", "filter_db")):
        del old[group][key]  # what an older version's composed config did not list
    state = {"config_yaml": OmegaConf.to_yaml(OmegaConf.create(old))}
    target = "sed.models.crnn.CRNN"
    kwargs = {"n_mels": 40, "channels": 8, "hidden": 16, "num_classes": 8}
    meta = {"classes": ["a"], "model_spec": model_spec(target, {**kwargs, "kernel_size": 5})}
    stored = {"classes": ["a"], "model_spec": model_spec(target, kwargs)}
    path = tmp_path / "last.pt"

    refuse_changed_config(cfg, state, path)  # the defaults then are the defaults now
    refuse_changed_model(meta, stored, path)
    changed = composed("model.kernel_size=3")
    with pytest.raises(ConfigError, match=r"model\.kernel_size: \(absent\) -> 3"):
        refuse_changed_config(changed, state, path)
    other = {**meta, "model_spec": model_spec(target, {**kwargs, "kernel_size": 3})}
    with pytest.raises(ConfigError, match="model_spec"):
        refuse_changed_model(other, stored, path)
