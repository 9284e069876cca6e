"""Keras 2 checkpoints (tf.keras 2.x / tf_keras / Keras 2.2 layouts) and the original's specshow rendering.

The fixtures are written by ``tf_keras`` (Keras 2.21) once per module; the Keras 2.2 layout is made by editing
the saved ``model_config`` the way Keras 2.2 wrote it (no TF 1 here to write a real one).
"""
import json
import shutil
import warnings

import numpy as np
import pytest

tf_keras = pytest.importorskip("tf_keras")

from cnnrnn import cli  # noqa: E402
from cnnrnn.artifacts import load_model  # noqa: E402
from cnnrnn.config import ConfigError  # noqa: E402
from cnnrnn.features import SpectrogramConfig, audio_log_mel, specshow_image, to_image  # noqa: E402
from cnnrnn.keras2 import (UnsafeModelError, code_layers, is_keras2, keras3_differences,  # noqa: E402
                           saved_config)

TOL = 1e-5


def _keras22(node):
    """A tf_keras config rewritten as Keras 2.2 wrote it: no module/registered_name/build_config, no
    ``time_major``/``ragged``/``groups``, ``Model`` for a functional model, old initializer and regularizer
    forms, no per-layer dtype."""
    if isinstance(node, list):
        return [_keras22(v) for v in node]
    if not isinstance(node, dict):
        return node
    drop = ("module", "registered_name", "build_config", "ragged", "optional", "groups", "time_major")
    node = {k: _keras22(v) for k, v in node.items() if k not in drop}
    name = node.get("class_name")
    if name == "Functional":
        node["class_name"] = "Model"
    elif name == "GlorotUniform":
        node = {"class_name": "VarianceScaling",
                "config": {"scale": 1.0, "mode": "fan_avg", "distribution": "uniform", "seed": None}}
    elif name == "L2":
        node = {"class_name": "L1L2", "config": {"l1": 0.0, "l2": node["config"]["l2"]}}
    if name not in (None, "InputLayer") and isinstance(node.get("config"), dict):
        node["config"].pop("dtype", None)
    return node


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Keras 2 files written by tf_keras, with the tf_keras models that wrote them."""
    import h5py

    L = tf_keras.layers
    folder = tmp_path_factory.mktemp("keras2")
    tf_keras.utils.set_random_seed(0)
    out = {"folder": folder}

    # ResNet50 + LSTM as the original CNNRNN (ResNet50 feature map, its time axis as the LSTM's sequence).
    inputs = L.Input((64, 64, 3))
    x = tf_keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 64, 3))(inputs)
    x = L.Reshape((2, 2 * 2048))(L.Permute((2, 1, 3))(x))                       # (time, frequency x channels)
    x = L.LSTM(16)(L.TimeDistributed(L.Dense(32, activation="relu"))(x))
    out["resnet"] = tf_keras.Model(inputs, L.Dense(4, activation="softmax")(x))

    # Conv2D + Bidirectional LSTM on a 1-channel (grayscale) spectrogram.
    inputs = L.Input((32, 48, 1))
    x = L.MaxPooling2D(2)(L.BatchNormalization()(L.Conv2D(8, 3, padding="same", activation="relu")(inputs)))
    x = L.Reshape((24, 16 * 8))(L.Permute((2, 1, 3))(x))
    x = L.Bidirectional(L.LSTM(8))(x)
    out["gray"] = tf_keras.Model(inputs, L.Dense(3, activation="softmax")(x))

    # A Keras 2.2-style GRU: hard_sigmoid gates, reset_after False, an L2 regulariser.
    inputs = L.Input((32, 48, 3))
    x = L.Conv2D(4, 3, kernel_regularizer=tf_keras.regularizers.l2(0.01))(L.Rescaling(1 / 64)(inputs))
    x = L.GRU(8, reset_after=False, recurrent_activation="hard_sigmoid")(L.Reshape((30, 46 * 4))(x))
    out["gru"] = tf_keras.Model(inputs, L.Dense(3, activation="softmax")(x))

    # Not an image: (None, 130, 187) frames x features.
    inputs = L.Input((130, 187))
    out["sequence"] = tf_keras.Model(inputs, L.Dense(3, activation="softmax")(L.LSTM(4)(inputs)))

    # A Lambda layer whose function creates a file when the model is built.
    marker = folder / "lambda_ran.txt"
    inputs = L.Input((32, 48, 3))
    x = L.Lambda(lambda t, p=str(marker): (open(p, "w").close(), t)[1], name="lambda")(inputs)  # named: the
    # automatic name counts the Lambda layers this process built before
    out["lambda"] = tf_keras.Model(inputs, L.Dense(3, activation="softmax")(L.Flatten()(x)))
    out["marker"] = marker

    for name in ("resnet", "gray", "gru", "sequence", "lambda"):
        out[f"{name}_h5"] = folder / f"{name}.h5"
        with warnings.catch_warnings():  # the legacy HDF5 format is the point
            warnings.simplefilter("ignore", UserWarning)
            out[name].save(out[f"{name}_h5"])
    marker.unlink(missing_ok=True)  # saving traced the Lambda

    out["gru22_h5"] = folder / "gru22.h5"
    shutil.copy(out["gru_h5"], out["gru22_h5"])
    with h5py.File(out["gru22_h5"], "r+") as h5:
        h5.attrs["model_config"] = json.dumps(_keras22(json.loads(h5.attrs["model_config"])))
        h5.attrs["keras_version"] = "2.2.4"
    return out


@pytest.fixture(scope="module")
def wavs(sample_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("wavs")
    for wav in sorted((sample_dir / "wav" / "Session01").glob("*.wav"))[:2]:
        shutil.copy(wav, folder / wav.name)
    return folder


def _probabilities(out_dir):
    import pandas as pd

    df = pd.read_csv(out_dir / "predictions.csv")
    return df, df[[c for c in df.columns if c.startswith("p_")]].to_numpy(np.float32)


def _reference(model, images):
    """tf_keras' own probabilities for ``images`` (an eager call: no predict-function tracing)."""
    return model(np.asarray(images, np.float32), training=False).numpy()


def test_resnet50_lstm_h5_predicts_like_tf_keras(models, wavs, tmp_path):
    assert cli.main(["-q", "predict", "--model", str(models["resnet_h5"]), "--input", str(wavs), "--render", "fast",
                     "--out", str(tmp_path / "out")]) == 0
    df, proba = _probabilities(tmp_path / "out")
    cfg = SpectrogramConfig(image_size=[64, 64])  # --render fast: the OpenCV path, raw 0-255 BGR pixels
    images = np.stack([to_image(audio_log_mel(wavs / f"{i}.wav", cfg), cfg) for i in df["id"]])
    expected = _reference(models["resnet"], images)
    assert proba.shape == (2, 4)
    np.testing.assert_allclose(proba, expected, atol=TOL, rtol=0)
    assert np.ptp(expected[0]) > 0.01  # the model tells classes apart: a wrong input would show


def test_gray_bilstm_h5_gets_specshow_grayscale_audio(models, wavs, tmp_path, capsys):
    from cnnrnn.cnnrnn.predict import grayscale

    assert cli.main(["-q", "predict", "--model", str(models["gray_h5"]), "--input", str(wavs), "--pixel-range", "0-1",
                     "--out", str(tmp_path / "out")]) == 0
    assert "saved by Keras 2 and has no run config" in capsys.readouterr().out  # the output says specshow
    df, proba = _probabilities(tmp_path / "out")
    cfg = SpectrogramConfig(image_size=[32, 48], render="specshow")
    images = grayscale(np.stack([specshow_image(audio_log_mel(wavs / f"{i}.wav", cfg), cfg) for i in df["id"]]))
    assert images.shape == (2, 32, 48, 1)
    np.testing.assert_allclose(proba, _reference(models["gray"], images / 255.0), atol=TOL, rtol=0)
    assert np.abs(proba - _reference(models["gray"], images)).max() > 1e-3  # 0-1 scaling mattered


def test_keras22_layout_loads_through_tf_keras(models):
    path = models["gru22_h5"]
    config = saved_config(path)
    assert config["class_name"] == "Model" and "module" not in json.dumps(config)
    assert is_keras2(path) and keras3_differences(config) == [
        "gru: hard_sigmoid (Keras 2: clip(0.2 x + 0.5, 0, 1); Keras 3: clip(x / 6 + 0.5, 0, 1))"]
    model = load_model(path)
    assert type(model).__module__.startswith("tf_keras")
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 48, 3)).astype(np.float32)
    np.testing.assert_allclose(_reference(model, x), _reference(models["gru"], x), atol=TOL, rtol=0)


def test_lambda_layer_is_refused_and_its_code_never_runs(models, wavs, tmp_path, caplog):
    path, marker = models["lambda_h5"], models["marker"]
    assert code_layers(saved_config(path)) == ["lambda"]
    assert cli.main(["-q", "predict", "--model", str(path), "--input", str(wavs), "--out", str(tmp_path)]) == 2
    assert "Lambda" in caplog.text and "--trust-code" in caplog.text
    with pytest.raises(UnsafeModelError):
        load_model(path)
    assert not marker.exists()
    load_model(path, trust_code=True)  # trusted: built, and its code ran
    assert marker.exists()


def test_sequence_model_error_says_what_it_expects(models, wavs, tmp_path, caplog):
    assert cli.main(["-q", "predict", "--model", str(models["sequence_h5"]), "--input", str(wavs),
                     "--out", str(tmp_path)]) == 2
    assert "(None, 130, 187)" in caplog.text and "130 steps of 187 features" in caplog.text
    assert "not a spectrogram image" in caplog.text


def test_specshow_render_is_the_figure_and_close_to_the_fast_path(real_wav):
    cfg = SpectrogramConfig(render="specshow")
    db = audio_log_mel(real_wav, cfg)
    image = to_image(db, cfg)
    fast = to_image(db, SpectrogramConfig())
    assert image.shape == fast.shape == (224, 224, 3) and image.dtype == np.uint8
    difference = np.abs(image.astype(int) - fast).mean()
    assert 0.5 < difference < 6  # the same picture, drawn by other machinery
    # specshow draws one cell per frame and band, low bands at the bottom: a frame at the floor (-80 dB) in the
    # lowest band is magma's first colour (BGR) at the centre of its cell in the bottom row
    import matplotlib

    floor = np.flatnonzero(db[0] == db.min())
    assert db.min() == -80 and floor.size
    column = int((floor[0] + 0.5) * 224 / db.shape[1])
    r, g, b, _ = (np.array(matplotlib.colormaps["magma"](0.0)) * 255).round().astype(int)
    np.testing.assert_array_equal(image[-1, column], [b, g, r])


def test_render_setting_is_checked():
    SpectrogramConfig(render="specshow", colormap="coolwarm").validate()  # a matplotlib colormap
    with pytest.raises(ConfigError, match="render"):
        SpectrogramConfig(render="matplotlib").validate()
    with pytest.raises(ConfigError, match="matplotlib colormap"):
        SpectrogramConfig(render="specshow", colormap="deepgreen").validate()  # OpenCV only
    with pytest.raises(ConfigError, match="unknown colormap"):
        SpectrogramConfig(colormap="coolwarm").validate()  # matplotlib only, but render fast
