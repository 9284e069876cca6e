"""The DCNN flow's tools: resample, amp-normalize and hparams (library and CLI), on real EmoDB speech."""
import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from cnnrnn.audio_tools import SameFolderError, amp_normalize_tree, resample_tree
from cnnrnn.cli import main
from cnnrnn.hparams import DEFAULT_CONFIG_DIR, HparamError, set_hparam
from conftest import write_wav


@pytest.fixture
def audio_tree(tmp_path, sample_dir):
    """src/ with two real 16 kHz recordings in nested folders, an unreadable file and an empty wav."""
    src = tmp_path / "src"
    wavs = sorted((sample_dir / "wav" / "Session01").glob("*.wav"))[:2]
    (src / "spk1" / "happy").mkdir(parents=True)
    shutil.copy(wavs[0], src / "spk1" / "a.wav")
    shutil.copy(wavs[1], src / "spk1" / "happy" / "b.wav")
    (src / "broken.wav").write_bytes(b"RIFF but not really a wav file")
    write_wav(src / "empty.wav", np.zeros(0, np.float32), 16000)
    return src


def test_resample_changes_sr_keeps_duration_tree_and_resumes(audio_tree, tmp_path, capsys):
    dst = tmp_path / "dst"
    assert main(["-q", "resample", str(audio_tree), str(dst), "8000"]) == 0
    out = capsys.readouterr().out
    assert "2 written" in out and "unreadable" in out and "empty" in out
    for rel in ("spk1/a.wav", "spk1/happy/b.wav"):
        src_info, dst_info = sf.info(str(audio_tree / rel)), sf.info(str(dst / rel))
        assert src_info.samplerate == 16000 and dst_info.samplerate == 8000
        assert dst_info.subtype == "PCM_16" and dst_info.channels == 1
        assert abs(dst_info.duration - src_info.duration) < 1e-3
        y, _ = sf.read(str(dst / rel))
        assert np.max(np.abs(y)) > 0.01  # speech, not silence
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.wav")) == ["spk1/a.wav", "spk1/happy/b.wav"]

    mtimes = {p: p.stat().st_mtime_ns for p in dst.rglob("*.wav")}
    again = resample_tree(audio_tree, dst, 8000, progress=False)
    assert (again["written"], again["up_to_date"], again["n_skipped"]) == (0, 2, 2)
    assert {p: p.stat().st_mtime_ns for p in dst.rglob("*.wav")} == mtimes
    other_rate = resample_tree(audio_tree, dst, 11025, progress=False)  # outputs at another rate are redone
    assert other_rate["written"] == 2 and sf.info(str(dst / "spk1" / "a.wav")).samplerate == 11025


def test_resample_refuses_the_source_folder(audio_tree, tmp_path):
    before = sorted(audio_tree.rglob("*"))
    assert main(["-q", "resample", str(audio_tree), str(audio_tree), "8000"]) == 2
    assert main(["-q", "resample", str(audio_tree), str(audio_tree / "out"), "8000", "-s"]) == 2
    with pytest.raises(SameFolderError):
        resample_tree(audio_tree / "spk1", audio_tree, 8000, progress=False)
    assert sorted(audio_tree.rglob("*")) == before


def test_amp_normalize_peak_one_and_silent_file_kept(tmp_path, real_waveform, capsys):
    import librosa

    y, sr = real_waveform
    src = tmp_path / "src"
    write_wav(src / "quiet.wav", 0.3 * y / np.max(np.abs(y)), sr)
    write_wav(src / "sub" / "silent.wav", np.zeros(sr // 2, np.float32), sr)
    dst = tmp_path / "dst"
    assert main(["amp-normalize", str(src), str(dst), "--silent"]) == 0
    out = capsys.readouterr().out
    assert "copied_silent" in out and "sub/silent.wav" in out

    normed, out_sr = sf.read(str(dst / "quiet.wav"), dtype="float32")
    source, _ = sf.read(str(src / "quiet.wav"), dtype="float32")
    assert out_sr == sr and normed.shape == source.shape
    assert np.max(np.abs(normed)) == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(normed, librosa.util.normalize(source), atol=2e-4)
    assert (dst / "sub" / "silent.wav").read_bytes() == (src / "sub" / "silent.wav").read_bytes()

    summary = amp_normalize_tree(src, dst, progress=False)  # rerun: nothing to redo
    assert (summary["written"], summary["up_to_date"]) == (0, 2)
    with pytest.raises(SameFolderError):
        amp_normalize_tree(src, src / "sub", progress=False)


def _config(path, data):
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


@pytest.fixture
def config(tmp_path):
    return _config(tmp_path / "esd_train.json", {
        "data": {"sr": 16000, "max_sec": 3.0, "segment_hop": 32},
        "train": {"lr": 5e-06, "batch_size": 16, "shuffle": True, "name": "esd", "decay": 0.59},
        "model": {"lstm_units": [128], "dropout": 0.1, "weights": None, "segment_hop": 32},
    })


def test_hparams_typed_update_keeps_order_and_indent(config, capsys):
    for key, text in (("batch_size", "64"), ("lr", "1e-4"), ("shuffle", "no"), ("lstm_units", "[64, 64]"),
                      ("name", "esd-small"), ("weights", "imagenet")):
        assert main(["hparams", "-p", str(config), "-y", key, "-v", text]) == 0
    assert "train.batch_size: 16 -> 64" in capsys.readouterr().out
    data = json.loads(config.read_text())
    assert data["train"] == {"lr": 1e-4, "batch_size": 64, "shuffle": False, "name": "esd-small", "decay": 0.59}
    assert data["model"]["lstm_units"] == [64, 64] and data["model"]["weights"] == "imagenet"
    assert list(data) == ["data", "train", "model"] and list(data["data"]) == ["sr", "max_sec", "segment_hop"]
    assert config.read_text().startswith('{\n  "data": {\n    "sr": 16000')


def test_hparams_wrong_type_and_ambiguous_key_are_clear_errors(config, caplog):
    before = config.read_text()
    for key, text in (("batch_size", "sixteen"), ("batch_size", "1.5"), ("shuffle", "maybe"),
                      ("lstm_units", '{"a": 1}'), ("max_sec", "[3]")):
        assert main(["-q", "hparams", "-p", str(config), "-y", key, "-v", text]) == 2
    assert config.read_text() == before
    assert "expected an integer" in caplog.text and "expected a boolean" in caplog.text
    with pytest.raises(HparamError, match=r"data\.segment_hop, model\.segment_hop"):
        set_hparam([config], "segment_hop", "16")
    with pytest.raises(HparamError, match="'train' is a section, not a value; give train.<key> .*batch_size"):
        set_hparam([config], "train", "{}")
    set_hparam([config], "model.segment_hop", "16")
    data = json.loads(config.read_text())
    assert data["model"]["segment_hop"] == 16 and data["data"]["segment_hop"] == 32


def test_hparams_null_only_where_the_dcnn_schema_allows_it(tmp_path):
    from cnnrnn.dcnn.config import load_dcnn_config

    config = tmp_path / "tiny_finetune.json"
    shutil.copy(DEFAULT_CONFIG_DIR / "tiny_finetune.json", config)
    assert main(["hparams", "-p", str(config), "-y", "max_sec", "-v", "null"]) == 0  # keep each clip's length
    assert load_dcnn_config(config).data.max_sec is None
    with pytest.raises(HparamError, match="expected an integer"):
        set_hparam([config], "epochs", "null")
    assert load_dcnn_config(config).train.epochs == 1


def test_hparams_unknown_key_needs_confirmation_and_a_section(config, tmp_path):
    assert main(["-q", "hparams", "-p", str(config), "-y", "n_mels", "-v", "64"]) == 2
    assert main(["-q", "hparams", "-p", str(config), "-y", "n_mels", "-v", "64", "--add"]) == 2  # no section
    assert "n_mels" not in config.read_text()
    assert main(["-q", "hparams", "-p", str(config), "-y", "data.n_mels", "-v", "64", "--yes"]) == 0
    assert json.loads(config.read_text())["data"]["n_mels"] == 64
    # a folder means every *.json in it; one bad file leaves all unchanged
    other = _config(tmp_path / "jtes_train.json", {"train": {"batch_size": 8}})
    with pytest.raises(HparamError, match="unknown key"):
        set_hparam([tmp_path], "data.sr", "22050")
    changes = set_hparam([tmp_path], "batch_size", "32")
    assert [c["old"] for c in changes] == [16, 8]
    assert json.loads(other.read_text())["train"]["batch_size"] == 32


def test_hparams_dialogue_with_monkeypatched_input(config, tmp_path, monkeypatch, capsys):
    second = _config(tmp_path / "jtes_train.json", {"train": {"batch_size": 8, "lr": 1e-5}})
    answers = iter(["2", "lr", "oops",            # wrong type: error shown, asked again
                    "2", "lr", "2e-5",
                    "1", "model.attention_dim", "256", "y",   # unknown key, confirmed
                    "a", "batch_size", "4",
                    "q"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    assert main(["hparams", "-p", str(config), "-p", str(second)]) == 0
    out = capsys.readouterr().out
    assert "error:" in out and "expected a number" in out
    assert json.loads(second.read_text())["train"] == {"batch_size": 4, "lr": 2e-5}
    data = json.loads(config.read_text())
    assert data["model"]["attention_dim"] == 256 and data["train"]["batch_size"] == 4


def test_hparams_needs_key_and_value_together(config):
    assert main(["-q", "hparams", "-p", str(config), "-y", "lr"]) == 2
    assert main(["-q", "hparams", "-y", "lr", "-v", "1e-3"]) == 2  # no file given


def test_hparams_dialogue_defaults_to_the_package_dcnn_configs(tmp_path, monkeypatch, capsys):
    from cnnrnn import hparams

    shipped = tmp_path / "dcnn"
    shipped.mkdir()
    for name in ("esd_finetune", "esd_train"):
        _config(shipped / f"{name}.json", {"data": {"max_sec": 3.0}, "train": {"name": name, "epochs": 30}})
    monkeypatch.setattr(hparams, "DEFAULT_CONFIG_DIR", shipped)
    answers = iter(["2", "epochs", "2", ""])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    assert main(["hparams"]) == 0
    assert "2: " + str(shipped / "esd_train.json") in capsys.readouterr().out
    assert json.loads((shipped / "esd_train.json").read_text())["train"]["epochs"] == 2
    assert json.loads((shipped / "esd_finetune.json").read_text())["train"]["epochs"] == 30

    monkeypatch.setattr(hparams, "DEFAULT_CONFIG_DIR", tmp_path / "nothing")
    assert main(["-q", "hparams"]) == 2  # no default configs and no -p: a clear error


@pytest.mark.parametrize("name", ["resample", "amp-normalize", "hparams", "filelists"])
def test_tool_subcommands_have_help(name, capsys):
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and f"usage: cnnrnn {name}" in out and "example: cnnrnn " + name in out
