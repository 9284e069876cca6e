"""Issue 12, hostile configs (cases 2, 5, 6): names that would write outside models/, values that cannot work,
and a stage that would change the settings of the stages before it. Through ``cnnrnn.cli.main`` in-process, on a
small run of real speech from the bundled sample (split, spectrograms and pack with the tiny preset: no training).
"""
import csv
import json
import shutil
from pathlib import Path

import pytest

from cnnrnn import cli
from cnnrnn.cnnrnn.config import load_config
from cnnrnn.config import ConfigError

N_UTTERANCES = 14  # a manifest this small has ~11 training items: --folds 20 cannot work


def files_under(root: Path) -> set[str]:
    """Every path under ``root`` but cnnrnn's own bookkeeping of a run (``.cnnrnn/``: marker, locks)."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if ".cnnrnn" not in p.parts}


def run_cli(argv, caplog) -> tuple[int, str]:
    caplog.clear()
    code = cli.main(["-q", *argv])
    return code, caplog.text


@pytest.fixture(scope="module")
def manifest(tmp_path_factory, sample_dir) -> Path:
    from cnnrnn.corpora import load_corpus

    utterances, _ = load_corpus("kemdy20", sample_dir)
    picked = sorted(utterances, key=lambda u: u.id)[::len(utterances) // N_UTTERANCES][:N_UTTERANCES]
    path = tmp_path_factory.mktemp("manifest") / "manifest.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "speaker", "session"])
        for u in picked:
            w.writerow([u.audio_path, u.emotion, u.speaker, u.session])
    return path


@pytest.fixture(scope="module")
def packed_run(tmp_path_factory, manifest) -> Path:
    """split → spectrograms → pack with the tiny preset (what `cnnrnn train` starts from)."""
    out = tmp_path_factory.mktemp("run") / "run"
    for argv in (["split", "--corpus", "manifest", "--root", str(manifest)], ["spectrograms", "--workers", "1"],
                 ["pack"]):
        assert cli.main(["-q", *argv, "--out", str(out), "--config", "tiny"]) == 0, argv
    return out


def write_config(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- case 2
def test_case2_checkpoint_name_outside_models_or_unknown_field_is_refused_at_load(packed_run, tmp_path, caplog):
    before = files_under(tmp_path.parent)
    run_before = files_under(packed_run)
    config_before = (packed_run / "config.json").read_bytes()
    for name, words in (("../../x{fold}.h5", ["train.checkpoint_name", "'../../x{fold}.h5'", "path separator"]),
                        ("x{k}.h5", ["train.checkpoint_name", "unknown field(s) ['k']", "{fold}, {epochs}"]),
                        ("..\\x{fold}.h5", ["path separator '\\\\'"]),
                        (".x{fold}.h5", ["leading '.'"]),
                        ("x{fold}", ["must end in '.h5'"]),
                        ("x{fold:>999999999}.h5", ["a format spec with a nested field or a width above 64"])):
        cfg = write_config(tmp_path / "c.json", {"extends": "tiny", "train": {"checkpoint_name": name}})
        code, text = run_cli(["train", "--out", str(packed_run), "--config", str(cfg)], caplog)
        assert code == 2, name
        assert "Traceback" not in text and "KeyError" not in text
        for word in words:
            assert word in text, (name, word, text)
        with pytest.raises(ConfigError, match="checkpoint_name"):  # at load time, before any stage
            load_config(cfg)
    assert files_under(packed_run) == run_before and not (packed_run / "models").exists()
    assert (packed_run / "config.json").read_bytes() == config_before
    assert files_under(tmp_path.parent) - before <= {f"{tmp_path.name}/c.json"}  # nothing written outside --out
    # a name in the folder is still fine, {fold} and {epochs} with a format spec too
    assert load_config({"train": {"checkpoint_name": "m_{fold:02d}_{epochs}.h5"}}).train.checkpoint_name


# --------------------------------------------------------------------------- case 5
BAD_CNNRNN = [
    ({"train": {"learning_rate": float("nan")}}, "train.learning_rate must be a finite number in (0, inf), got nan"),
    ({"train": {"learning_rate": 0}}, "train.learning_rate must be in (0, inf), got 0"),
    ({"train": {"learning_rate": -1e-3}}, "train.learning_rate must be in (0, inf), got -0.001"),
    ({"spectrogram": {"top_db": 0}}, "spectrogram.top_db must be in (0, inf), got 0"),
    ({"spectrogram": {"top_db": -20}}, "spectrogram.top_db must be in (0, inf), got -20"),
    ({"spectrogram": {"duration": float("nan")}}, "spectrogram.duration must be a finite number in (0, inf), got nan"),
    ({"spectrogram": {"duration": float("inf")}}, "spectrogram.duration must be a finite number in (0, inf), got inf"),
    ({"spectrogram": {"colormap": "rainbowz"}}, "spectrogram.colormap: unknown colormap 'rainbowz'; OpenCV has: gray"),
    ({"spectrogram": {"n_fft": 4}}, "n_fft 4 at sr 16000 leaves 126 of 128 mel bands (0-8000 Hz) empty (no FFT bin): "
                                    "need n_fft >= 343"),
    ({"train": {"bn_momentum": 5}}, "train.bn_momentum must be in (0, 1), got 5"),
    ({"train": {"seed": -1}}, "train.seed must be in [0, 4294967295], got -1"),
    ({"split": {"seed": -1}}, "split.seed must be in [0, 4294967295], got -1"),
    ({"train": {"beta_1": 1.0}}, "train.beta_1 must be in [0, 1), got 1.0"),
    ({"spectrogram": {"n_fft": 10 ** 12}}, "spectrogram.n_fft must be in [2, 65536], got 1000000000000"),  # no hang
    ({"spectrogram": {"image_size": [224, 10 ** 9]}}, "spectrogram.image_size must be [height, width], each in"),
]


def test_case5_values_that_cannot_work_are_refused_at_load_with_key_value_and_range(manifest, tmp_path, caplog):
    out = tmp_path / "out"
    for i, (values, message) in enumerate(BAD_CNNRNN):
        cfg = tmp_path / f"bad{i}.json"
        cfg.write_text(json.dumps(values), encoding="utf-8")  # json writes NaN / Infinity, and reads them back
        code, text = run_cli(["split", "--corpus", "manifest", "--root", str(manifest), "--out", str(out),
                              "--config", str(cfg)], caplog)
        assert code == 2, values
        assert message in text and str(cfg) in text, (message, text)
        assert "Traceback" not in text
        assert not [p for p in out.rglob("*") if p.is_file()]  # refused before any work
    # --lr nan on the command line goes through the same check
    code, text = run_cli(["train", "--out", str(out), "--lr", "nan"], caplog)
    assert code == 2 and "train.learning_rate must be a finite number in (0, inf), got nan" in text
    assert files_under(tmp_path) <= {"out"} | {f"bad{i}.json" for i in range(len(BAD_CNNRNN))}

    # the other families share the ranges (one name per concept) and the finite check
    from cnnrnn.baselines.config import BaselineConfigError, load_baseline_config
    from cnnrnn.dcnn.config import load_dcnn_config
    from cnnrnn.functionals.config import FunctionalsConfigError, load_functionals_config
    from cnnrnn.hf.config import load_config as load_hf_config

    with pytest.raises(BaselineConfigError, match=r"baseline.learning_rate must be a finite number in \(0, inf\)"):
        load_baseline_config("tiny_cnn", learning_rate=float("nan"))
    with pytest.raises(BaselineConfigError, match=r"n_fft 4 at sr \d+ leaves \d+ of \d+ mel bands"):
        load_baseline_config("tiny_cnn", n_fft=4)
    with pytest.raises(ConfigError, match=r"train.seed must be in \[0, 4294967295\], got -1"):
        load_dcnn_config({"train": {"seed": -1}})
    with pytest.raises(ConfigError, match=r"model.bn_momentum must be in \(0, 1\), got 5"):
        load_dcnn_config({"model": {"bn_momentum": 5}})
    with pytest.raises(ConfigError, match="train.name must be a plain file name"):
        load_dcnn_config({"train": {"name": "../escape"}})
    with pytest.raises(FunctionalsConfigError, match=r"functionals.C must be a finite number in \(0, inf\), got inf"):
        load_functionals_config("tiny", C=float("inf"))
    with pytest.raises(FunctionalsConfigError, match=r"functionals.sr must be in \[1000, 192000\], got 8"):
        load_functionals_config("tiny", sr=8)
    with pytest.raises(ConfigError, match=r"train.learning_rate must be in \(0, inf\), got 0"):
        load_hf_config({"train": {"learning_rate": 0}})
    with pytest.raises(ConfigError, match=r"model.max_seconds must be a finite number in \(0, inf\), got nan"):
        load_hf_config({"model": {"max_seconds": float("nan")}})


# --------------------------------------------------------------------------- case 6
def test_case6_a_stage_refuses_to_change_earlier_settings_and_a_failed_train_keeps_config(packed_run, tmp_path,
                                                                                          caplog):
    run = tmp_path / "run"
    shutil.copytree(packed_run, run)
    recorded = (run / "config.json").read_bytes()
    stamp = (run / "spectrograms" / "spectrogram_config.json").read_bytes()
    other = write_config(tmp_path / "other.json", {"extends": "tiny", "spectrogram": {"top_db": 60, "workers": 1}})
    before = files_under(tmp_path)

    # train with other spectrogram settings: refused, naming the key, both values, a new --out and --force
    code, text = run_cli(["train", "--out", str(run), "--config", str(other)], caplog)
    assert code == 2
    for word in ("train: this config changes the settings of the earlier stage(s) spectrograms",
                 "spectrogram.top_db: 80.0 -> 60", "use a new --out, or --force", '"extends"'):
        assert word in text, (word, text)
    # pack and spectrograms likewise (the split settings are spectrograms' earlier stage)
    assert run_cli(["pack", "--out", str(run), "--config", str(other)], caplog)[0] == 2
    assert "spectrogram.top_db: 80.0 -> 60" in caplog.text
    resplit = write_config(tmp_path / "resplit.json", {"extends": "tiny", "split": {"test_size": 0.5}})
    code, text = run_cli(["spectrograms", "--out", str(run), "--config", str(resplit)], caplog)
    assert code == 2 and "split.test_size: 0.2 -> 0.5" in text
    # only training settings differ, or only how many processes render: fine (no training here: see below)
    from cnnrnn.cnnrnn.config import check_earlier_stages, load_config
    from cnnrnn.cnnrnn.config import check_earlier_stages

    check_earlier_stages(run, write_config(tmp_path / "w.json", {"extends": str(run / "config.json"),
                                                                 "spectrogram": {"workers": 3},
                                                                 "train": {"epochs": 3, "learning_rate": 0.01}}),
                         "train")

    # a failed train --folds 20 leaves config.json as it was (and writes nothing)
    code, text = run_cli(["train", "--out", str(run), "--folds", "20"], caplog)
    assert code == 2 and "cannot make 20 folds from" in text
    assert (run / "config.json").read_bytes() == recorded
    assert json.loads(recorded)["train"]["folds"] == 2
    assert not (run / "models").exists() and not (run / "folds").exists()
    assert (run / "spectrograms" / "spectrogram_config.json").read_bytes() == stamp
    assert files_under(tmp_path) == before | {"resplit.json", "w.json"}

    # --force re-runs the earlier stages with the new settings: the images, the stamp and config.json agree
    old_png = next((run / "spectrograms").glob("*.png")).read_bytes()
    code, _ = run_cli(["pack", "--out", str(run), "--config", str(other), "--force"], caplog)
    assert code == 0
    assert "re-running spectrograms" in caplog.text
    assert json.loads((run / "config.json").read_text())["spectrogram"]["top_db"] == 60
    assert json.loads((run / "spectrograms" / "spectrogram_config.json").read_text())["top_db"] == 60
    assert next((run / "spectrograms").glob("*.png")).read_bytes() != old_png
    check_earlier_stages(run, other, "train")  # train now accepts the settings
    assert {p.split("/")[0] for p in files_under(tmp_path) - before} <= {"run", "resplit.json", "w.json"}
