"""Hydra structured-config schemas of the config groups, made from the code each group configures.

Every group file extends its schema in its defaults list (`defaults: [schema, _self_]`, or
`schema_NAME` where a group's options build different classes), and `register()` stores the
schemas in Hydra's ConfigStore. OmegaConf then refuses, while the config is composed and before
any work, a key the code does not take (`trainer.epoch=3`) or a value of the wrong type
(`trainer.epochs=abc`), naming the key. A schema is derived from its target, so a setting has one
spelling, in the code: a dataclass's fields (TrainerSettings, Augment, PostProcessing, Tuning,
SearchSpace, SyntheticParams) or a callable's keyword parameters with their annotations and
defaults (CRNN, the samplers, Adam, the cosine schedule, LogMel, the callbacks). The composed
config holds every setting of a group, defaults included, so a run's `.hydra/config.yaml` shows
all of them. Constructors keep only the range and cross-field checks.

An annotation OmegaConf cannot hold (a per-class value that is a number, list or dict; a module)
becomes Any, and the constructor checks it. `+group.key=value` adds a key past a schema (Hydra
opens the node for it): `refuse_added_keys` catches that after composition.
"""

# No `from __future__ import annotations`: the schemas' annotations must be real types for
# OmegaConf (a local schema named in a string annotation would not resolve).
import collections.abc
import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any, List, Literal, Optional, Union  # noqa: UP035 (OmegaConf's spelling)

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from sed.errors import ConfigError

__all__ = ["SCHEMAS", "defaults", "register", "refuse_added_keys", "schema_of"]

_PRIMITIVES = (int, float, bool, str)
_SEQUENCES = (list, tuple, collections.abc.Sequence)
# Arguments the code passes when it calls a partial config: never settings.
_CALL_TIME = frozenset({"self", "params", "num_batches", "optimizer", "total_steps", "num_classes"})


def _config_type(hint: Any) -> Any:
    """The OmegaConf-typed form of an annotation: int/float/bool/str, Optional of one, List of
    one, or Any (OmegaConf holds no unions of several types; a tensor is no config value)."""
    if hint in _PRIMITIVES:
        return hint
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        kinds = {type(a) for a in args}
        return kinds.pop() if len(kinds) == 1 and kinds <= set(_PRIMITIVES) else Any
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None) and a is not torch.Tensor]
        if len(rest) != 1:
            return Any
        inner = _config_type(rest[0])
        return Optional[inner] if type(None) in args and inner is not Any else inner  # noqa: UP045
    if origin in _SEQUENCES:
        items = [a for a in args if a is not Ellipsis]
        kinds = {_config_type(a) for a in items}
        if len(kinds) == 1 and (kind := kinds.pop()) in _PRIMITIVES:
            return List[kind]  # noqa: UP006
    return Any


def _field(hint: Any, default: Any) -> tuple[Any, Any] | None:
    """(type, dataclasses.field) of one setting; None for a default no config can hold."""
    kind = _config_type(hint)
    if default is inspect.Parameter.empty or default is dataclasses.MISSING:
        return kind, dataclasses.field(default=MISSING)
    if isinstance(default, list | tuple):
        return kind, dataclasses.field(default_factory=lambda d=list(default): list(d))
    if kind is not Any and default is None and typing.get_origin(kind) is not Union:
        kind = Optional[kind]  # noqa: UP045  (a None default the annotation forgot)
    if isinstance(default, int | float | bool | str | type(None)):
        return kind, dataclasses.field(default=default)
    if isinstance(default, dict):
        return Any, dataclasses.field(default_factory=lambda d=dict(default): dict(d))
    return None


def _hints(obj: Any) -> dict[str, Any]:
    """Resolved annotations; those naming what only a type checker imports count as Any."""
    try:
        return typing.get_type_hints(obj)
    except (NameError, TypeError):
        return {}


def _settings(target: Callable[..., Any], only: tuple[str, ...] | None) -> Iterator[tuple]:
    """(name, hint, default) of each setting `target` takes: a dataclass's init fields, or a
    callable's keyword parameters (but the call-time ones, *args and **kwargs)."""
    if dataclasses.is_dataclass(target):
        hints = _hints(target)
        for spec in dataclasses.fields(target):
            if not spec.init or (only and spec.name not in only):
                continue
            if spec.default is not dataclasses.MISSING:
                default = spec.default
            elif spec.default_factory is not dataclasses.MISSING:
                default = spec.default_factory()
            else:
                default = dataclasses.MISSING
            yield spec.name, hints.get(spec.name, Any), default
        return
    function = target.__init__ if inspect.isclass(target) else target
    hints = _hints(function)
    for name, parameter in inspect.signature(target).parameters.items():
        if name in _CALL_TIME or (only and name not in only):
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        yield name, hints.get(name, Any), parameter.default


def schema_of(
    target: Callable[..., Any],
    *,
    instantiated: bool = True,
    partial: bool = False,
    only: tuple[str, ...] | None = None,
    nested: dict[str, type] | None = None,
    name: str | None = None,
) -> type:
    """A dataclass schema of `target`'s settings; with `instantiated`, a `_target_` field (and
    `_partial_` with `partial`) for hydra.utils.instantiate. `nested` gives a field a schema of
    its own (a sub-config); `only` keeps just these settings (of a class with many flags)."""
    nested = nested or {}
    fields: list[tuple[str, Any, Any]] = []
    if instantiated:
        path = f"{target.__module__}.{target.__qualname__}"
        fields.append(("_target_", str, dataclasses.field(default=path)))
        if partial:
            fields.append(("_partial_", bool, dataclasses.field(default=True)))
    for key, hint, default in _settings(target, only):
        if key in nested:
            schema = nested[key]
            fields.append((key, Optional[schema], dataclasses.field(default_factory=schema)))  # noqa: UP045
        elif (spec := _field(hint, default)) is not None:
            fields.append((key, *spec))
    return dataclasses.make_dataclass(name or f"{target.__name__}Schema", fields)


def _schemas() -> dict[tuple[str, str], type]:
    """(group, name in the group) -> schema. Imported here, not at module level, so that
    importing sed.schemas stays cheap for the entry points that compose no training config."""
    from sed import callbacks, sampling
    from sed.data.augment import Augment
    from sed.data.synthetic.params import SyntheticParams
    from sed.features import LogMel
    from sed.models.crnn import CRNN
    from sed.postprocess import PostProcessing
    from sed.postprocess_search import SearchSpace, Tuning
    from sed.training import TrainerSettings, cosine_schedule

    synthetic = schema_of(SyntheticParams, instantiated=False, name="SyntheticSchema")

    @dataclasses.dataclass
    class DataSchema:
        """A data set: its name, folder and classes; `generate` for the embedded synthetic set,
        `fold` and `prepare_command` for the public sets."""

        name: str = MISSING
        root: str = MISSING
        classes: Any = None  # null (the training labels) or a list; config_checks explains
        fold: Optional[int] = None  # noqa: UP045
        prepare_command: Optional[str] = None  # noqa: UP045
        generate: Optional[synthetic] = None  # noqa: UP045  # type: ignore[valid-type]

    @dataclasses.dataclass
    class PathsSchema:
        root_dir: str = MISSING
        data_dir: str = MISSING
        cache_dir: str = MISSING
        log_dir: str = MISSING
        output_dir: str = MISSING

    entries = {
        name: schema_of(getattr(callbacks, cls))
        for name, cls in (
            ("csv", "CSVLogger"), ("tensorboard", "TensorBoard"),
            ("early_stopping", "EarlyStopping"), ("checkpoints", "Checkpoints"),
            ("time_limit", "TimeLimit"),
        )
    }  # fmt: skip
    callbacks_schema = dataclasses.make_dataclass(
        "CallbacksSchema",
        [(k, Optional[v], dataclasses.field(default=None)) for k, v in entries.items()],  # noqa: UP045
    )
    samplers = {
        "constant": sampling.ConstantSampler,
        "exponential": sampling.ExponentialDecay,
        "inverse_sigmoid": sampling.InverseSigmoidDecay,
        "linear": sampling.LinearDecay,
        "none": sampling.NoSampler,
        "scheduled": sampling.ScheduledSampler,
    }
    space = schema_of(SearchSpace)
    return {
        ("augment", "schema"): schema_of(Augment),
        ("callbacks", "schema"): callbacks_schema,
        ("data", "schema"): DataSchema,
        ("features", "schema"): schema_of(LogMel, instantiated=False, name="FeaturesSchema"),
        ("model", "schema"): schema_of(CRNN),
        ("optimizer", "schema_adam"): schema_of(
            torch.optim.Adam, partial=True, only=("lr", "eps", "weight_decay", "amsgrad")
        ),
        ("paths", "schema"): PathsSchema,
        ("postprocess", "schema"): schema_of(PostProcessing, instantiated=False),
        **{("sampler", f"schema_{k}"): schema_of(v, partial=True) for k, v in samplers.items()},
        ("scheduler", "schema_cosine"): schema_of(
            cosine_schedule, partial=True, name="CosineScheduleSchema"
        ),
        ("trainer", "schema"): schema_of(TrainerSettings),
        ("tuning", "schema"): schema_of(Tuning, nested={"space": space}),
    }


SCHEMAS: dict[tuple[str, str], type] = {}
_CLASSES: dict[str, type] = {}  # every schema class (nested ones too) by name


def _build() -> None:
    """Make the schemas once, and make each class importable as `sed.schemas.NAME`: a launcher
    (joblib, submitit) pickles Hydra's ConfigStore for its workers, and a class pickled by
    reference comes back as itself, defaults and all."""
    if SCHEMAS:
        return
    SCHEMAS.update(_schemas())
    todo = list(SCHEMAS.values())
    while todo:
        cls = todo.pop()
        if cls.__name__ in _CLASSES:
            continue
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
        _CLASSES[cls.__name__] = cls
        for spec in dataclasses.fields(cls):
            todo += [t for t in typing.get_args(spec.type) if dataclasses.is_dataclass(t)]
            if dataclasses.is_dataclass(spec.type):
                todo.append(spec.type)


def __getattr__(name: str) -> type:
    """`sed.schemas.TrainerSettingsSchema` and the rest (PEP 562), for unpickling."""
    if name.endswith("Schema"):
        _build()
        if name in _CLASSES:
            return _CLASSES[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register() -> None:
    """Store every schema in Hydra's ConfigStore (group, name); idempotent."""
    _build()
    store = ConfigStore.instance()
    for (group, name), schema in SCHEMAS.items():
        store.store(group=group, name=name, node=schema)


def defaults(cfg: DictConfig) -> dict[str, Any]:
    """{group: {key: default}} of each group of `cfg` that a schema types (a mandatory setting,
    which has no default, is left out)."""
    out: dict[str, Any] = {}
    for group in cfg:
        node = cfg._get_node(group)
        schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
        if schema is not None and dataclasses.is_dataclass(schema):
            tree = OmegaConf.to_container(OmegaConf.structured(schema), throw_on_missing=False)
            out[group] = _without_missing(tree)
    return out


def _without_missing(tree: dict[str, Any]) -> dict[str, Any]:
    return {
        k: _without_missing(v) if isinstance(v, dict) else v
        for k, v in tree.items()
        if v != MISSING
    }


def refuse_added_keys(cfg: DictConfig) -> None:
    """Refuse a key that `+group.key=value` added to a group past its schema (OmegaConf refuses
    the rest while composing). A new entry of `callbacks` is allowed (a callback of one's own);
    its settings are then its constructor's to check."""
    _build()
    for key in sorted({group for group, _ in SCHEMAS}):
        node = cfg.get(key)
        if isinstance(node, DictConfig):
            _refuse_added(node, key, top=key == "callbacks")


def _refuse_added(node: DictConfig, where: str, top: bool = False) -> None:
    schema = OmegaConf.get_type(node)
    known = (
        {f.name for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else None
    )
    for name in node.keys():
        value = node._get_node(name)
        if known is not None and name not in known and not top:
            raise ConfigError(
                f"{where}.{name} is not a setting of {where} (known: {', '.join(sorted(known))})"
            )
        if isinstance(value, DictConfig) and not value._is_none() and not value._is_missing():
            _refuse_added(value, f"{where}.{name}")
