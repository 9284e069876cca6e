"""Issue 21, item 5: config values are checked by type (every element of a list, integers where integers are meant,
no silent truncation) and by size (upper bounds on the keys that size memory, list lengths, JSON nesting depth and
``extends`` chains), each refused with one line naming the key or the file. Configs are only loaded: no training.
"""
import json
from pathlib import Path

import pytest

from cnnrnn import cli
from cnnrnn.baselines.config import BaselineConfigError, load_baseline_config
from cnnrnn.cnnrnn.config import CnnrnnConfig, TrainConfig, load_config
from cnnrnn.config import (LIMITS, MAX_EXTENDS, MAX_JSON_DEPTH, ConfigError, check_value, fit_value, from_dict,
                           list_presets, override)
from cnnrnn.dcnn.config import load_dcnn_config
from cnnrnn.functionals.config import FunctionalsConfigError, load_functionals_config
from cnnrnn.hf.config import load_config as load_hf_config

LOADERS = {"cnnrnn": load_config, "dcnn": load_dcnn_config, "baselines": load_baseline_config, "hf": load_hf_config,
           "functionals": load_functionals_config}


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and len(text) < 400, text
    return text


# --------------------------------------------------------------------------- element types
@pytest.mark.parametrize("loader, data, message", [
    (load_config, {"spectrogram": {"image_size": ["a", "b"]}}, "spectrogram.image_size[0] should be int, got 'a'"),
    (load_config, {"train": {"filters": [16, "x"]}}, "train.filters[1] should be int, got 'x'"),
    (load_config, {"train": {"filters": [16, True]}}, "train.filters[1] should be int, got True"),
    (load_config, {"train": {"filters": 16}}, "train.filters should be list[int], got 16"),
    (load_config, {"split": {"labels": ["neutral", 3]}}, "split.labels[1] should be str, got 3"),
    (load_config, {"train": {"speed_perturb": [0.9, "fast"]}}, "train.speed_perturb[1] should be float, got 'fast'"),
    (load_dcnn_config, {"data": {"image_size": ["a", "b"]}}, "data.image_size[0] should be int, got 'a'"),
    (load_dcnn_config, {"model": {"filters": [16, "x"]}}, "model.filters[1] should be int, got 'x'"),
    (load_dcnn_config, {"model": {"filters": [16, None]}}, "model.filters[1] should be int, got None"),
    (load_baseline_config, {"model": "cnn", "filters": [16, "x"]}, "baseline.filters[1] should be int, got 'x'"),
    (load_baseline_config, {"hidden_units": [[256]]}, "baseline.hidden_units[0] should be int, got [256]"),
    (load_functionals_config, {"nested_C": [0.1, "1"]}, "functionals.nested_C[1] should be float, got '1'"),
])
def test_every_element_of_a_list_is_checked(loader, data, message):
    with pytest.raises(ConfigError) as exc:
        loader(data)
    assert message in one_line(exc)


@pytest.mark.parametrize("loader, data, message", [
    (load_config, {"spectrogram": {"image_size": [32.5, 64.7]}}, "spectrogram.image_size[0]: 32.5 is not an integer"),
    (load_config, {"spectrogram": {"image_size": [64, 64.7]}}, "spectrogram.image_size[1]: 64.7 is not an integer"),
    (load_config, {"train": {"lstm_units": 64.5}}, "train.lstm_units: 64.5 is not an integer"),
    (load_config, {"train": {"lstm_units": True}}, "train.lstm_units should be int, got True"),
    (load_config, {"train": {"crop_width": 64.5}}, "train.crop_width: 64.5 is not an integer"),  # int | None
    (load_config, {"train": {"whisper_block": 2.5}}, "train.whisper_block should be int | str, got 2.5"),
    (load_config, {"train": {"epochs": 10 ** 30}}, "train.epochs: 1000000000000000000000000000000 is too large"),
    (load_dcnn_config, {"data": {"image_size": [227.0, 227.3]}}, "data.image_size[1]: 227.3 is not an integer"),
    (load_hf_config, {"model": {"max_len": 100.5}}, "model.max_len: 100.5 is not an integer"),
])
def test_a_fractional_number_where_an_integer_is_meant_is_refused_never_truncated(loader, data, message):
    with pytest.raises(ConfigError) as exc:
        loader(data)
    assert message in one_line(exc)


def test_a_whole_float_is_read_as_the_integer_and_a_float_key_takes_an_int():
    cfg = load_config({"spectrogram": {"image_size": [64.0, 128.0]}, "train": {"lstm_units": 32.0, "crop_width": 64.0,
                                                                               "whisper_block": 1.0}})
    assert cfg.spectrogram.image_size == [64, 128] and all(type(v) is int for v in cfg.spectrogram.image_size)
    assert type(cfg.train.lstm_units) is int and type(cfg.train.crop_width) is int
    assert cfg.train.whisper_block == 1 and type(cfg.train.whisper_block) is int
    assert load_config({"train": {"learning_rate": 1}}).train.learning_rate == 1
    assert fit_value(tuple[int, int], [3.0, 4], "k") == (3, 4)
    with pytest.raises(ConfigError, match=r"k should be tuple\[int, int\] \(2 values\), got \[3\]"):
        fit_value(tuple[int, int], [3], "k")
    assert check_value(list[int], [1, 2]) and not check_value(list[int], [1, 2.5]) and not check_value(int, False)


def test_a_config_built_in_python_is_checked_the_same_way():
    with pytest.raises(ConfigError, match=r"train.filters\[1\] should be int, got 'x'"):
        load_config(CnnrnnConfig(train=TrainConfig(filters=[16, "x"])))
    cfg = load_config(CnnrnnConfig(train=TrainConfig(lstm_units=64.0)))
    assert type(cfg.train.lstm_units) is int


# --------------------------------------------------------------------------- sizes
@pytest.mark.parametrize("loader, data, message", [
    (load_config, {"train": {"lstm_units": 1e9}}, "train.lstm_units must be at most 4096"),
    (load_config, {"train": {"batch_size": 10 ** 6}}, "train.batch_size must be at most 4096"),
    (load_config, {"train": {"filters": [32, 10 ** 6]}}, "train.filters[1] must be at most 1024"),
    (load_config, {"train": {"filters": [8] * 11}}, "train.filters must have at most 10 entries, got 11"),
    (load_config, {"train": {"filters": [32, 0]}}, "train.filters[1] must be in [1, inf), got 0"),
    (load_config, {"spectrogram": {"duration": 1e9}}, "spectrogram.duration must be at most 600"),
    (load_config, {"spectrogram": {"n_mels": 10 ** 6}}, "spectrogram.n_mels must be in [1, 1024]"),
    (load_config, {"spectrogram": {"image_size": [224, 10 ** 9]}}, "spectrogram.image_size must be [height, width]"),
    (load_config, {"spectrogram": {"workers": 10 ** 6}}, "spectrogram.workers must be at most 1024"),
    (load_dcnn_config, {"model": {"lstm_units": 1e9}}, "model.lstm_units must be at most 4096"),
    (load_dcnn_config, {"model": {"fc_units": 10 ** 6}}, "model.fc_units must be at most 8192"),
    (load_dcnn_config, {"data": {"image_size": [227, 10 ** 6]}}, "image_size must be [H, W] with H, W in [32, 4096]"),
    (load_dcnn_config, {"data": {"segment_frames": 10 ** 9}}, "data.segment_frames must be at most 8192"),
    (load_dcnn_config, {"data": {"max_sec": 1e9}}, "data.max_sec must be at most 600"),
    (load_baseline_config, {"model": "cnn", "dense_units": 10 ** 7}, "baseline.dense_units must be at most 8192"),
    (load_baseline_config, {"hidden_units": [8192, 128], "sr": 44100},
     "baseline.hidden_units[0] 8192 x 176400 input samples"),
    (load_hf_config, {"model": {"max_len": 10 ** 6}}, "model.max_len must be at most 1024"),
    (load_hf_config, {"train": {"batch_size": 10 ** 6}}, "train.batch_size must be at most 4096"),
    (load_functionals_config, {"nested_C": [0.1] * 100}, "functionals.nested_C must have at most 64 entries"),
])
def test_keys_that_size_memory_have_an_upper_bound(loader, data, message):
    with pytest.raises(ConfigError) as exc:
        loader(data)
    assert message in one_line(exc)


def test_every_shipped_preset_is_within_the_bounds():
    for family, loader in LOADERS.items():
        for name in list_presets(family):
            loader(name)
    assert LIMITS["lstm_units"] >= 32 * 128  # far above the presets' widest LSTM


def test_overrides_go_through_the_same_checks():
    cfg = load_config("tiny")
    with pytest.raises(ConfigError, match="train.lstm_units must be at most 4096"):
        override(cfg, {"lstm_units": 10 ** 9})
    with pytest.raises(ConfigError, match=r"train.filters\[0\]: 8.5 is not an integer"):
        override(cfg, {"train.filters": [8.5]})
    with pytest.raises(BaselineConfigError, match="baseline.batch_size must be at most 4096"):
        load_baseline_config("tiny_cnn", batch_size=10 ** 6)
    with pytest.raises(FunctionalsConfigError, match=r"functionals.nested_C\[0\] should be float, got 'x'"):
        load_functionals_config("tiny", nested_C=["x"])


# --------------------------------------------------------------------------- nesting and extends chains
def test_deeply_nested_json_is_one_error_naming_the_file(tmp_path):
    fine = write(tmp_path / "fine.json", {"train": {"filters": [8, 16]}})
    assert load_config(fine).train.filters == [8, 16]
    for depth in (MAX_JSON_DEPTH + 1, 100_000):  # 100,000 levels make Python's json parser raise RecursionError
        path = write(tmp_path / f"deep{depth}.json", '{"train": {"filters": ' + "[" * depth + "]" * depth + "}}")
        with pytest.raises(ConfigError) as exc:
            load_config(path)
        assert f"{path}: objects and arrays nested more than {MAX_JSON_DEPTH} levels deep" in one_line(exc)
    # brackets inside strings are not nesting
    quoted = write(tmp_path / "quoted.json", {"split": {"labels": ["[" * 100, "{" * 100]}})
    assert load_config(quoted).split.labels == ["[" * 100, "{" * 100]
    nested: dict = {}
    for _ in range(MAX_JSON_DEPTH + 5):
        nested = {"x": nested}
    with pytest.raises(ConfigError, match=f"nests objects and arrays more than {MAX_JSON_DEPTH} levels deep"):
        from_dict(CnnrnnConfig, {"train": nested})


def test_an_integer_too_long_for_json_is_one_error_naming_the_file(tmp_path):
    path = write(tmp_path / "long.json", '{"train": {"epochs": ' + "9" * 5000 + "}}")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert f"{path}: invalid JSON" in one_line(exc)


def chain(folder: Path, n: int) -> Path:
    """``c0.json`` extends ``c1.json`` ... extends ``c{n-1}.json`` (which extends the tiny preset): n files."""
    folder.mkdir()
    write(folder / f"c{n - 1}.json", {"extends": "tiny"})
    for i in range(n - 1):
        write(folder / f"c{i}.json", {"extends": f"c{i + 1}.json"})
    return folder / "c0.json"


def test_a_long_extends_chain_is_one_error_naming_the_file(tmp_path):
    assert load_config(chain(tmp_path / "ok", MAX_EXTENDS - 1)).train.epochs == load_config("tiny").train.epochs
    for n in (MAX_EXTENDS + 1, 3000):  # 3,000 files used to exhaust Python's recursion limit
        first = chain(tmp_path / f"long{n}", n)
        with pytest.raises(ConfigError) as exc:
            load_config(first)
        assert f"{first.resolve()}: the 'extends' chain is longer than {MAX_EXTENDS} files" in one_line(exc)


# --------------------------------------------------------------------------- the command line
@pytest.mark.parametrize("data, message", [
    ({"spectrogram": {"image_size": ["a", "b"]}}, "spectrogram.image_size[0] should be int, got 'a'"),
    ({"train": {"filters": [16, "x"]}}, "train.filters[1] should be int, got 'x'"),
    ({"spectrogram": {"image_size": [32.5, 64.7]}}, "spectrogram.image_size[0]: 32.5 is not an integer"),
    ({"train": {"lstm_units": 1e9}}, "train.lstm_units must be at most 4096"),
    ('{"train": {"filters": ' + "[" * 5000 + "]" * 5000 + "}}", "nested more than 32 levels deep"),
])
def test_the_cli_turns_each_into_one_error_line_and_exit_2(tmp_path, caplog, sample_dir, data, message):
    cfg = write(tmp_path / "bad.json", data)
    out = tmp_path / "out"
    caplog.clear()
    code = cli.main(["-q", "split", "--corpus", "kemdy20", "--root", str(sample_dir), "--out", str(out),
                     "--config", str(cfg)])
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert code == 2 and len(errors) == 1 and message in errors[0] and str(cfg) in errors[0], errors
    assert "Traceback" not in caplog.text
    assert not (out / "train.json").exists()


def test_the_cli_extends_chain_and_option_overrides(tmp_path, caplog, sample_dir):
    first = chain(tmp_path / "chain", 3000)
    caplog.clear()
    code = cli.main(["-q", "split", "--corpus", "kemdy20", "--root", str(sample_dir), "--out", str(tmp_path / "o"),
                     "--config", str(first)])
    assert code == 2 and "'extends' chain is longer than 32 files" in caplog.text and "Traceback" not in caplog.text
    caplog.clear()
    code = cli.main(["-q", "train", "--out", str(tmp_path / "o2"), "--config", "tiny", "--batch-size", "1000000"])
    assert code == 2 and "train.batch_size must be at most 4096" in caplog.text
