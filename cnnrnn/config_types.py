"""Type checks of config values, read from a config dataclass' type hints (:mod:`cnnrnn.config` uses them): every
value, down to each element of a list, is of its hint's type (``int``, ``float`` (an int is taken), ``bool``,
``str``, ``list[X]``, ``tuple[X, Y]``, ``dict``, ``X | None``); a bool is never a number, and where an int is meant a
float is taken only when it is whole (``64.0`` is read as ``64``; ``64.7`` is refused, never truncated). Also the
checks of file names and file-name patterns a config gives (:func:`check_file_name`, :func:`check_name_pattern`)."""
from __future__ import annotations

import collections.abc
import dataclasses
import functools
import types
import typing
from typing import Any, Mapping


class ConfigError(ValueError):
    """A config file or value is invalid (unknown preset, section or key, wrong type, bad range)."""


@functools.lru_cache(maxsize=None)
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
    """``(python types accepted, null accepted)`` for a field's type hint (the outer type only)."""
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


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is None and isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def _show(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (an error message stays one short line)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class _Misfit(Exception):
    """Why a value does not fit its type hint (the message of the :class:`ConfigError` it becomes)."""


def _fit(hint: Any, value: Any, key: str) -> Any:
    """``value`` fitted to ``hint`` (a whole float where an int is meant becomes that int, a list where a tuple is
    meant a tuple), or :class:`_Misfit` naming ``key`` (``key[i]`` for an element)."""
    def wrong() -> _Misfit:
        return _Misfit(f"{key} should be {_type_name(hint)}, got {_show(value)}")

    if hint is Any or hint is object:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise wrong()
        arms = [a for a in args if a is not type(None)]
        problems = []
        for arm in arms:
            try:
                return _fit(arm, value, key)
            except _Misfit as exc:
                problems.append(exc)
        raise problems[0] if len(arms) == 1 else wrong()
    if value is None:
        raise wrong()
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise wrong()
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong()
        if isinstance(value, float):
            if not value.is_integer():  # never truncated: 64.7 is not 64
                raise _Misfit(f"{key}: {_show(value)} is not an integer")
            value = int(value)
        if not -2 ** 63 <= value < 2 ** 63:  # what numpy, TensorFlow and the OS take
            raise _Misfit(f"{key}: {_show(value)} is too large for an integer (64 bits)")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong()
        if isinstance(value, int):
            try:
                float(value)
            except OverflowError:
                raise _Misfit(f"{key}: {_show(value)} is too large for a number") from None
        return value
    container = origin or hint
    if container in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise wrong()
        if container is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise _Misfit(f"{key} should be {_type_name(hint)} ({len(args)} values), got {_show(value)}")
            return tuple(_fit(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        return container(_fit(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if container is dict or container is collections.abc.Mapping:
        if not isinstance(value, Mapping):
            raise wrong()
        k_hint, v_hint = args if len(args) == 2 else (Any, Any)
        return {_fit(k_hint, k, key): _fit(v_hint, v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(container, type):
        if isinstance(value, container):
            return value
        raise wrong()
    return value  # a hint this checker does not read


def fit_value(hint: Any, value: Any, key: str) -> Any:
    """Check ``value`` (parsed JSON, or a value given in Python) against the type hint of ``key`` and return it
    as the field keeps it.

    Checked from the hint: ``bool``; ``int`` (a bool is not one; a float is taken only when whole, ``64.0`` → ``64``:
    ``64.7`` is refused, never truncated); ``float`` (an int is taken); ``str``; ``list[X]`` and ``tuple[X, ...]``
    element by element, ``tuple[X, Y]`` with its length; ``dict[K, V]``; ``X | Y`` (the first that fits) and
    ``X | None``.

    Raises:
        ConfigError: one line naming ``key`` (``key[i]`` for a list element), the value and what was expected,
            e.g. ``train.image_size[1]: 64.7 is not an integer``.
    """
    try:
        return _fit(hint, value, key)
    except _Misfit as exc:
        raise ConfigError(str(exc)) from None


def check_value(hint: Any, value: Any) -> bool:
    """Whether ``value`` (parsed JSON) fits the type hint, elements included (:func:`fit_value`)."""
    try:
        _fit(hint, value, "value")
    except _Misfit:
        return False
    return True


def check_types(section: Any, name: str) -> None:
    """Check every field of a section dataclass against its type hint (:func:`fit_value`), as the loader does for
    JSON, for a section built in Python; a whole float where an int is meant is stored as that int.

    Raises:
        ConfigError: naming ``section.key`` (``section.key[i]``), the value and the expected type.
    """
    hints = _hints(type(section))
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        fitted = fit_value(hints[f.name], value, f"{name}.{f.name}")
        if type(fitted) is not type(value) or fitted != value:
            setattr(section, f.name, fitted)


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
