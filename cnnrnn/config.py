"""One config mechanism for every model family: dataclass sections read from JSON presets.

A family's config is a dataclass. Either it is *sectioned* (every field is itself a section dataclass,
e.g. CNNRNN's ``{"split": {...}, "spectrogram": {...}, "train": {...}}``), or it is *flat* (one object of
values, e.g. a baseline config). Either way:

* each default is declared once, in the dataclass; a JSON file (or a shipped preset) gives only what
  differs, and ``argparse`` options default to ``None`` and only override (:func:`override`);
* unknown sections and keys are refused, and so are values of the wrong type (read from the type hints:
  ``int``, ``float`` (an int is taken), ``bool``, ``str``, ``list``, ``X | None``);
* old key names are still read: a section class may declare ``ALIASES = {"lr": "learning_rate"}``;
  the config is always written back with the current names (:func:`to_dict`);
* after loading, every number is checked against its key's range, declared once for every family in
  :data:`RANGES` (a float must also be finite: JSON's ``NaN`` and ``Infinity`` are refused), and then every
  section's ``validate()`` (when it has one) checks what is particular to it; both raise :class:`ConfigError`
  naming ``section.key``, the value and the allowed range.

Presets ship under ``cnnrnn/configs/<family>/`` and are named instead of a path (``--config tiny``).
Field names follow the field and are the same in every family: ``sr``, ``n_fft``, ``hop_length``,
``n_mels``, ``learning_rate``, ``batch_size``, ``epochs``, ``folds``, ``seed``.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, Mapping

#: Root of the shipped presets: ``configs/<family>/<name>.json``.
PRESET_ROOT = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A config file or value is invalid (unknown preset, section or key, wrong type, bad range)."""


# --------------------------------------------------------------------------- types
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_section_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def is_sectioned(cls) -> bool:
    """Whether the config class is made of section dataclasses (``{"train": {...}, ...}``)."""
    hints = _hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    return bool(fields) and all(_is_section_type(hints[name]) for name in fields)


def _allowed(hint: Any) -> tuple[tuple[type, ...], bool]:
    """``(python types accepted, null accepted)`` for a field's type hint."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        nullable = type(None) in args
        accepted: tuple[type, ...] = ()
        for arg in args:
            if arg is not type(None):
                accepted += _allowed(arg)[0]
        return accepted, nullable
    if hint is Any:
        return (object,), True
    if origin is not None:  # list[int], dict[str, Any], ...
        return (origin,), False
    if hint is float:
        return (int, float), False
    return (hint,), False


def check_value(hint: Any, value: Any) -> bool:
    """Whether ``value`` (parsed JSON) fits the type hint (bools are never numbers)."""
    accepted, nullable = _allowed(hint)
    if value is None:
        return nullable
    if isinstance(value, bool):
        return bool in accepted or object in accepted
    return isinstance(value, accepted)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


# --------------------------------------------------------------------------- reading
def section_from_dict(cls, values: Any, name: str):
    """Build one section dataclass from a (partial) dict.

    Old names listed in ``cls.ALIASES`` are renamed first; giving both an old and a new name is an
    error. Missing keys keep the dataclass defaults.

    Raises:
        ConfigError: not an object, unknown key, or a value of the wrong type; the message names
            ``section.key``, the value and the expected type.
    """
    if not isinstance(values, Mapping):
        raise ConfigError(f"config section {name!r} must be a JSON object, got {type(values).__name__}")
    aliases = getattr(cls, "ALIASES", {})
    data: dict[str, Any] = {}
    given: dict[str, str] = {}
    for key, value in values.items():
        new = aliases.get(key, key)
        if new in data:
            old = key if key != new else given[new]
            raise ConfigError(f"{name}: both {old!r} and {new!r} are given; {old!r} is the old name of {new!r}")
        data[new], given[new] = value, key
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in section {name!r}; known: {sorted(known)}")
    for key, value in data.items():
        if not check_value(hints[key], value):
            raise ConfigError(f"{name}.{key} should be {_type_name(hints[key])}, got {value!r}")
    return cls(**data)


# --------------------------------------------------------------------------- ranges
#: The allowed range of every number of every family's config, by key (a key means the same in every family),
#: in interval notation (``inf``: unbounded). A section class may declare its own ``RANGES`` to add or narrow
#: keys. ``null`` (where the type allows it) is always accepted; a float must also be finite.
RANGES: dict[str, str] = {
    # training
    "learning_rate": "(0, inf)", "lr_decay": "(0, inf)", "beta_1": "[0, 1)", "beta_2": "[0, 1)",
    "epochs": "[1, inf)", "batch_size": "[1, inf)", "valid_batch_size": "[1, inf)", "folds": "[2, inf)",
    "fold": "[0, inf)", "calibration_folds": "[2, inf)", "seed": "[0, 4294967295]",  # numpy's seed range
    "test_size": "(0, 1)", "val_size": "(0, 1)", "threshold": "(0, 1)", "mixup": "[0, inf)",
    "C": "(0, inf)", "gamma": "(0, inf)", "l2": "[0, inf)",
    # models
    "dropout": "[0, 1)", "head_dropout": "[0, 1)", "bn_momentum": "(0, 1)", "width": "(0, inf)",
    "lstm_units": "[1, inf)", "lstm_layers": "[1, inf)", "attention_units": "[1, inf)", "fc_units": "[1, inf)",
    "dense_units": "[1, inf)", "dense1_units": "[1, inf)", "dense2_units": "[1, inf)", "proj_dim": "[1, inf)",
    "kernel_size": "[1, inf)", "max_len": "[1, inf)", "freeze_blocks": "[0, inf)", "trainable_blocks": "[0, inf)", "crop_width": "[0, inf)",
    "crop_hop": "[1, inf)", "freq_masks": "[0, inf)", "time_masks": "[0, inf)", "freq_mask_width": "[0, inf)",
    "time_mask_width": "[0, inf)",
    # audio and features
    "sr": "[1, inf)", "n_mels": "[1, 1024]", "fmin": "[0, inf)", "fmax": "(0, inf)", "n_fft": "[2, 65536]",
    "hop_length": "[1, 65536]", "win_ms": "(0, inf)", "hop_ms": "(0, inf)", "top_db": "(0, inf)",
    "duration": "(0, inf)", "max_sec": "(0, inf)", "max_seconds": "(0, inf)",
    "max_audio_seconds": "(0, inf)", "preemphasis": "[0, 1)",
    "norm_range": "(0, inf)", "delta_width": "[3, inf)", "segment_frames": "[1, inf)", "segment_hop": "[1, inf)",
    "workers": "[0, inf)",
}


@functools.lru_cache(maxsize=None)
def _interval(text: str) -> tuple[float, float, bool, bool]:
    """``"(0, 1]"`` → ``(0.0, 1.0, low_closed=False, high_closed=True)``."""
    low, high = (float(v) for v in text[1:-1].split(","))
    return low, high, text[0] == "[", text[-1] == "]"


def in_range(value: float, interval: str) -> bool:
    """Whether a finite ``value`` lies in ``interval`` (``"[1, inf)"``, ``"(0, 1)"``, ...)."""
    low, high, low_closed, high_closed = _interval(interval)
    return math.isfinite(value) and (low <= value if low_closed else low < value) \
        and (value <= high if high_closed else value < high)


def check_ranges(section: Any, name: str) -> None:
    """Check every number of a section dataclass: finite, and inside its key's range (the section class'
    ``RANGES``, else :data:`RANGES`). ``None`` and booleans are not checked.

    Raises:
        ConfigError: e.g. ``train.learning_rate must be a finite number in (0, inf), got nan``.
    """
    own = getattr(type(section), "RANGES", {})
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        interval = own.get(f.name, RANGES.get(f.name))
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{name}.{f.name} must be a finite number{f' in {interval}' if interval else ''}, "
                              f"got {value!r}")
        if interval is not None and not in_range(value, interval):
            raise ConfigError(f"{name}.{f.name} must be in {interval}, got {value!r}")


def validate_section(section: Any, name: str) -> None:
    """Check one section: :func:`check_ranges`, then its own ``validate()`` when it has one.

    Raises:
        ConfigError: a number out of range or not finite, or what the section's ``validate()`` refuses.
    """
    check_ranges(section, name)
    check = getattr(section, "validate", None)
    if callable(check):
        check()


def check_file_name(name: str, key: str) -> None:
    """Refuse a name from a config that is not one plain file name, so it can never reach outside its folder:
    the rule of utterance ids, :func:`cnnrnn.corpora.base.id_problem` (no path separator, no leading dot, so no
    ``..``, no NUL or other control character, not empty).

    Raises:
        ConfigError: naming ``key``, the name and what is wrong with it.
    """
    from .corpora.base import id_problem

    problem = id_problem(name)
    if problem:
        raise ConfigError(f"{key} must be a plain file name (no folder, no '..', no leading dot, no control "
                          f"character): {name!r} has {problem}")


def check_name_pattern(pattern: str, key: str, fields: typing.Sequence[str], suffix: str = "") -> None:
    """Refuse a file-name pattern (``str.format`` syntax) that uses a field other than ``fields``, that
    ``str.format`` cannot fill, or whose filled-in name is not a plain file name (:func:`check_file_name`)
    ending in ``suffix``.

    Raises:
        ConfigError: naming ``key``, the pattern and the fields allowed.
    """
    import re
    import string

    allowed = ", ".join("{" + f + "}" for f in fields)
    try:
        parts = [(field, spec or "") for _, field, spec, _ in string.Formatter().parse(pattern) if field is not None]
    except ValueError as exc:
        raise ConfigError(f"{key} {pattern!r} is not a valid name pattern ({exc}); allowed fields: {allowed}") \
            from exc
    unknown = [field for field, _ in parts if field not in fields]
    if unknown:
        raise ConfigError(f"{key} {pattern!r} uses unknown field(s) {unknown}; allowed: {allowed}")
    if any("{" in spec or any(int(n) > 64 for n in re.findall(r"\d+", spec)) for _, spec in parts):
        raise ConfigError(f"{key} {pattern!r}: a format spec with a nested field or a width above 64 (e.g. "
                          "{fold:>999999999}) makes no file name")
    try:
        filled = pattern.format(**{f: 1 for f in fields})
    except (ValueError, IndexError, KeyError) as exc:
        raise ConfigError(f"{key} {pattern!r} is not a valid name pattern ({exc}); allowed fields: {allowed}") \
            from exc
    check_file_name(filled, f"{key} {pattern!r}")
    if suffix and not filled.endswith(suffix):
        raise ConfigError(f"{key} {pattern!r} must end in {suffix!r}")


def _validate(cfg) -> None:
    if is_sectioned(type(cfg)):
        for f in dataclasses.fields(cfg):
            validate_section(getattr(cfg, f.name), f.name)
        check = getattr(cfg, "validate", None)
        if callable(check):
            check()
    else:
        validate_section(cfg, getattr(type(cfg), "SECTION_NAME", type(cfg).__name__))


def from_dict(cls, data: Any):
    """Build and validate a config of class ``cls`` from a (partial) dict.

    Raises:
        ConfigError: unknown sections or keys, wrong types, values out of range.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"a config must be a JSON object, got {type(data).__name__}")
    if is_sectioned(cls):
        hints = _hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"unknown config section(s) {unknown}; expected {names}")
        cfg = cls(**{n: section_from_dict(hints[n], data.get(n, {}), n) for n in names})
    else:
        cfg = section_from_dict(cls, data, getattr(cls, "SECTION_NAME", cls.__name__))
    _validate(cfg)
    return cfg


def preset_path(family: str, name: str) -> Path:
    """``configs/<family>/<name>.json`` (it may not exist)."""
    return PRESET_ROOT / family / f"{name}.json"


def list_presets(family: str) -> list[str]:
    """Names of the presets shipped for ``family`` (``cnnrnn``, ``dcnn``, ``baselines``, ``hf``)."""
    return sorted(p.stem for p in (PRESET_ROOT / family).glob("*.json"))


def read_json_config(source: str | Path, family: str, _seen: tuple[Path, ...] = ()) -> tuple[dict[str, Any], Path]:
    """The JSON object of a config file or of a shipped preset of ``family``: ``(data, path)``.

    A config may start from another one: ``"extends": "<preset or file>"`` takes that config's values, section by
    section, and the file's own values replace them; ``"description"`` is free text. Both keys are read here.

    Raises:
        ConfigError: neither a file nor a preset; invalid JSON.
    """
    path = Path(source)
    if not path.is_file() and preset_path(family, str(source)).is_file():
        path = preset_path(family, str(source))
    if not path.is_file():
        raise ConfigError(f"config {str(source)!r} is neither a file nor a {family} preset "
                          f"(presets: {', '.join(list_presets(family)) or 'none'})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid JSON: {exc}") from exc
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: 'extends' makes a cycle")
    return _resolve_extends(data, family, path, _seen + (path.resolve(),)), path


def _resolve_extends(data: Any, family: str, path: Path, seen: tuple[Path, ...]) -> Any:
    if not isinstance(data, dict):
        return data
    data = dict(data)
    data.pop("description", None)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: 'extends' must name a preset or file, got {parent!r}")
    beside = path.parent / parent  # a file named relative to this one, else a preset or a path from here
    base, _ = read_json_config(beside if beside.is_file() else parent, family, seen)
    merged = dict(base)
    for key, value in data.items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def load(cls, source: Any = None, family: str = "", base: str | None = None):
    """Load a config of class ``cls``.

    Args:
        source: ``None`` (the ``base`` preset, or the dataclass defaults), a preset name of ``family``,
            a JSON file, a dict, or an instance of ``cls`` (validated and returned).
        family: the preset folder under ``cnnrnn/configs/``.
        base: preset loaded when ``source`` is ``None``.

    Returns:
        A validated instance of ``cls``.

    Raises:
        ConfigError: unknown preset or file, invalid JSON, unknown keys, wrong types, bad values.
    """
    if isinstance(source, cls):
        _validate(source)
        return source
    if source is None and base is None:
        cfg = cls()
        _validate(cfg)
        return cfg
    if isinstance(source, Mapping):
        return from_dict(cls, source)
    data, path = read_json_config(base if source is None else source, family)
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def to_dict(cfg) -> dict[str, Any]:
    """Plain JSON-serialisable dict of every value, with the current key names."""
    return dataclasses.asdict(cfg)


def override(cfg, values: Mapping[str, Any]):
    """A copy of ``cfg`` with ``values`` replaced; keys are ``name`` or ``section.name``; ``None`` values
    are ignored (an ``argparse`` option that was not given). Old names (``ALIASES``) are accepted.

    A ``name`` without a section is looked up in the one section that has it.

    Raises:
        ConfigError: unknown or ambiguous key, wrong type, value out of range.
    """
    data = to_dict(cfg)
    sectioned = is_sectioned(type(cfg))
    hints = _hints(type(cfg))
    for key, value in values.items():
        if value is None:
            continue
        if not sectioned:
            data[key] = value
            continue
        if "." in key:
            section, name = key.split(".", 1)
        else:
            holders = [s for s in data if key in data[s]
                       or key in getattr(hints[s], "ALIASES", {})]
            if len(holders) != 1:
                raise ConfigError(f"config key {key!r} is {'ambiguous' if holders else 'unknown'}; "
                                  f"give section.{key} (sections: {list(data)})")
            section, name = holders[0], key
        if section not in data:
            raise ConfigError(f"unknown config section {section!r}; expected {list(data)}")
        name = getattr(hints[section], "ALIASES", {}).get(name, name)
        data[section][name] = value
    return from_dict(type(cfg), data)


def changed_keys(old, new, sections: typing.Iterable[str] | None = None,
                 ignore: typing.Iterable[str] = ()) -> list[str]:
    """The keys whose values differ between two configs of one class, as ``"section.key: old -> new"``.

    Args:
        old, new: configs (dataclass instances) of one class.
        sections: the sections compared (a sectioned config; default: all); a flat config compares its keys.
        ignore: ``section.key`` (or ``key``) names left out, e.g. settings that change no output
            (``spectrogram.workers``).
    """
    a, b = to_dict(old), to_dict(new)
    if not is_sectioned(type(old)):
        a, b, sections = {"": a}, {"": b}, [""]
    skip = set(ignore)
    changes = []
    for section in (list(a) if sections is None else sections):
        for key in sorted(set(a[section]) | set(b[section])):
            name = f"{section}.{key}" if section else key
            if name not in skip and a[section].get(key) != b[section].get(key):
                changes.append(f"{name}: {a[section].get(key)!r} -> {b[section].get(key)!r}")
    return changes


def nullable_keys(cls) -> set[tuple[str | None, str]]:
    """``(section, key)`` pairs whose type allows ``null`` (``section`` is ``None`` for a flat config)."""
    if is_sectioned(cls):
        hints = _hints(cls)
        return {(s, k) for s in (f.name for f in dataclasses.fields(cls))
                for k, h in _hints(hints[s]).items() if _allowed(h)[1]}
    return {(None, k) for k, h in _hints(cls).items() if _allowed(h)[1]}


def save(cfg, path: str | Path) -> Path:
    """Write the config as indented JSON, atomically. Returns the path."""
    from .artifacts import save_json

    return save_json(to_dict(cfg), path)
