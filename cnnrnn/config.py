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
* after loading, every section's ``validate()`` (when it has one) checks ranges and raises
  :class:`ConfigError`.

Presets ship under ``cnnrnn/configs/<family>/`` and are named instead of a path (``--config tiny``).
Field names follow the field and are the same in every family: ``sr``, ``n_fft``, ``hop_length``,
``n_mels``, ``learning_rate``, ``batch_size``, ``epochs``, ``folds``, ``seed``.
"""
from __future__ import annotations

import dataclasses
import json
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


def _validate(cfg) -> None:
    parts = [getattr(cfg, f.name) for f in dataclasses.fields(cfg)] if is_sectioned(type(cfg)) else []
    for part in parts + [cfg]:
        check = getattr(part, "validate", None)
        if callable(check):
            check()


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
