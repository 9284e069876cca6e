"""Hostile-input cases 40-45 of issue 21 (item 5): config values checked by type and size (see :mod:`._common`).

Each config is refused when it is loaded, before any stage works: ``cnnrnn split`` on the bundled sample (the first
command that loads a CNNRNN config), and for the other families the command that loads theirs. No case trains.
"""
from __future__ import annotations

import json
from pathlib import Path

from ._common import case, cli, error_text, errors, files, outside, sample, write_json


def _refused(tmp: Path, configs: list[tuple[object, str]], argv: tuple = ("split", "--corpus", "kemdy20")) -> dict:
    """Run ``cnnrnn ARGV --root <sample> --out <out> --config <file>`` on each ``(config, expected text)``
    (a dict, or raw JSON text); each must exit 2 with one ERROR line holding the text and the file's path, no
    traceback, and nothing written (no stage file in ``out``, nothing outside it)."""
    inputs, out = tmp / "inputs", tmp / "out"
    inputs.mkdir(parents=True, exist_ok=True)
    before = files(tmp)
    observed, ok = [], True
    for i, (data, expected) in enumerate(configs):
        path = inputs / f"bad{i}.json"
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            write_json(path, data)
        code, _, logs = cli(*argv, "--root", sample(), "--out", out, "--config", path)
        lines = errors(logs)
        good = (code == 2 and len(lines) == 1 and expected in lines[0] and str(path) in lines[0]
                and "Traceback" not in logs)
        ok &= good
        observed.append(f"exit {code}: {error_text(logs).replace(str(inputs), 'inputs')[:200]}")
    stage_files = [p for p in files(out) if ".cnnrnn" not in p.parts] if out.exists() else []
    written = outside(before, tmp, inputs, out)
    ok &= not stage_files and not written
    return {"observed": "; ".join(observed) + f"; stage files written: {len(stage_files)}", "passed": bool(ok),
            "outside_writes": written}


@case(40, "List elements of the wrong type",
      '`spectrogram.image_size` `["a", "b"]`, `train.filters` `[16, "x"]`, `split.labels` `["neutral", 3]`',
      "exit 2 at load, one line naming the element (`train.filters[1] should be int, got 'x'`); was a TypeError")
def case_40(tmp: Path) -> dict:
    """Wrong element types in list values (a TypeError traceback before): each refused at load naming key[i]."""
    return _refused(tmp, [
        ({"spectrogram": {"image_size": ["a", "b"]}}, "spectrogram.image_size[0] should be int, got 'a'"),
        ({"train": {"filters": [16, "x"]}}, "train.filters[1] should be int, got 'x'"),
        ({"split": {"labels": ["neutral", 3]}}, "split.labels[1] should be str, got 3"),
    ])


@case(41, "Fractional numbers where integers are meant",
      "`spectrogram.image_size` `[32.5, 64.7]`, `train.lstm_units` 64.5, `train.crop_width` 64.5",
      "exit 2 at load (`spectrogram.image_size[0]: 32.5 is not an integer`); never truncated; 64.0 reads as 64")
def case_41(tmp: Path) -> dict:
    """Fractional values for int keys (image_size [32.5, 64.7] was silently truncated to [32, 64]): refused at load
    naming the key; a whole float (64.0) still loads, as the int 64."""
    result = _refused(tmp, [
        ({"spectrogram": {"image_size": [32.5, 64.7]}}, "spectrogram.image_size[0]: 32.5 is not an integer"),
        ({"spectrogram": {"image_size": [64, 64.7]}}, "spectrogram.image_size[1]: 64.7 is not an integer"),
        ({"train": {"lstm_units": 64.5}}, "train.lstm_units: 64.5 is not an integer"),
        ({"train": {"crop_width": 64.5}}, "train.crop_width: 64.5 is not an integer"),
    ])
    from cnnrnn.cnnrnn.config import load_config

    whole = load_config({"spectrogram": {"image_size": [64.0, 128.0]}}).spectrogram.image_size
    result["observed"] += f"; [64.0, 128.0] loads as {whole!r}"
    result["passed"] &= whole == [64, 128] and all(type(v) is int for v in whole)
    return result


@case(42, "Sizes that exhaust memory",
      "`train.lstm_units` 1e9, `train.filters` `[32, 1000000]`, `spectrogram.duration` 1e9, `train.batch_size` "
      "1000000, `spectrogram.workers` 1000000",
      "exit 2 at load, one line naming the key and its bound (`train.lstm_units must be at most 4096`); was an OOM")
def case_42(tmp: Path) -> dict:
    """Memory-sized values (lstm_units 1e9 gave an out-of-memory stack): each refused at load against its bound
    (cnnrnn.config.LIMITS), naming the key."""
    return _refused(tmp, [
        ({"train": {"lstm_units": 1e9}}, "train.lstm_units must be at most 4096"),
        ({"train": {"filters": [32, 1000000]}}, "train.filters[1] must be at most 1024"),
        ({"spectrogram": {"duration": 1e9}}, "spectrogram.duration must be at most 600"),
        ({"train": {"batch_size": 1000000}}, "train.batch_size must be at most 4096"),
        ({"spectrogram": {"workers": 1000000}}, "spectrogram.workers must be at most 1024"),
    ])


@case(43, "Deeply nested JSON",
      "a config whose `train.filters` is 100,000 nested arrays (and one of 33)",
      "exit 2, one line naming the file: nested more than 32 levels deep; was a RecursionError")
def case_43(tmp: Path) -> dict:
    """Deeply nested JSON (Python's json parser raised RecursionError): refused before parsing, naming the file."""
    deep = '{"train": {"filters": %s}}'
    return _refused(tmp, [
        (deep % ("[" * 100_000 + "]" * 100_000), "objects and arrays nested more than 32 levels deep"),
        (deep % ("[" * 33 + "]" * 33), "objects and arrays nested more than 32 levels deep"),
    ])


@case(44, "A 3,000-file `extends` chain",
      "`c0.json` extends `c1.json` ... extends `c2999.json` (which extends `tiny`)",
      "exit 2 after reading 32 files, one line naming the first file: the chain is longer than 32; was a "
      "RecursionError")
def case_44(tmp: Path) -> dict:
    """A 3,000-file extends chain (RecursionError before): refused at the 33rd file, naming the chain's first."""
    chain = tmp / "inputs" / "chain"
    chain.mkdir(parents=True)
    n = 3000
    (chain / f"c{n - 1}.json").write_text(json.dumps({"extends": "tiny"}), encoding="utf-8")
    for i in range(n - 1):
        (chain / f"c{i}.json").write_text(json.dumps({"extends": f"c{i + 1}.json"}), encoding="utf-8")
    out = tmp / "out"
    before = files(tmp)
    code, _, logs = cli("split", "--corpus", "kemdy20", "--root", sample(), "--out", out, "--config", chain / "c0.json")
    lines = errors(logs)
    ok = (code == 2 and len(lines) == 1 and "the 'extends' chain is longer than 32 files" in lines[0]
          and "c0.json" in lines[0] and "Traceback" not in logs)
    stage_files = [p for p in files(out) if ".cnnrnn" not in p.parts] if out.exists() else []
    written = outside(before, tmp, tmp / "inputs", out)
    return {"observed": f"exit {code}: {error_text(logs).replace(str(chain), 'chain')[:240]}; stage files written: "
                        f"{len(stage_files)}",
            "passed": bool(ok and not stage_files and not written), "outside_writes": written}


@case(45, "The other families and the command-line options",
      "`dcnn finetune` with `model.lstm_units` 1e9, `baseline train` with `filters` `[16, \"x\"]`, `functionals "
      "train` with `nested_C` `[0.1, \"x\"]`, `train --batch-size 1000000`, `hf train --max_len 1000000`",
      "each exit 2 with one line naming the key, before any work")
def case_45(tmp: Path) -> dict:
    """The same checks in every family's loader and on the options that override a config."""
    inputs, out = tmp / "inputs", tmp / "out"
    before = files(tmp)
    runs = [
        (("dcnn", "finetune", "--out", out, "--config",
          write_json(inputs / "dcnn.json", {"extends": "tiny_finetune", "model": {"lstm_units": 1e9}})),
         "model.lstm_units must be at most 4096"),
        (("baselines", "train", "--model", "cnn", "--corpus", "kemdy20", "--root", sample(), "--out", out, "--config",
          write_json(inputs / "baseline.json", {"extends": "tiny_cnn", "filters": [16, "x"]})),
         "baseline.filters[1] should be int, got 'x'"),
        (("functionals", "train", "--corpus", "kemdy20", "--root", sample(), "--out", out, "--config",
          write_json(inputs / "functionals.json", {"extends": "tiny", "nested_C": [0.1, "x"]})),
         "functionals.nested_C[1] should be float, got 'x'"),
        (("train", "--out", out, "--config", "tiny", "--batch-size", "1000000"),
         "train.batch_size must be at most 4096"),
        (("hf", "train", "--config", "tiny", "--out", out, "--max_len", "1000000"),
         "model.max_len must be at most 1024"),
    ]
    observed, ok = [], True
    for argv, expected in runs:
        code, _, logs = cli(*argv)
        lines = errors(logs)
        ok &= code == 2 and len(lines) == 1 and expected in lines[0] and "Traceback" not in logs
        observed.append(f"{' '.join(map(str, argv[:2]))}: exit {code}: {error_text(logs).replace(str(tmp), '.')[:160]}")
    stage_files = [p for p in files(out) if ".cnnrnn" not in p.parts] if out.exists() else []
    written = outside(before, tmp, inputs, out)
    return {"observed": "; ".join(observed) + f"; files written: {len(stage_files)}",
            "passed": bool(ok and not stage_files and not written), "outside_writes": written}
