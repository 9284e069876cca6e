"""Whisper's encoder in Keras 3: the converter (CTranslate2, Hugging Face), parity, the front end, block cuts."""
import json
import struct

import numpy as np
import pytest

from conftest import WHISPER_CT2, write_ct2_whisper


def _speech(real_waveform, seconds=2.0):
    import librosa

    y, sr = real_waveform
    return librosa.resample(y, orig_sr=sr, target_sr=16000)[: int(seconds * 16000)] if sr != 16000 else \
        y[: int(seconds * 16000)]


def test_log_mel_shape_range_and_short_clip(real_waveform):
    from cnnrnn.whisper_features import whisper_log_mel

    y = _speech(real_waveform, 1.5)
    mel = whisper_log_mel(y)
    assert mel.shape == (len(y) // 160, 80) and mel.dtype == np.float32
    assert mel.max() - mel.min() <= 2.0 + 1e-6           # floored 8 log10 units below the peak, / 4
    padded = whisper_log_mel(y, pad_to_seconds=30)
    assert padded.shape == (3000, 80)
    np.testing.assert_allclose(padded[: len(mel) - 2], mel[:-2], atol=1e-5)   # same frames away from the end
    import librosa   # the reference: the same steps through librosa (Whisper's own filters were made by it)

    spec = librosa.stft(y, n_fft=400, hop_length=160, window="hann", center=True, pad_mode="reflect")
    mel_ref = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) @ (np.abs(spec[:, :-1]) ** 2)
    log = np.log10(np.maximum(mel_ref, 1e-10))
    np.testing.assert_allclose(mel, ((np.maximum(log, log.max() - 8.0) + 4.0) / 4.0).T, atol=1e-5)
    with pytest.raises(ValueError, match="frame pair"):
        whisper_log_mel(np.zeros(200, np.float32))
    with pytest.raises(ValueError, match="16 kHz"):
        whisper_log_mel(y, sr=8000)


def test_real_weights_match_ctranslate2(whisper_weights, real_waveform):
    ctranslate2 = pytest.importorskip("ctranslate2")
    from cnnrnn.models.whisper_convert import parity_ct2

    result = parity_ct2(WHISPER_CT2, whisper_weights, [_speech(real_waveform, 2.0)], seconds=2.0)
    assert result["reference"].startswith("ctranslate2") and ctranslate2.__version__ in result["reference"]
    assert result["max_abs_diff"] <= 1e-3


def test_convert_random_ct2_hf_roundtrip_and_transformers(tmp_path, real_waveform):
    from cnnrnn.models.whisper import pretrained_whisper, read_sizes
    from cnnrnn.models.whisper_convert import convert, read_source
    from cnnrnn.whisper_features import whisper_log_mel

    ct2 = write_ct2_whisper(tmp_path / "ct2" / "model.bin", n_layers=2, width=64, n_heads=2)
    result = convert(ct2=ct2, out=tmp_path / "w.weights.h5", hf_out=tmp_path / "hf")
    sizes = read_sizes(result["out"])
    assert (sizes.n_layers, sizes.width, sizes.n_heads) == (2, 64, 2)
    assert json.loads((tmp_path / "w.json").read_text())["source"]["format"] == "ctranslate2"
    # the HF folder reads back to the same tensors
    s2, w2, _ = read_source(hf=tmp_path / "hf")
    _, w1, _ = read_source(ct2=ct2)
    assert s2.n_layers == 2 and s2.width == 64
    np.testing.assert_array_equal(w1["block2"]["attn.qkv"][0], w2["block2"]["attn.qkv"][0])
    # transformers' TFWhisperEncoder on the HF folder gives our blocks' outputs
    transformers = pytest.importorskip("transformers")
    mel = whisper_log_mel(_speech(real_waveform, 1.0))
    ours = pretrained_whisper(result["out"], block="all")(mel[None])
    encoder = transformers.TFWhisperModel.from_pretrained(str(tmp_path / "hf")).get_encoder()
    padded = whisper_log_mel(_speech(real_waveform, 1.0), pad_to_seconds=30)
    theirs = encoder(padded.T[None], output_hidden_states=True).hidden_states
    ours_padded = pretrained_whisper(result["out"], block="all")(padded[None])
    for k in range(2):  # the stem and block 1; HF's last hidden state is after the final layer norm
        np.testing.assert_allclose(np.asarray(theirs[k]), np.asarray(ours_padded[k]), atol=1e-4)
    final = pretrained_whisper(result["out"], block="final")(padded[None])
    np.testing.assert_allclose(np.asarray(theirs[2]), np.asarray(final), atol=1e-4)
    assert np.asarray(ours[2]).shape == (1, 50, 64)


def test_block_cut_and_trainable_blocks(whisper_random_weights):
    from cnnrnn.models.whisper import pretrained_whisper

    frozen = pretrained_whisper(whisper_random_weights, block=1)
    assert [l.name for l in frozen.layers if l.name.startswith("block")] == ["block1"]
    assert not frozen.trainable_weights
    top = pretrained_whisper(whisper_random_weights, block=2, trainable_blocks=1)
    trained = {w.path.split("/")[0] for w in top.trainable_weights}
    assert trained == {"block2"}
    full = pretrained_whisper(whisper_random_weights, block="all")
    assert len(full.outputs) == 3
    x = np.random.default_rng(0).standard_normal((1, 100, 80)).astype("float32")
    np.testing.assert_allclose(np.asarray(full(x)[1]), np.asarray(frozen(x)), atol=1e-5)
    with pytest.raises(ValueError, match="whisper_block"):
        pretrained_whisper(whisper_random_weights, block=3)


def _ct2_bytes(path):
    return path.read_bytes()


@pytest.mark.parametrize("case", ["not_ct2", "truncated", "shapes", "other_spec"])
def test_bad_ct2_files_are_one_clear_error(tmp_path, case):
    from cnnrnn.cli import main

    good = write_ct2_whisper(tmp_path / "good" / "model.bin")
    bad = tmp_path / case / "model.bin"
    bad.parent.mkdir()
    if case == "not_ct2":
        bad.write_bytes(b"PK\x03\x04 this is a zip, not a model" * 10)
    elif case == "truncated":
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif case == "shapes":
        write_ct2_whisper(bad, width=64)
        data = bytearray(bad.read_bytes())
        name = b"encoder/conv2/bias\0"
        at = data.index(name) + len(name)
        assert data[at] == 1
        struct.pack_into("<I", data, at + 1, 32)      # claims 32 values ...
        struct.pack_into("<I", data, at + 6, 64)      # ... in 64 bytes: consistent, but not width 64
        del data[at + 10 + 64: at + 10 + 128]
        bad.write_bytes(bytes(data))
    else:
        write_ct2_whisper(bad, spec="TransformerSpec")
    out = tmp_path / "w.weights.h5"
    assert main(["whisper-convert", "--ct2", str(bad), "--out", str(out)]) == 2
    assert not out.exists()


def test_bad_hf_folder_and_wrong_size_weights(tmp_path, whisper_random_weights):
    from cnnrnn.models.blocks import WeightsError
    from cnnrnn.models.whisper import KNOWN_SIZES, pretrained_whisper
    from cnnrnn.models.whisper_convert import WhisperFileError, read_source

    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(WhisperFileError, match="not Whisper"):
        read_source(hf=folder)
    with pytest.raises(WeightsError, match="config names tiny"):
        pretrained_whisper(whisper_random_weights, block=1, sizes=KNOWN_SIZES["tiny"])
    with pytest.raises(WeightsError, match="does not exist"):
        pretrained_whisper(tmp_path / "missing.weights.h5", block=1)


def test_cli_convert_reports_parity(tmp_path, capsys):
    pytest.importorskip("ctranslate2")
    from cnnrnn.cli import main

    # an encoder-only file converts; ctranslate2 cannot run it, and the command says so
    ct2 = write_ct2_whisper(tmp_path / "ct2" / "model.bin")
    out = tmp_path / "w.weights.h5"
    assert main(["whisper-convert", "--ct2", str(ct2), "--out", str(out), "--check-clips", "1",
                 "--check-seconds", "1"]) == 0
    assert "parity check skipped: ctranslate2 cannot run" in capsys.readouterr().out and out.is_file()
    if not WHISPER_CT2.is_file():
        pytest.skip("../shared/data/pretrained/whisper-tiny.en is absent")
    assert main(["whisper-convert", "--ct2", str(WHISPER_CT2), "--out", str(tmp_path / "t.weights.h5"),
                 "--check-clips", "1", "--check-seconds", "2"]) == 0
    text = capsys.readouterr().out
    assert "read Whisper tiny: 4 blocks, width 384" in text
    assert "parity with ctranslate2" in text and ": ok" in text


def test_truncated_float16_file_loads_and_refuses_deeper_blocks(tmp_path, whisper_random_weights):
    """``--blocks 1 --float16``: a smaller file, the same stem and block 1, a clear error for block 2."""
    from cnnrnn.models.blocks import WeightsError
    from cnnrnn.models.whisper import pretrained_whisper, read_meta
    from cnnrnn.models.whisper_convert import convert

    ct2 = write_ct2_whisper(tmp_path / "ct2" / "model.bin")
    small = convert(ct2=ct2, out=tmp_path / "b1.weights.h5", blocks=1, float16=True)["out"]
    assert small.stat().st_size < 0.5 * whisper_random_weights.stat().st_size
    meta = read_meta(small)
    assert (meta["blocks"], meta["final_ln"], meta["dtype"]) == (1, False, "float16")
    x = np.random.default_rng(0).standard_normal((1, 60, 80)).astype("float32")
    full = pretrained_whisper(convert(ct2=ct2, out=tmp_path / "all.weights.h5")["out"], block=1)
    np.testing.assert_allclose(np.asarray(pretrained_whisper(small, block=1)(x)), np.asarray(full(x)), atol=1e-5)
    assert len(pretrained_whisper(small, block="all").outputs) == 2
    with pytest.raises(WeightsError, match="up to block 1 only"):
        pretrained_whisper(small, block=2)


def test_a_random_model_of_base_shape_converts_and_encodes(tmp_path):
    """Whisper base's sizes (6 blocks, width 512, 8 heads), random weights: converted from the CTranslate2 format,
    every block's output of the right shape (the real base is measured once, see README)."""
    from cnnrnn.models.whisper import pretrained_whisper, read_sizes
    from cnnrnn.models.whisper_convert import convert

    ct2 = write_ct2_whisper(tmp_path / "base" / "model.bin", n_layers=6, width=512, n_heads=8)
    out = convert(ct2=ct2, out=tmp_path / "base.weights.h5")["out"]
    sizes = read_sizes(out)
    assert (sizes.n_layers, sizes.width, sizes.n_heads, sizes.name) == (6, 512, 8, "base")
    outs = pretrained_whisper(out, block="all")(np.zeros((1, 100, 80), np.float32))
    assert len(outs) == 7 and all(tuple(o.shape) == (1, 50, 512) for o in outs)


def test_h5_float16_keeps_small_datasets_exact(tmp_path):
    import h5py

    from cnnrnn.artifacts import h5_float16

    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("big", data=np.linspace(0, 1, 100_000, dtype=np.float32))
        f.create_dataset("small", data=np.float32([0.1, 0.2]))
        f["big"].attrs["k"] = 3
    h5_float16(path, min_size=1000)
    with h5py.File(path) as f:
        assert f["big"].dtype == np.float16 and f["small"].dtype == np.float32 and f["big"].attrs["k"] == 3
        np.testing.assert_allclose(f["big"][()], np.linspace(0, 1, 100_000), atol=1e-3)
