"""One config mechanism for every model family: dataclass sections read from JSON presets.

A family's config is a dataclass. Either it is *sectioned* (every field is itself a section dataclass,
e.g. CNNRNN's ``{"split": {...}, "spectrogram": {...}, "train": {...}}``), or it is *flat* (one object of
values, e.g. a baseline config). Either way:

* each default is declared once, in the dataclass; a JSON file (or a shipped preset) gives only what
  differs, and ``argparse`` options default to ``None`` and only override (:func:`override`);
* unknown sections and keys are refused, and so are values of the wrong type (read from the type hints:
  ``int``, ``float`` (an int is taken), ``bool``, ``str``, ``list[X]``, ``tuple[X, Y]``, ``dict``, ``X | None``),
  down to every element of a list (:func:`fit_value`): a bool is never a number, and where an int is meant a
  float is taken only when it is whole (``64.0`` is read as ``64``; ``64.7`` is refused, never truncated);
* a config file nests objects and arrays at most :data:`MAX_JSON_DEPTH` deep, and a chain of ``"extends"`` is at
  most :data:`MAX_EXTENDS` files long;
* one loader, :func:`load` (a preset name, a JSON file with ``"extends"``, a dict or a config), and one way to
  change a loaded config, :func:`override` (``{"section.key": value}``, ``None`` = not given, :data:`NULL` = set to
  ``null``); every family's ``load_*config`` and every command use them;
* unknown sections and keys are errors that name the key and its close matches (:func:`unknown_key_message`);
* old key names are still read: a section class may declare ``ALIASES = {"lr": "learning_rate"}`` (or
  ``{"old": ("new", translate)}`` when the value changes form too, :func:`rename_key`); the config is always
  written back with the current names (:func:`to_dict`);
* after loading, every number is checked against its key's range, declared once for every family in
  :data:`RANGES` (a float must also be finite: JSON's ``NaN`` and ``Infinity`` are refused), and then every
  section's ``validate()`` (when it has one) checks what is particular to it; both raise :class:`ConfigError`
  naming ``section.key``, the value and the allowed range. The keys that size memory (widths, image sizes, clip
  lengths, batch sizes, list lengths) also have an upper bound, :data:`LIMITS` and :data:`MAX_LENGTHS`, far above
  any real recipe, so a typo such as ``"lstm_units": 1e9`` is one error line, not an out-of-memory crash.

Presets ship under ``cnnrnn/configs/<family>/`` and are named instead of a path (``--config tiny``).
Field names follow the field and are the same in every family: ``sr``, ``n_fft``, ``hop_length``,
``n_mels``, ``learning_rate``, ``batch_size``, ``epochs``, ``folds``, ``seed``.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import logging
import math
import re
import typing
from pathlib import Path
from typing import Any, Mapping

from .config_types import (ConfigError, _allowed, _hints, _is_section_type, _show, check_file_name,  # noqa: F401
                           check_name_pattern, check_types, check_value, fit_value, is_sectioned)

log = logging.getLogger("cnnrnn.config")


class _Null:
    """The type of :data:`NULL`."""

    def __repr__(self) -> str:
        return "NULL"


#: An :func:`override` value that sets a key to ``null`` (``None`` itself means "not given": an ``argparse``
#: option left out).
NULL = _Null()

#: Root of the shipped presets: ``configs/<family>/<name>.json``.
PRESET_ROOT = Path(__file__).parent / "configs"
#: The deepest nesting of objects and arrays in a config (real ones nest 4 at most: file, section, object, list).
MAX_JSON_DEPTH = 32
#: The most files in one chain of ``"extends"`` (the file itself included; the presets use 3 at most).
MAX_EXTENDS = 32


# --------------------------------------------------------------------------- reading
def unknown_key_message(unknown: typing.Iterable[str], known: typing.Iterable[str], where: str,
                        what: str = "key(s)") -> str:
    """The error text for keys that are not in ``known``: the unknown keys, where, the close matches of each
    (difflib), then every known key, e.g. ``unknown key(s) ['epoch'] in section 'train' (did you mean 'epochs'?);
    known: [...]``.

    Args:
        unknown: the keys refused. known: the keys allowed. where: what holds them (``section 'train'``).
        what: the word for the keys (``key(s)``, ``config section(s)``).
    """
    known = sorted(known)
    unknown = sorted(unknown)
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
        if close:
            hints.append(f"{key!r}: did you mean {' or '.join(repr(c) for c in close)}?")
    hint = f" ({'; '.join(hints)})" if hints else ""
    return f"unknown {what} {unknown} in {where}{hint}; known: {known}"


def rename_key(cls, key: str, value: Any, where: str) -> tuple[str, Any]:
    """The current name and value of a key given under an old name of section class ``cls``.

    ``cls.ALIASES`` maps an old name to the new one, or to ``(new name, function)`` when the value is also
    translated (``"group_by_speaker": ("fold_scheme", lambda v: "speaker" if v else "stratified")``); a key that is
    not an old name is returned unchanged. Each old name read is noted in the ``cnnrnn.config`` log (INFO).

    Raises:
        ConfigError: the translation refuses the value (the message names ``where.key``).
    """
    alias = getattr(cls, "ALIASES", {}).get(key)
    if alias is None:
        return key, value
    new, translate = (alias, None) if isinstance(alias, str) else alias
    if translate is not None:
        try:
            value = translate(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}.{key}: {exc}") from exc
    log.info("config: %s.%s is the old name of %s.%s", where, key, where, new)
    return new, value


def section_from_dict(cls, values: Any, name: str):
    """Build one section dataclass from a (partial) dict.

    Old names listed in ``cls.ALIASES`` are renamed first (:func:`rename_key`); giving both an old and a new name is
    an error. Missing keys keep the dataclass defaults. Every value is checked against its type hint, list elements
    included (:func:`fit_value`).

    Raises:
        ConfigError: not an object, unknown key (close matches suggested), or a value of the wrong type (or a
            fractional number where an integer is meant); the message names ``section.key``, the value and the
            expected type.
    """
    if not isinstance(values, Mapping):
        raise ConfigError(f"config section {name!r} must be a JSON object, got {type(values).__name__}")
    data: dict[str, Any] = {}
    given: dict[str, str] = {}
    for key, value in values.items():
        new, value = rename_key(cls, key, value, name)
        if new in data:
            old = key if key != new else given[new]
            raise ConfigError(f"{name}: both {old!r} and {new!r} are given; {old!r} is the old name of {new!r}")
        data[new], given[new] = value, key
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(unknown_key_message(unknown, known, f"section {name!r}"))
    data = {key: fit_value(hints[key], value, f"{name}.{key}") for key, value in data.items()}
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
    "kernel_size": "[1, inf)", "max_len": "[1, inf)", "freeze_blocks": "[0, inf)", "trainable_blocks": "[0, inf)",
    "crop_width": "[0, inf)",
    "crop_hop": "[1, inf)", "freq_masks": "[0, inf)", "time_masks": "[0, inf)", "freq_mask_width": "[0, inf)",
    "time_mask_width": "[0, inf)",
    # audio and features
    "sr": "[1, inf)", "n_mels": "[1, 1024]", "fmin": "[0, inf)", "fmax": "(0, inf)", "n_fft": "[2, 65536]",
    "hop_length": "[1, 65536]", "win_ms": "(0, inf)", "hop_ms": "(0, inf)", "top_db": "(0, inf)",
    "duration": "(0, inf)", "max_sec": "(0, inf)", "max_seconds": "(0, inf)",
    "max_audio_seconds": "(0, inf)", "preemphasis": "[0, 1)",
    "norm_range": "(0, inf)", "delta_width": "[3, inf)", "segment_frames": "[1, inf)", "segment_hop": "[1, inf)",
    "workers": "[0, inf)",
    # list values: every element
    "filters": "[1, inf)", "hidden_units": "[1, inf)", "nested_C": "(0, inf)",
}

#: Upper bounds of the keys that size memory (a number, or every element of a list), by key as :data:`RANGES`:
#: far above any shipped recipe (in the comments: the largest preset value), below what exhausts 24 GiB with the other
#: keys at recipe values. A section class may declare its own ``LIMITS``. ``n_mels``, ``n_fft`` and ``hop_length``
#: are bounded in :data:`RANGES`; image sizes by the sections' ``validate()`` (``spectrogram.image_size`` at most
#: 4096 pixels a side, ``data.image_size`` likewise).
LIMITS: dict[str, float] = {
    # model widths: units and channels (a 4096-unit LSTM over ResNet50's 2048 features is 100 M weights)
    "lstm_units": 4096,         # (128)
    "lstm_layers": 16,          # (1)
    "attention_units": 4096,    # (256)
    "fc_units": 8192,           # (4096, the paper's AlexNet)
    "dense_units": 8192,        # (128)
    "dense1_units": 8192,       # (512)
    "dense2_units": 8192,       # (256)
    "hidden_units": 8192,       # (256; the ANN's first layer is also bounded with its input, baselines.config)
    "proj_dim": 8192,           # (256)
    "filters": 1024,            # (128)
    "kernel_size": 15,          # (3)
    "width": 4,                 # (1.0, AlexNet's width multiplier: weights grow with its square)
    "max_len": 1024,            # (256 tokens; text attention grows with its square)
    # input sizes
    "sr": 384000,               # (44100 Hz)
    "duration": 600,            # (4 s)
    "max_sec": 600,             # (4 s)
    "max_seconds": 600,         # (5 s; the Whisper encoder takes at most 30)
    "max_audio_seconds": 14400,  # (3600 s, the default guard)
    "win_ms": 1000, "hop_ms": 1000,  # (25, 10 ms)
    "segment_frames": 8192, "segment_hop": 8192,  # (96, 48)
    "crop_width": 4096, "crop_hop": 4096,  # (96, 24 pixels; an image is at most 4096 wide)
    "freq_masks": 64, "time_masks": 64,  # (2)
    "freq_mask_width": 4096, "time_mask_width": 4096,  # (8, 24 pixels)
    # batches and processes
    "batch_size": 4096,         # (128)
    "valid_batch_size": 4096,   # (8)
    "workers": 1024,            # (0 = one per core)
}

#: The most entries a list value may have, by key.
MAX_LENGTHS: dict[str, int] = {"filters": 10, "hidden_units": 10, "nested_C": 64, "speed_perturb": 16}


@functools.lru_cache(maxsize=None)
def _interval(text: str) -> tuple[float, float, bool, bool]:
    """``"(0, 1]"`` → ``(0.0, 1.0, low_closed=False, high_closed=True)``."""
    low, high = (float(v) for v in text[1:-1].split(","))
    return low, high, text[0] == "[", text[-1] == "]"


def in_range(value: float, interval: str) -> bool:
    """Whether a finite ``value`` lies in ``interval`` (``"[1, inf)"``, ``"(0, 1)"``, ...)."""
    low, high, low_closed, high_closed = _interval(interval)
    if isinstance(value, float) and not math.isfinite(value):
        return False  # an int is compared exactly, however large (no float conversion that could overflow)
    return (low <= value if low_closed else low < value) and (value <= high if high_closed else value < high)


def _check_number(value: Any, key: str, interval: str | None, limit: float | None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number{f' in {interval}' if interval else ''}, got {value!r}")
    if interval is not None and not in_range(value, interval):
        raise ConfigError(f"{key} must be in {interval}, got {_show(value)}")
    if limit is not None and value > limit:
        raise ConfigError(f"{key} must be at most {limit:g} (a bound that keeps memory use sane), got {_show(value)}")


def check_ranges(section: Any, name: str) -> None:
    """Check every number of a section dataclass, and every number in its list values: finite, inside its key's
    range (the section class' ``RANGES``, else :data:`RANGES`) and at most its key's upper bound (the class'
    ``LIMITS``, else :data:`LIMITS`); and the length of every list value (:data:`MAX_LENGTHS`). ``None`` and
    booleans are not checked.

    Raises:
        ConfigError: one line naming the key, e.g. ``train.learning_rate must be a finite number in (0, inf), got
            nan``, ``train.filters[1] must be in [1, inf), got 0``, ``train.lstm_units must be at most 4096 (...),
            got 1000000000``.
    """
    cls = type(section)
    ranges, limits = {**RANGES, **getattr(cls, "RANGES", {})}, {**LIMITS, **getattr(cls, "LIMITS", {})}
    for f in dataclasses.fields(section):
        value, key = getattr(section, f.name), f"{name}.{f.name}"
        interval, limit = ranges.get(f.name), limits.get(f.name)
        if isinstance(value, (list, tuple)):
            most = MAX_LENGTHS.get(f.name)
            if most is not None and len(value) > most:
                raise ConfigError(f"{key} must have at most {most} entries, got {len(value)}")
            for i, item in enumerate(value):
                _check_number(item, f"{key}[{i}]", interval, limit)
        else:
            _check_number(value, key, interval, limit)


def validate_section(section: Any, name: str) -> None:
    """Check one section: :func:`check_types`, :func:`check_ranges`, then its own ``validate()`` when it has one.

    Raises:
        ConfigError: a value of the wrong type, a number out of range, above its bound or not finite, or what the
            section's ``validate()`` refuses.
    """
    check_types(section, name)
    check_ranges(section, name)
    check = getattr(section, "validate", None)
    if callable(check):
        check()


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
        ConfigError: not a mapping, nested deeper than :data:`MAX_JSON_DEPTH`, unknown sections or keys, wrong
            types, values out of range or above their bounds.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"a config must be a JSON object, got {type(data).__name__}")
    if _too_deep(data, MAX_JSON_DEPTH):
        raise ConfigError(f"a config nests objects and arrays more than {MAX_JSON_DEPTH} levels deep (at most "
                          f"{MAX_JSON_DEPTH}; real configs nest 4 at most)")
    if is_sectioned(cls):
        hints = _hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = set(data) - set(names)
        if unknown:
            raise ConfigError(unknown_key_message(unknown, names, "the config", "config section(s)"))
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


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def _text_too_deep(text: str, limit: int) -> bool:
    """Whether JSON text nests arrays and objects more than ``limit`` deep (brackets inside strings skipped),
    counted without parsing it: Python's own parser recurses, and fails with a RecursionError near 1,000."""
    depth = 0
    for bracket in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if bracket.group() in "[{" else -1
        if depth > limit:
            return True
    return False


def _too_deep(data: Any, limit: int) -> bool:
    """Whether parsed JSON (or a dict given in Python) nests mappings and lists more than ``limit`` deep, walked
    without recursion."""
    stack = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (Mapping, list, tuple)):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, Mapping) else item))
    return False


def read_json_config(source: str | Path, family: str, _seen: tuple[Path, ...] = ()) -> tuple[dict[str, Any], Path]:
    """The JSON object of a config file or of a shipped preset of ``family``: ``(data, path)``.

    A config may start from another one: ``"extends": "<preset or file>"`` takes that config's values, section by
    section, and the file's own values replace them; ``"description"`` is free text. Both keys are read here.

    Raises:
        ConfigError: neither a file nor a preset; invalid JSON; objects and arrays nested more than
            :data:`MAX_JSON_DEPTH` deep; an ``extends`` cycle or a chain of more than :data:`MAX_EXTENDS` files
            (each message names the file).
    """
    if len(_seen) >= MAX_EXTENDS:
        raise ConfigError(f"{_seen[0]}: the 'extends' chain is longer than {MAX_EXTENDS} files (stopped after "
                          f"{_seen[-1]})")
    path = Path(source)
    if not path.is_file() and preset_path(family, str(source)).is_file():
        path = preset_path(family, str(source))
    if not path.is_file():
        raise ConfigError(f"config {str(source)!r} is neither a file nor a {family} preset "
                          f"(presets: {', '.join(list_presets(family)) or 'none'})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON: {exc}") from exc
    deep = f"{path}: objects and arrays nested more than {MAX_JSON_DEPTH} levels deep (real configs nest 4 at most)"
    if _text_too_deep(text, MAX_JSON_DEPTH):
        raise ConfigError(deep)
    try:
        data = json.loads(text)
    except RecursionError:  # not reached after the check above; kept so a deep file can never give a traceback
        raise ConfigError(deep) from None
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4,300 digits
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


def load(cls, source: Any = None, family: str = "", base: str | None = None,
         overrides: Mapping[str, Any] | None = None):
    """Load a config of class ``cls``: the one loader of every family (each family's ``load_*config`` calls it).

    Args:
        source: ``None`` (the ``base`` preset, or the dataclass defaults), a preset name of ``family``,
            a JSON file (``"extends"`` read, :func:`read_json_config`), a dict, or an instance of ``cls``
            (validated and returned).
        family: the preset folder under ``cnnrnn/configs/``.
        base: preset loaded when ``source`` is ``None``.
        overrides: values that then replace the loaded ones (:func:`override`; ``None`` values are ignored).

    Returns:
        A validated instance of ``cls``.

    Raises:
        ConfigError: unknown preset or file, invalid JSON, unknown keys (close matches suggested), wrong types,
            bad values.
    """
    cfg = _load(cls, source, family, base)
    if overrides and any(v is not None for v in overrides.values()):
        cfg = override(cfg, overrides)
    return cfg


def _load(cls, source: Any, family: str, base: str | None):
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
    """A copy of ``cfg`` with ``values`` replaced: the one way every family and the command line change a loaded
    config.

    Args:
        cfg: a config (dataclass instance) of any family.
        values: ``{key: value}``; a key is ``section.name`` or, in a sectioned config, a ``name`` that one section
            alone has (a flat config takes ``name``). ``None`` values are ignored (an ``argparse`` option that was not
            given); :data:`NULL` sets ``null``. Old names (``ALIASES``, :func:`rename_key`) are accepted.

    Returns:
        A new validated config of the same class.

    Raises:
        ConfigError: unknown (close matches suggested) or ambiguous key, wrong type, value out of range.
    """
    data = to_dict(cfg)
    cls = type(cfg)
    sectioned = is_sectioned(cls)
    hints = _hints(cls)
    for key, value in values.items():
        if value is None:
            continue
        if value is NULL:
            value = None
        if not sectioned:
            name, value = rename_key(cls, key, value, getattr(cls, "SECTION_NAME", cls.__name__))
            if name not in data:
                raise ConfigError(unknown_key_message([key], data, getattr(cls, "SECTION_NAME", cls.__name__)))
            data[name] = value
            continue
        if "." in key:
            section, name = key.split(".", 1)
        else:
            holders = [s for s in data if key in data[s] or key in getattr(hints[s], "ALIASES", {})]
            if len(holders) != 1:
                every = [f"{s}.{k}" for s in data for k in data[s]]
                close = difflib.get_close_matches(key, [k.split(".", 1)[1] for k in every], n=3, cutoff=0.6)
                raise ConfigError(f"config key {key!r} is {'ambiguous' if holders else 'unknown'}; give "
                                  f"section.{key} (sections: {list(data)})"
                                  + (f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""))
            section, name = holders[0], key
        if section not in data:
            raise ConfigError(unknown_key_message([section], data, "the config", "config section(s)"))
        name, value = rename_key(hints[section], name, value, section)
        if name not in data[section]:
            raise ConfigError(unknown_key_message([name], data[section], f"section {section!r}"))
        data[section][name] = value
    return from_dict(cls, data)


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
