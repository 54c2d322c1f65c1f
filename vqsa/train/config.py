"""Training configuration: nested dataclasses, YAML loading, ``--key value`` overrides, strict key checking.

A config is a :class:`TrainConfig` with five sections (``model``, ``data``, ``corruption``, ``optim``, ``eval``).
YAML files and command-line overrides use the same dotted names: ``epochs: 3`` / ``--epochs 3`` for top-level keys,
``model: {codebook_size: 1000}`` / ``--model.codebook_size 1000`` for keys in a section. Values given on the command
line are parsed as YAML scalars (``--corruption.corruptions [gaussian_noise, contrast]`` works); numbers in
scientific notation (``1e-4``, ``5E-4``) are numbers, as in YAML 1.2 (PyYAML's YAML 1.1 reads them as strings).
Unknown keys are rejected with the closest valid ones ("did you mean ...?"). With ``model.vq: false`` the codebook
options (``codebook_size``, ``fusion``, ``attention``, ``distance``, ``commitment_weight``, codebook ``kwargs``) are
ignored with one warning naming them.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import re
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vqsa.corruptions._params import PROFILE_CHOICES


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-4`` / ``5E+3`` / ``.5e-3`` as floats (YAML 1.2's float syntax)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with YAML 1.2-style floats: ``lr: 3e-4`` is the number 0.0003, not the string '3e-4'."""
    return yaml.load(text, Loader=_Loader)


class ConfigWarning(UserWarning):
    """A config setting was ignored (e.g. codebook options with ``model.vq: false``)."""


@dataclass
class ModelConfig:
    """Arguments of ``vqsa.create_model``; ``null`` means the library's default (``num_classes``: the dataset's).

    Library defaults: codebook_size 10000, fusion concat, attention on for concat, distance cosine, beta 0.25.
    ``kwargs`` go to ``create_model`` as well (e.g. ``{cifar_stem: true}``, ``{init: kmeans}``).
    """

    name: str = "resnet18"
    pretrained: bool | str | None = False  # true: the hub's weights; a path: a torchvision / timm weights file
    num_classes: int | None = None
    vq: bool = True
    codebook_size: int | None = None
    fusion: str | None = None
    attention: bool | None = None
    distance: str | None = None
    commitment_weight: float | None = None
    kwargs: dict = field(default_factory=dict)


@dataclass
class DataConfig:
    """Training / validation data. ``dataset``: cifar10 | imagefolder | digits."""

    dataset: str = "cifar10"
    root: str | None = None
    download: bool = False
    train_split: str = "train"
    val_split: str = "val"
    img_size: int | None = None
    train_subset: int | None = None
    val_subset: int | None = None
    crop_padding: int = 4  # 32-px (CIFAR-style) training crops: RandomCrop(size, padding) with zero fill
    workers: int | None = None  # null: chosen from the hardware (vqsa.train.compute)
    skip_bad: bool = False


@dataclass
class CorruptionConfig:
    """The training-time corruption draw of Eq. (1): identity + corruptions x severities."""

    corruptions: str | list[str] = "common"
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    mode: str = "stratified"
    clean_fraction: float | None = None
    pairs: bool = False
    corrupt_on: str = "auto"  # auto | cpu (CPU engine in DataLoader workers) | device (batched engine in-process)
    profile: str = "auto"
    augment: str = "none"  # none | augmix (torchvision's AugMix on every training crop, before any corruption)
    augmix_severity: int = 3
    augmix_width: int = 3
    augmix_depth: int = -1  # -1: a random depth in 1..3 per chain
    augmix_alpha: float = 1.0
    augmix_all_ops: bool = False  # the AugMix paper leaves out the operations that overlap ImageNet-C
    jsd: bool = False  # AugMix's Jensen-Shannon consistency over (image, 2 AugMix views); needs augment: augmix
    jsd_weight: float = 12.0


@dataclass
class OptimConfig:
    """Optimiser, schedule and loss weights (Eq. 10: L_vq + beta L_cmt + ce_weight L_ce; beta is in the model)."""

    name: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    clip_grad: float | None = None
    ce_weight: float = 1.0
    label_smoothing: float = 0.0
    backbone_lr_scale: float = 1.0  # the backbone's lr = lr * this; 0 freezes it (norm statistics included)


@dataclass
class EvalConfig:
    """Clean validation every ``val_every`` epochs, and a corruption evaluation (``vqsa.evaluate``) at the end."""

    val_every: int = 1
    enabled: bool = True
    corruptions: str | list[str] = "all"
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    n_examples: int | None = None
    batch_size: int = 256
    profile: str = "auto"


@dataclass
class TrainConfig:
    """Everything a training run needs; ``runs/<name>/config.yaml`` holds the resolved copy."""

    name: str = "run"
    output_dir: str = "runs"
    seed: int = 0
    epochs: int = 10
    batch_size: int = 128
    device: str = "auto"
    amp: bool | None = None  # null: bf16 autocast on CPUs where a probe measures it faster; false on CUDA
    amp_dtype: str = "bfloat16"
    threads: int | None = None  # torch CPU threads; null: the cores the DataLoader workers leave free
    channels_last: bool = True
    save_every: int = 0
    log_every: int = 20
    tensorboard: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    corruption: CorruptionConfig = field(default_factory=CorruptionConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML/JSON-able dict (the inverse of :func:`config_from_dict`)."""
        return dataclasses.asdict(self)

    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


CHOICES: dict[str, tuple[str, ...]] = {
    "device": ("auto", "cpu", "cuda"),
    "amp_dtype": ("bfloat16", "float16"),
    "model.fusion": (None, "replace", "add", "concat", "none"),
    "model.distance": (None, "cosine", "l2"),
    "data.dataset": ("cifar10", "imagefolder", "digits"),
    "corruption.mode": ("stratified", "uniform"),
    "corruption.corrupt_on": ("auto", "cpu", "device"),
    "corruption.augment": ("none", "augmix"),
    "corruption.profile": PROFILE_CHOICES,
    "eval.profile": PROFILE_CHOICES,
    "optim.name": ("adam", "adamw", "sgd"),
    "optim.scheduler": ("cosine", "linear", "constant"),
}
_POSITIVE = ("epochs", "batch_size", "log_every", "eval.batch_size")
_POSITIVE_OR_NULL = ("threads", "model.codebook_size", "data.train_subset", "data.val_subset", "eval.n_examples")
_DEFAULT_IF_ZERO = ("model.num_classes", "data.img_size")  # 0 means null (the default)
_BOOLEAN_WORDS = ("", "true", "false", "yes", "no", "on", "off", "none", "null")
_NON_NEGATIVE = (
    "save_every", "eval.val_every", "data.crop_padding", "optim.lr", "optim.weight_decay", "optim.warmup_epochs",
    "optim.min_lr", "optim.ce_weight", "optim.momentum", "optim.label_smoothing", "optim.backbone_lr_scale",
    "corruption.jsd_weight",
)
# Command-line spellings familiar from timm/torchvision scripts, mapped to their dotted keys.
ALIASES: dict[str, str] = {
    "data_root": "data.root",
    "download": "data.download",
    "skip_bad": "data.skip_bad",
    "workers": "data.workers",
    "corrupt_on": "corruption.corrupt_on",
    "lr": "optim.lr",
    "model_name": "model.name",
}


def valid_keys(cls: type = TrainConfig, prefix: str = "") -> list[str]:
    """All dotted keys of a config class, in declaration order."""
    keys: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys += valid_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def suggest_keys(key: str, n: int = 3) -> list[str]:
    """The valid dotted keys closest to a misspelt ``key``: those with the same last part (``model.lr`` ->
    ``optim.lr``), else the most similar (``difflib``), whole key or last part."""
    keys = valid_keys()
    key = ALIASES.get(key, key)
    leaf = key.rpartition(".")[2]
    leaves = {k: k.rpartition(".")[2] for k in keys}
    same_leaf = [k for k in keys if leaves[k] == leaf and k != key]
    if same_leaf:  # the right name in the wrong section (or without its section): `model.lr`, `codebook_size`
        return same_leaf[:n]
    close_leaf = difflib.get_close_matches(leaf, sorted(set(leaves.values())), n=n, cutoff=0.8)
    similar = difflib.get_close_matches(key, keys, n=n, cutoff=0.75)
    out: list[str] = []
    for k in [*similar, *(k for k in keys if leaves[k] in close_leaf)]:
        if k not in out and k != key:
            out.append(k)
    return out[:n]


def unknown_key_message(key: str) -> str:
    """``unknown config key 'model.codebok_size'; did you mean 'model.codebook_size'?`` (else the section's keys)."""
    close = suggest_keys(key)
    if close:
        return f"unknown config key {key!r}; did you mean {' or '.join(repr(k) for k in close)}?"
    section = key.rpartition(".")[0]
    keys = valid_keys()
    in_section = [k for k in keys if k.rpartition(".")[0] == section]
    if section and in_section:
        return f"unknown config key {key!r}; valid keys in {section!r}: {', '.join(in_section)}"
    sections = list(dict.fromkeys(k.partition(".")[0] for k in keys if "." in k))
    top = [k for k in keys if "." not in k]
    return (f"unknown config key {key!r}; valid top-level keys: {', '.join(top)}; sections: {', '.join(sections)} "
            "(keys as section.key)")


def _unknown_key_error(key: str, where: str) -> ValueError:
    return ValueError(unknown_key_message(key) if where == "command line" else f"{where}: {unknown_key_message(key)}")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (with int -> float widening and str -> list splitting)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except TypeError:
                continue
        raise TypeError(f"config key {key!r}: {value!r} matches none of {tp}")
    if origin is list:
        if isinstance(value, str):
            value = [load_yaml(v) for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"config key {key!r} expects a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"config key {key!r} expects a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError(f"config key {key!r} expects true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError(f"config key {key!r} expects an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # '1e-4' from a plain yaml.safe_load or a Python caller
            try:
                number = float(value.strip().replace("_", ""))
            except ValueError:
                pass
            else:
                if math.isfinite(number):
                    return number
        raise TypeError(f"config key {key!r} expects a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError(f"config key {key!r} expects a string, got {value!r}")
    raise TypeError(f"config key {key!r}: unsupported annotation {tp}")


def _build(cls: type, data: dict[str, Any], prefix: str, where: str) -> Any:
    if not isinstance(data, dict):
        raise TypeError(f"config section {prefix.rstrip('.') or '<top>'!r} in {where} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise _unknown_key_error(prefix + str(key), where)
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value or {}, f"{prefix}{name}.", where)
        else:
            kwargs[name] = _coerce(value, tp, prefix + name)
    return cls(**kwargs)


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check choices and ranges, raising ``ValueError`` naming the key; return ``cfg`` (with ``model.pretrained:
    null`` spelled ``false``)."""
    flat = flatten(cfg.to_dict())
    for key, choices in CHOICES.items():
        if flat[key] not in choices:
            shown = ", ".join("null" if c is None else c for c in choices)
            raise ValueError(f"config key {key!r} must be one of {shown}; got {flat[key]!r}")
    for key in _POSITIVE:
        if flat[key] <= 0:
            raise ValueError(f"config key {key!r} must be > 0; got {flat[key]!r}")
    for key in _NON_NEGATIVE:
        if flat[key] < 0:
            raise ValueError(f"config key {key!r} must be >= 0; got {flat[key]!r}")
    for key in ("corruption.severities", "eval.severities"):
        bad = [s for s in flat[key] if not 1 <= s <= 5]
        if bad or not flat[key]:
            raise ValueError(f"config key {key!r} must list severities in 1..5; got {flat[key]!r}")
    for key in _POSITIVE_OR_NULL:
        if flat[key] is not None and flat[key] <= 0:
            raise ValueError(f"config key {key!r} must be > 0 or null; got {flat[key]!r}")
    if flat["data.workers"] is not None and flat["data.workers"] < 0:
        raise ValueError(f"config key 'data.workers' must be >= 0 or null (chosen from the hardware); got "
                         f"{flat['data.workers']!r}")
    for key in _DEFAULT_IF_ZERO:
        if flat[key] is not None and flat[key] < 0:
            raise ValueError(f"config key {key!r} must be >= 0 or null (0 and null: the default); got {flat[key]!r}")
    if cfg.model.pretrained is None:
        cfg.model.pretrained = False  # null means no weights, as in create_model; one spelling in saved configs
    pretrained = cfg.model.pretrained
    if isinstance(pretrained, str) and pretrained.strip().lower() in _BOOLEAN_WORDS:
        raise ValueError(f"config key 'model.pretrained' must be true, false or the path of a weights file; got the "
                         f"string {pretrained!r} (unquote true/false)")
    cf = cfg.corruption.clean_fraction
    if cf is not None and not 0.0 <= cf <= 1.0:
        raise ValueError(f"config key 'corruption.clean_fraction' must be in [0, 1] or null; got {cf!r}")
    c = cfg.corruption
    if c.jsd and c.augment != "augmix":
        raise ValueError("config key 'corruption.jsd' needs corruption.augment: augmix (the consistency is over "
                         "AugMix views)")
    if c.jsd and c.pairs:
        raise ValueError("config keys 'corruption.jsd' and 'corruption.pairs' both add views of each image: "
                         "choose one")
    if c.augment == "augmix":
        from vqsa.data.augmix import AugMixTransform

        try:
            AugMixTransform(c.augmix_severity, c.augmix_width, c.augmix_depth, c.augmix_alpha, c.augmix_all_ops)
        except ValueError as e:
            raise ValueError(f"config keys 'corruption.augmix_*': {e}") from e
    if cfg.optim.warmup_epochs > cfg.epochs:
        raise ValueError(f"optim.warmup_epochs ({cfg.optim.warmup_epochs}) exceeds epochs ({cfg.epochs})")
    if not cfg.name or os.sep in cfg.name or cfg.name in (".", ".."):
        raise ValueError(f"config key 'name' must be a plain folder name; got {cfg.name!r}")
    return cfg


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"fusion": "concat"}}`` -> ``{"model.fusion": "concat"}`` (``model.kwargs`` stays a dict)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and f"{prefix}{k}" not in ("model.kwargs",):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


# Keys of ``model.kwargs`` that configure the codebook (``create_model``'s VectorQuantizer options and preset;
# tests/train/test_config.py checks this list against vqsa.models._factory).
CODEBOOK_KWARGS = (
    "codebook_preset", "init", "init_range", "kmeans_iters", "init_samples", "codebook_update", "decay", "eps",
    "dead_code_threshold", "dead_code_interval", "dead_code_buffer", "chunk_budget", "seed",
)


def _drop_codebook_options(cfg: TrainConfig) -> TrainConfig:
    """With ``model.vq: false`` (the fine-tuning baseline) the codebook options mean nothing: set them to null /
    remove them, with one :class:`ConfigWarning` naming those that were set (``--model.vq false`` on a VQSA config
    then builds the baseline instead of failing on each option in turn)."""
    m = cfg.model
    if m.vq:
        return cfg
    ignored = []
    for name in ("codebook_size", "fusion", "attention", "distance", "commitment_weight"):
        value = getattr(m, name)
        if value is None:
            continue
        if not ((name == "fusion" and value == "none") or (name == "attention" and value is False)):
            ignored.append(f"model.{name}={show_value(value)}")
        setattr(m, name, None)
    for name in [k for k in m.kwargs if k in CODEBOOK_KWARGS]:
        if m.kwargs[name] is not None:
            ignored.append(f"model.kwargs.{name}={show_value(m.kwargs[name])}")
        del m.kwargs[name]
    if ignored:
        warnings.warn(
            f"model.vq is false (no codebook): ignoring the codebook options {', '.join(ignored)}",
            ConfigWarning, stacklevel=4,
        )
    return cfg


def show_value(value: Any) -> str:
    """A value as it is written in YAML (``null``, ``true``, ``[1, 2]``, ``{}``)."""
    if value is None or isinstance(value, (bool, list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()
    return str(value)


def config_from_dict(data: dict[str, Any] | None, where: str = "<dict>") -> TrainConfig:
    """Build and validate a config from a nested dict; missing keys take their defaults."""
    return validate(_drop_codebook_options(_build(TrainConfig, data or {}, "", where)))


def load_config(
    path: str | os.PathLike | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
    *,
    base: dict[str, Any] | None = None,
) -> TrainConfig:
    """Load a YAML config (defaults when ``path`` is None) and apply overrides.

    Args:
        path: a YAML file with the nested layout of :class:`TrainConfig`.
        overrides: ``{"model.codebook_size": 1000}`` or command-line tokens ``["--epochs", "3", "--amp"]``.
        base: a nested dict to start from instead of a file (e.g. the config stored in a checkpoint).
    """
    data: dict[str, Any] = copy.deepcopy(base) if base is not None else {}
    where = "<checkpoint config>" if base is not None else "<defaults>"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} does not exist")
        try:
            data = load_yaml(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config must be a YAML mapping, got {type(data).__name__}")
        where = str(path)
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    return config_from_dict(data, where if not overrides else f"{where} + command line")


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    key = key.replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in valid_keys():
        raise _unknown_key_error(key, "command line")
    *sections, last = key.split(".")
    node = data
    for s in sections:
        node = node.setdefault(s, {})
        if not isinstance(node, dict):
            raise TypeError(f"config section {s!r} must be a mapping")
    node[last] = value


def _is_bool_key(key: str) -> bool:
    key = ALIASES.get(key.replace("-", "_"), key.replace("-", "_"))
    return key in _BOOL_KEYS


def parse_overrides(tokens: list[str]) -> dict[str, Any]:
    """Turn ``["--epochs", "3", "--model.codebook_size", "1000", "--amp"]`` into a dict of parsed values.

    Values are YAML scalars/flow collections; a boolean key given without a value means true.
    """
    out: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or len(tok) <= 2:
            raise ValueError(f"expected an option like --key value, got {tok!r}")
        key, sep, inline = tok[2:].partition("=")
        if sep:
            raw: str | None = inline
            i += 1
        elif i + 1 < len(tokens) and not (tokens[i + 1].startswith("--") and len(tokens[i + 1]) > 2):
            raw = tokens[i + 1]
            i += 2
        else:
            raw = None
            i += 1
        if raw is None:
            if not _is_bool_key(key):
                raise ValueError(f"option --{key} needs a value")
            value: Any = True
        else:
            value = parse_value(raw)
        out[key] = value
    return out


def parse_value(raw: str) -> Any:
    """A command-line value as YAML (``3``, ``1e-4``, ``[a, b]``, ``null``); the raw string when it is not YAML."""
    try:
        return load_yaml(raw)
    except yaml.YAMLError:
        return raw


_BOOL_KEYS = {k for k in valid_keys() if isinstance(flatten(TrainConfig().to_dict()).get(k), bool)} | {"amp"}


def to_yaml(cfg: TrainConfig) -> str:
    """The resolved config as YAML (``sort_keys=False`` keeps the declaration order)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
