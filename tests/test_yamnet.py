"""YAMNet: the Keras builder, the int8 rounding layer, the log-mel front end, and the conversion of the
TFLite file (``../shared/data/pretrained/yamnet/yamnet.tflite``; those tests skip where it is absent).

Measured here (TF 2.21; the bundled sample, 10 clips spread over it = 30 windows of 0.975 s): cosine of the
1024-d embeddings against the plain interpreter (no XNNPACK), Keras fed the interpreter's log-mel: with the
int8 rounding median 1.000000, min 0.9980; float median 0.9946, min 0.9895. The log-mel of
``yamnet_log_mel(int8_rounding=True)`` is within 2.5e-6 (natural-log units) of the interpreter's
``Identity_1``; the float front end differs by up to 6.8 (mean 0.29): the interpreter rounds each magnitude
frame to int8, so its quiet bands drop to log(0.001) = -6.9.
"""
import numpy as np
import pytest

from conftest import TFLITE

needs_tflite = pytest.mark.skipif(not TFLITE.is_file(), reason="../shared/data/pretrained/yamnet is absent")


# --------------------------------------------------------------------------- model (no file)
def test_build_yamnet_shapes_with_random_weights():
    from cnnrnn.models import Int8Rounding, build_yamnet, yamnet_backbone
    from cnnrnn.models.yamnet import yamnet_conv_layers
    from cnnrnn.models.yamnet_convert import _expected_shapes

    x = np.random.default_rng(0).normal(size=(2, 96, 64, 1)).astype("float32")
    plain = build_yamnet()
    assert plain.input_shape == (None, 96, 64, 1) and plain.output_shape == (None, 1024)
    assert plain(x).shape == (2, 1024)

    full = build_yamnet(include_top=True, int8_rounding=True)
    emb, scores = (np.asarray(v) for v in full(x))
    assert emb.shape == (2, 1024) and scores.shape == (2, 521) and emb.dtype == np.float32
    assert ((scores > 0) & (scores < 1)).all() and (emb >= 0).all()  # sigmoid; ReLU before the pooling
    assert sum(isinstance(layer, Int8Rounding) for layer in full.layers) == 14  # 13 pointwise convs + head
    assert yamnet_backbone(full).output_shape == (None, 1024)

    # every weighted layer is one of the TFLite ops, with the same number of weights (batch norm folded)
    weighted = [(layer.name, layer) for layer in full.layers if layer.weights]
    assert [name for name, _ in weighted] == [name for name, _ in yamnet_conv_layers()]
    assert full.count_params() == sum(int(np.prod(w)) + int(np.prod(b)) for _, _, w, b in _expected_shapes())

    anylength = build_yamnet(frames=None)
    assert anylength(x[:, :50]).shape == (2, 1024)


def test_int8_rounding_layer_matches_tflite_rule_and_round_trips(tmp_path):
    import keras
    import tensorflow as tf

    from cnnrnn.features import int8_round
    from cnnrnn.models import Int8Rounding

    x = np.array([[1.27, 0.005, -0.015, 0.0], [0.0, 0.0, 0.0, 0.0], [-2.54, 0.03, 1.0, 0.009]], "float32")
    out = np.asarray(Int8Rounding()(x))
    # scale = max|x| / 127 per example; 0.005 / 0.01 = 0.5 rounds away from zero to 1; -1.5 -> -2;
    # in the third example (scale 0.02) 0.03 -> 1.5 -> 2 and 0.009 -> 0.45 -> 0
    np.testing.assert_allclose(out[0], [1.27, 0.01, -0.02, 0.0], atol=1e-6)
    assert (out[1] == 0).all()
    np.testing.assert_allclose(out[2], [-2.54, 0.04, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(int8_round(x, axis=1), out, atol=1e-6)

    r = np.random.default_rng(1).normal(size=(3, 6, 4, 5)).astype("float32")
    q = np.asarray(Int8Rounding()(r))
    levels = q / (np.abs(r).max(axis=(1, 2, 3), keepdims=True) / 127)
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
    np.testing.assert_allclose(q, int8_round(r, axis=(1, 2, 3)), atol=1e-6)

    v = tf.Variable(r)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(Int8Rounding()(v))
    np.testing.assert_allclose(tape.gradient(loss, v).numpy(), 1.0)  # straight through

    model = keras.Sequential([keras.Input((4,)), Int8Rounding(name="q")])
    for path in (tmp_path / "m.keras", tmp_path / "m.h5"):
        model.save(path)
        again = keras.models.load_model(path, compile=False)  # registered: no custom_objects
        np.testing.assert_allclose(np.asarray(again(x)), out, atol=1e-6)


# --------------------------------------------------------------------------- front end (no file)
def test_yamnet_mel_matrix_is_tensorflows():
    import tensorflow as tf

    from cnnrnn.features import yamnet_mel_matrix

    ours = yamnet_mel_matrix()
    ref = tf.signal.linear_to_mel_weight_matrix(64, 257, 16000, 125.0, 7500.0).numpy()
    assert ours.shape == (257, 64) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-5)  # TF computes in float32, we in float64


def test_yamnet_log_mel_patches_and_padding(real_waveform):
    from cnnrnn.features import (ClipTooShortError, yamnet_log_mel, yamnet_pad_waveform, yamnet_patches)

    y, sr = real_waveform
    assert sr == 16000
    lm = yamnet_log_mel(y[:15600])
    assert lm.shape == (96, 64) and lm.dtype == np.float32 and np.isfinite(lm).all()
    assert lm.min() >= np.log(0.001) - 1e-6
    assert yamnet_log_mel(y[:15600], int8_rounding=True).shape == (96, 64)
    assert yamnet_log_mel(y[:399]).shape == (0, 64)

    # the int8 path's DFT by matrix product finds the FFT's peak (its quiet bands round to 0: log(0.001))
    t = np.arange(15600) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype("float32")
    exact, rounded = yamnet_log_mel(tone), yamnet_log_mel(tone, int8_rounding=True)
    peak = exact.argmax(axis=1)
    assert (rounded.argmax(axis=1) == peak).all()
    assert np.abs(np.take_along_axis(rounded - exact, peak[:, None], axis=1)).max() < 0.01

    assert len(yamnet_pad_waveform(np.ones(1000))) == 15600
    assert len(yamnet_pad_waveform(np.ones(15600))) == 15600
    assert len(yamnet_pad_waveform(np.ones(15601))) == 15600 + 7680
    padded = yamnet_pad_waveform(y)
    patches = yamnet_patches(yamnet_log_mel(padded))
    assert patches.shape == (1 + (len(padded) - 15600) // 7680, 96, 64, 1) and patches.dtype == np.float32
    np.testing.assert_array_equal(patches[1, :, :, 0], yamnet_log_mel(padded)[48:144])
    with pytest.raises(ClipTooShortError, match="shorter than one YAMNet patch"):
        yamnet_patches(lm[:95])


# --------------------------------------------------------------------------- bad input
def test_a_tflite_of_another_model_gives_a_clear_error(tmp_path):
    import keras
    import tensorflow as tf

    from cnnrnn.models.yamnet_convert import YamnetFileError, convert

    other = keras.Sequential([keras.Input((15600,)), keras.layers.Dense(4)])
    path = tmp_path / "other.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(other).convert())
    with pytest.raises(YamnetFileError, match="is not the YAMNet TFLite model.*no tensor 'input_1'"):
        convert(path, tmp_path / "y.weights.h5")

    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a flatbuffer" * 10)
    with pytest.raises(ValueError, match="is not the YAMNet TFLite model.*TFLite cannot read it"):
        convert(garbage, tmp_path / "y.weights.h5")
    with pytest.raises(FileNotFoundError):
        convert(tmp_path / "missing.tflite", tmp_path / "y.weights.h5")
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        convert(path, tmp_path / "y.h5")
    assert not list(tmp_path.glob("*.weights.h5")) and not list(tmp_path.glob(".*"))

    from cnnrnn.cli import main

    assert main(["-q", "yamnet-convert", "--tflite", str(path), "--out", str(tmp_path / "y.weights.h5")]) == 2


# --------------------------------------------------------------------------- the real file
@pytest.fixture(scope="module")
def converted(yamnet_weights):
    """The session's converted weights (conftest ``yamnet_weights``)."""
    return yamnet_weights


@needs_tflite
def test_dequantised_weights_are_the_interpreters():
    """Our dequantisation of the int8 depthwise kernels equals the interpreter's own DEQUANTIZE outputs."""
    from cnnrnn.models.yamnet_convert import open_interpreter, read_weights

    it = open_interpreter(TFLITE)
    it.set_tensor(it.get_input_details()[0]["index"], np.zeros((1, 15600), np.float32))
    it.invoke()
    weights = read_weights(it, TFLITE)
    ops = it._get_ops_details()
    dequantised = {int(op["outputs"][0]) for op in ops if op["op_name"] == "DEQUANTIZE"}
    depthwise = [op for op in ops if op["op_name"] == "DEPTHWISE_CONV_2D"]
    checked = 0
    for k, op in enumerate(depthwise, start=2):
        w = int(op["inputs"][1])
        if w in dequantised:
            ref = np.transpose(it.get_tensor(w), (1, 2, 3, 0))
            np.testing.assert_allclose(weights[f"layer{k}_depthwise"][0], ref, rtol=0, atol=1e-7)
            checked += 1
    assert checked == 11  # layers 4..14 (layers 2 and 3 are stored in float)


@needs_tflite
def test_converted_keras_yamnet_matches_the_interpreter(converted, capsys):
    """The acceptance check of issue 11: median cosine >= 0.999 with the int8 rounding emulated."""
    from cnnrnn.models import build_yamnet
    from cnnrnn.models.yamnet_convert import agreement_on_files, format_agreement

    result = agreement_on_files(TFLITE, weights_path=converted, clips=10)
    print(format_agreement(result))
    assert result["windows"] == 30 and len(result["files"]) == 10
    assert result["int8"]["median"] >= 0.999
    assert result["int8"]["min"] >= 0.99
    assert result["int8_own_front_end"]["median"] >= 0.999  # the whole interpreter, from the waveform
    assert result["float"]["median"] >= 0.99                # measured 0.9946
    assert result["log_mel_max_abs_diff"]["int8"] < 0.01    # measured 2.5e-6
    assert result["log_mel_max_abs_diff"]["float"] > 1      # measured 6.8: the interpreter's int8 front end
    assert result["scores_max_abs_diff_int8"] < 0.05

    # the weights file loads into the backbone alone (the head's weights are ignored)
    x = np.random.default_rng(2).normal(size=(1, 96, 64, 1)).astype("float32") - 3
    full, backbone = build_yamnet(include_top=True), build_yamnet()
    full.load_weights(converted)
    backbone.load_weights(converted)
    np.testing.assert_allclose(backbone.predict(x, verbose=0), full.predict(x, verbose=0)[0], rtol=1e-5)


@needs_tflite
def test_yamnet_convert_command(tmp_path, capsys):
    from cnnrnn.cli import main

    out = tmp_path / "w" / "yamnet.weights.h5"
    assert main(["-q", "yamnet-convert", "--tflite", str(TFLITE), "--out", str(out), "--check-clips", "2"]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and f"wrote {out}" in text
    assert "on 6 windows of 0.975 s of 2 clips" in text and "int8 activation rounding" in text
    assert [p.name for p in out.parent.iterdir()] == ["yamnet.weights.h5"]
