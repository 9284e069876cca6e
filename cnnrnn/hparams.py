"""Change hyper-parameters in JSON config files (the original code's ``hparams_changer.py``).

Configs are nested by section, ``{"data": {...}, "train": {...}, "model": {...}}``. A key is looked up in
whichever section holds it; ``section.key`` names one when several sections hold the key. The new value is
typed from the value it replaces (int, float, bool, str, or list/dict/null written as JSON), and ``null`` is
also taken where the DCNN config schema allows it (``max_sec``, ``fmax``, ...: the ``X | None`` fields of
:class:`cnnrnn.dcnn.config.DcnnConfig`, :func:`cnnrnn.config.nullable_keys`). The file is rewritten
atomically with its key order and a 2-space indent.

Two ways to use it, as in the original:

* command mode, :func:`set_hparam` (``cnnrnn hparams -p cfg.json -y learning_rate -v 1e-4``);
* dialogue mode, :func:`dialogue` (``cnnrnn hparams``): choose a file from a list, then a key and a value,
  answering ``input()`` prompts.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

from .artifacts import load_json, save_json
from .config import PRESET_ROOT, nullable_keys
from .dcnn.config import DcnnConfig

#: The dialogue's default file list: the DCNN-BLSTMwA presets shipped with the package.
DEFAULT_CONFIG_DIR = PRESET_ROOT / "dcnn"

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


class HparamError(ValueError):
    """A key that is unknown or ambiguous, or a value that cannot take the existing value's type."""


def config_files(paths: Sequence[str | Path]) -> list[Path]:
    """Expand ``paths`` (JSON files, or folders meaning every ``*.json`` in them) into a sorted file list.

    Raises:
        FileNotFoundError: a path does not exist, or a folder holds no ``.json`` file.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.json"))
            if not found:
                raise FileNotFoundError(f"no .json config file in folder {p}")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"config file {p} does not exist")
    return list(dict.fromkeys(files))


def locate(config: dict, key: str) -> list[tuple[str | None, str]]:
    """Where ``key`` (``name`` or ``section.name``) lives in ``config``: ``[(section or None, name), ...]``.

    A top-level value that is not a section is found with section ``None``. Several results mean the key is
    ambiguous; none means it is unknown.
    """
    if "." in key:
        section, name = key.split(".", 1)
        holder = config.get(section)
        return [(section, name)] if isinstance(holder, dict) and name in holder else []
    found = [(s, key) for s, v in config.items() if isinstance(v, dict) and key in v]
    if key in config and not isinstance(config[key], dict):
        found.insert(0, (None, key))
    return found


def convert_value(text: str, current: Any, where: str = "value", nullable: bool = False) -> Any:
    """Parse ``text`` into the type of ``current`` (the value it replaces).

    bool accepts true/false, 1/0, yes/no, on/off (any case); int and float parse as Python does (an int key
    takes ``3`` but not ``3.5``; a float key takes ``3``); str is kept as typed; a list, dict or null value
    takes JSON text (``[64, 128]``, ``{"a": 1}``, ``null``), and after null any JSON value or, failing that,
    the plain string. With ``nullable`` (a key the config schema lets be null, such as ``data.max_sec``),
    ``null`` is accepted whatever the current type.

    Raises:
        HparamError: the text cannot be converted; the message names ``where`` and the expected type.
    """
    def fail(expected: str) -> HparamError:
        return HparamError(f"{where}: cannot set {text!r}, expected {expected} like the current value {current!r}")

    if nullable and text.strip() == "null":
        return None
    if isinstance(current, bool):
        word = text.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise fail("a boolean (true/false, 1/0, yes/no)")
    if isinstance(current, int):
        try:
            return int(text)
        except ValueError:
            raise fail("an integer") from None
    if isinstance(current, float):
        try:
            return float(text)
        except ValueError:
            raise fail("a number") from None
    if isinstance(current, str):
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        if current is None:
            return text
        raise fail(f"a JSON {type(current).__name__}") from None
    if current is not None and not isinstance(value, type(current)):
        raise fail(f"a JSON {type(current).__name__}")
    return value


def update_config(config: dict, key: str, text: str, add: bool = False, where: str = "config") -> dict:
    """Set ``key`` to ``text`` (typed from the old value) in ``config`` in place; returns a change record.

    Args:
        config: parsed JSON config (sections are dicts).
        key: ``name`` or ``section.name``.
        text: the new value as typed by the user.
        add: allow a key that does not exist yet; it needs ``section.name`` (the section is created if
            missing) and is typed as JSON if it parses, else kept as a string.
        where: the file name, for messages.

    Returns:
        ``{"file", "section", "key", "old", "new", "added"}``.

    Raises:
        HparamError: the key is ambiguous (the message lists ``section.key`` candidates), names a whole
            section, is unknown without ``add`` or unknown with ``add`` but no section, or the value has the
            wrong type.
    """
    found = locate(config, key)
    if len(found) > 1:
        names = ", ".join(f"{s}.{k}" if s else k for s, k in found)
        raise HparamError(f"{where}: key {key!r} is in several sections; pick one of: {names}")
    if not found:
        if isinstance(config.get(key), dict):
            raise HparamError(f"{where}: {key!r} is a section, not a value; give {key}.<key> "
                              f"(one of {', '.join(config[key]) or 'none yet'})")
        if not add:
            raise HparamError(f"{where}: unknown key {key!r} (sections: {', '.join(_sections(config))}); "
                              "give section.key and confirm with --add to add it")
        if "." not in key:
            raise HparamError(f"{where}: to add the new key {key!r}, name its section: section.{key}")
        section, name = key.split(".", 1)
        holder = config.setdefault(section, {})
        if not isinstance(holder, dict):
            raise HparamError(f"{where}: {section!r} is a value, not a section")
        holder[name] = convert_value(text, None, f"{where}: {key}")
        return {"file": where, "section": section, "key": name, "old": None, "new": holder[name], "added": True}
    section, name = found[0]
    holder = config if section is None else config[section]
    old = holder[name]
    holder[name] = convert_value(text, old, f"{where}: {key}", nullable=(section, name) in nullable_keys(DcnnConfig))
    return {"file": where, "section": section, "key": name, "old": old, "new": holder[name], "added": False}


def _sections(config: dict) -> list[str]:
    return [s for s, v in config.items() if isinstance(v, dict)]


def _load_config(path: Path) -> dict:
    try:
        config = load_json(path)
    except json.JSONDecodeError as exc:
        raise HparamError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise HparamError(f"{path}: a config must be a JSON object, found {type(config).__name__}")
    return config


def set_hparam(paths: Sequence[str | Path], key: str, text: str, add: bool = False) -> list[dict]:
    """Set ``key`` to ``text`` in every config file of ``paths`` (files or folders of ``*.json``).

    All files are checked before any is written, so a bad key or value in one file changes none. Each file
    is rewritten atomically, keeping its key order, with a 2-space indent.

    Returns:
        One change record per file (see :func:`update_config`).

    Raises:
        HparamError: as :func:`update_config`, or a file is not a JSON object.
        FileNotFoundError: a path does not exist.
    """
    files = config_files(paths)
    staged = []
    for path in files:
        config = _load_config(path)
        staged.append((path, config, update_config(config, key, text, add, where=str(path))))
    for path, config, _ in staged:
        save_json(config, path)
    return [change for _, _, change in staged]


def _ask(prompt: str) -> str:
    return input(prompt).strip()


def dialogue(paths: Sequence[str | Path], say: Callable[[str], None] = print) -> list[dict]:
    """Interactive mode: pick a file (or all), a key and a value; repeat while the user wants.

    Prompts are read with the builtin ``input()``. An unknown key is added only after a ``y`` answer to a
    y/N prompt. An empty file choice or ``q`` ends the dialogue; an error is shown and the question asked
    again.

    Returns:
        The change records of every change made.

    Raises:
        FileNotFoundError: ``paths`` gives no config file.
    """
    files = config_files(paths)
    if not files:
        raise FileNotFoundError("no config files to edit; pass -p FILE or -p FOLDER")
    changes: list[dict] = []
    while True:
        say("config files:")
        for i, f in enumerate(files, start=1):
            say(f"  {i}: {f}")
        choice = _ask("file number (a = all, q or empty = quit): ").lower()
        if choice in ("", "q"):
            return changes
        if choice == "a":
            chosen = files
        elif choice.isdigit() and 1 <= int(choice) <= len(files):
            chosen = [files[int(choice) - 1]]
        else:
            say(f"not a choice: {choice!r}")
            continue
        for f in chosen:
            say(f"{f}:\n{json.dumps(_load_config(f), indent=2, ensure_ascii=False)}")
        key = _ask("key (name or section.name): ")
        text = _ask("new value: ")
        unknown = all(not locate(_load_config(f), key) for f in chosen)
        add = unknown and _ask(f"{key!r} is not in the file(s); add it? [y/N] ").lower() in ("y", "yes")
        try:
            made = set_hparam(chosen, key, text, add=add)
        except HparamError as exc:
            say(f"error: {exc}")
            continue
        for c in made:
            say(f"{c['file']}: {c['section'] + '.' if c['section'] else ''}{c['key']}: {c['old']!r} -> {c['new']!r}")
        changes += made
