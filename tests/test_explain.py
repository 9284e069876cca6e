"""Saliency over the spectrogram (issue 23, item 3): :mod:`cnnrnn.explain` and ``cnnrnn spectrogram --explain``.

Where the answer is known: synthetic log-mels (32 mel bands x 32 frames, row 0 the lowest band) in which every
clip holds the same loud, thin distractor tone (rows 4-5, 3 +- 2 units, its loudness random so that it carries no
label) and the label is whether a quieter, wider tone (1 unit) fills band B (rows 18-25, four cells of the tiny
model's 16 x 16 convolutional map). A trained model must put its saliency on B, where an input-energy map puts
most on the distractor.
"""
import json

import numpy as np
import pytest

from cnnrnn import explain as E
from cnnrnn import plots
from cnnrnn.cli import main

M, T = 32, 32
D, B = slice(4, 6), slice(18, 26)


def _clips(n: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.05, (n, M, T)).astype(np.float32)
    y = rng.integers(0, 2, n)
    x[:, D, :] += rng.uniform(1.0, 5.0, (n, 1, 1))
    x[y == 1, B, :] += rng.uniform(0.8, 1.2, (int((y == 1).sum()), 1, 1))
    return x, y


def _fit(model, x, y, epochs: int, lr: float):
    import keras

    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def data():
    return _clips(256, 0), _clips(64, 1)


@pytest.fixture(scope="module")
def conv_model(data):
    """Two bias-free 3x3 convolutions around one 2x2 pooling (a 16 x 16 map), global average pooling, softmax."""
    import keras

    keras.utils.set_random_seed(0)
    kw = dict(padding="same", activation="relu", use_bias=False)
    model = keras.Sequential([keras.Input((M, T, 1)), keras.layers.Conv2D(8, 3, **kw), keras.layers.MaxPooling2D(2),
                              keras.layers.Conv2D(8, 3, name="last_conv", **kw),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, activation="softmax")])
    (x, y), _ = data
    return _fit(model, x[..., None], y, 10, 0.01)


@pytest.fixture(scope="module")
def pooled_model(data):
    """No convolution: the log-mel averaged over time, one hidden layer (L2), softmax."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((M, T)), keras.layers.GlobalAveragePooling1D(data_format="channels_first"),
                              keras.layers.Dense(8, activation="relu", kernel_regularizer=keras.regularizers.l2(1e-2)),
                              keras.layers.Dense(2, activation="softmax")])
    (x, y), _ = data
    return _fit(model, x, y, 30, 0.02)


def _accuracy(model, x, y) -> float:
    return float((np.argmax(model.predict(x, verbose=0), axis=1) == y).mean())


def test_grad_cam_of_a_trained_conv_model_lies_in_band_b_not_on_the_loud_distractor(conv_model, data):
    _, (xt, yt) = data
    assert _accuracy(conv_model, xt[..., None], yt) >= 0.95
    assert E.choose_method(conv_model) == "grad-cam" and E.conv_map_layer(conv_model).name == "last_conv"
    tones = xt[yt == 1][:8]
    maps = [E.saliency(conv_model, x[..., None], flip=False, target=1) for x in tones]
    in_b = np.array([m[B].sum() for m in maps])
    energy = [E.normalise(x ** 2) for x in tones]
    print(f"grad-cam mass in B: mean {in_b.mean():.3f}, min {in_b.min():.3f}; energy on the distractor: "
          f"{np.mean([e[D].sum() for e in energy]):.3f}, in B {np.mean([e[B].sum() for e in energy]):.3f}")
    assert in_b.mean() >= 0.6 and in_b.min() >= 0.5
    assert all(e[D].sum() > 0.5 and e[D].sum() > e[B].sum() for e in energy)  # not trivial: energy says D


@pytest.mark.parametrize("method", ["gradient", "integrated-gradients"])
def test_gradient_methods_of_a_model_without_convolutions_lie_in_band_b(pooled_model, data, method):
    _, (xt, yt) = data
    assert _accuracy(pooled_model, xt, yt) >= 0.95
    assert E.choose_method(pooled_model) == "gradient" and E.conv_map_layer(pooled_model) is None
    maps = [E.saliency(pooled_model, x, method, target=1) for x in xt[yt == 1][:8]]
    in_b = np.array([m[B].sum() for m in maps])
    print(f"{method} mass in B: mean {in_b.mean():.3f}, min {in_b.min():.3f}")
    assert in_b.mean() >= 0.6
    with pytest.raises(E.ExplainError, match="--explain-method gradient"):
        E.saliency(pooled_model, xt[0], "grad-cam")


def test_the_contract_shape_dtype_sum_flip_and_size(conv_model, data):
    _, (xt, _) = data
    x = xt[0][..., None]
    m = E.saliency(conv_model, x, flip=False)
    assert m.shape == (M, T) and m.dtype == np.float32 and m.min() >= 0 and m.sum() == pytest.approx(1, abs=1e-5)
    np.testing.assert_allclose(E.saliency(conv_model, x), m)  # one channel: a log-mel, row 0 the lowest band
    flipped = E.saliency(conv_model, x, flip=True)  # a CNNRNN image: low frequencies in the bottom row
    np.testing.assert_allclose(flipped, m[::-1], atol=1e-6)
    np.testing.assert_allclose(E.saliency(conv_model, x, time_major=True), m.T, atol=1e-6)
    assert E.saliency(conv_model, x, flip=False, size=(64, 20)).shape == (64, 20)
    with pytest.raises(E.ExplainError, match="shape"):
        E.saliency(conv_model, xt[0][:16, :, None])
    with pytest.raises(E.ExplainError, match="unknown saliency method"):
        E.saliency(conv_model, x, "lime")


def test_a_time_crop_models_segment_maps_land_on_the_whole_clips_time_axis():
    """A model 16 frames wide on a clip 48 wide (segments at 0, 8, ..., 32): the evidence (a tone in frames 36-43)
    is found there on the whole axis, and overlapping segments are averaged."""
    import keras

    inputs = keras.Input((M, 16, 1))
    a = keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones", name="energy")(inputs)
    out = keras.layers.Dense(2, activation="softmax", kernel_initializer=keras.initializers.Constant([[1.0, -1.0]]))(
        keras.layers.GlobalAveragePooling2D()(a))
    model = keras.Model(inputs, out)
    x = np.zeros((M, 48, 1), np.float32)
    x[10:20, 36:44] = 1.0
    for method in E.METHODS:
        m = E.saliency(model, x, method, target=0, flip=False)
        assert m.shape == (M, 48)
        assert m[:, 32:].sum() > 0.9 and m[10:20, 34:46].sum() > 0.8, method
    assert E.segment_starts(48, 16) == [0, 8, 16, 24, 32] and E.segment_starts(50, 16, 20) == [0, 20, 34]
    placed = E.place_segments([np.ones((2, 4)), 3 * np.ones((2, 4))], [0, 2], 8)
    np.testing.assert_allclose(placed[0], [1, 1, 2, 2, 3, 3, 0, 0])


def _tiny_run(root, model, n_labels=2, train=None):
    """A CNNRNN run folder (no training): ``models/fold1.h5``, ``labels.json``, ``config.json``."""
    from cnnrnn.artifacts import save_model_h5

    (root / "models").mkdir(parents=True)
    save_model_h5(model, root / "models" / "fold1.h5")
    (root / "labels.json").write_text(json.dumps(["neutral", "angry", "happy"][:n_labels]))
    (root / "config.json").write_text(json.dumps({"spectrogram": {"image_size": [32, 64], "n_mels": 32,
                                                                  "duration": 2.0, "normalization": "utterance"},
                                                  "train": train or {}}))
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import keras

    from cnnrnn.models.cnnrnn import build_cnnrnn

    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("explain_runs")
    conv = _tiny_run(root / "conv", build_cnnrnn((32, 64, 3), 2, backbone="compact", filters=(4, 4), lstm_units=4))
    inputs = keras.Input((32, 64, 3))
    flat = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))))
    crops = _tiny_run(root / "crops", build_cnnrnn((32, 32, 3), 2, backbone="compact", filters=(4, 4), lstm_units=4),
                      train={"crop_width": 32, "crop_hop": 8})
    return conv / "models", _tiny_run(root / "flat", flat) / "models", crops / "models"


def test_cli_explain_writes_the_overlay_on_the_readable_axes(runs, real_wav, tmp_path, figures):
    out = tmp_path / "explained.png"
    assert main(["-q", "spectrogram", str(real_wav), "-o", str(out), "--model", str(runs[0]), "--explain"]) == 0
    assert out.is_file() and out.stat().st_size > 1000
    ax = figures[-1].axes[0]
    assert "evidence for" in ax.get_title() and "grad-cam" in ax.get_title() and "p = " in ax.get_title()
    assert ax.get_xlabel() == "time (s)" and ax.get_ylabel().startswith("frequency (Hz")
    assert main(["-q", "spectrogram", str(real_wav), "-o", str(out), "--model", str(runs[1]), "--explain"]) == 0
    assert "gradient" in figures[-1].axes[0].get_title()


def test_cnnrnn_explain_hook_maps_onto_the_files_log_mel(runs, real_wav):
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.cnnrnn.saliency import explain
    from cnnrnn.features import load_clip, log_mel

    spec = load_config(runs[0].parent / "config.json").spectrogram
    frames = log_mel(load_clip(real_wav, spec), spec).shape[1]
    for run in (runs[0], runs[2]):  # whole images; a time-crop model (32 of 64 columns, segments 8 apart)
        result = explain([run], real_wav)
        assert result["method"] == "grad-cam" and result["saliency"].shape == (32, frames)
        assert result["saliency"].dtype == np.float32 and result["saliency"].sum() == pytest.approx(1, abs=1e-4)
        assert (result["saliency"][:, :frames // 2].sum(axis=0) > 0).mean() > 0.9  # evidence all along the clip


@pytest.mark.parametrize("extra,message", [
    (["--explain"], "give --model"),
    (["--explain", "--raw", "--model", "RUN1"], "give --model"),
    (["--explain", "--model", "RUN1", "--explain-method", "grad-cam"], "--explain-method gradient"),
])
def test_cli_explain_errors_are_one_line(runs, real_wav, tmp_path, caplog, extra, message):
    extra = [str(runs[1]) if e == "RUN1" else e for e in extra]
    assert main(["-q", "spectrogram", str(real_wav), "-o", str(tmp_path / "e.png"), *extra]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0] and message in errors[0]


def test_plot_saliency_rejects_a_negative_map(tmp_path):
    with pytest.raises(ValueError, match="non-negative"):
        plots.plot_saliency(np.zeros((4, 5)), -np.ones((4, 5)), tmp_path / "x.png", sr=16000, hop_length=160)


def test_cli_explain_refuses_a_family_without_an_explain_hook_before_predicting(runs, real_wav, tmp_path, caplog,
                                                                                monkeypatch):
    import cnnrnn.predict as facade

    monkeypatch.setattr(facade, "resolve_family", lambda model: ("functionals", None))
    monkeypatch.setattr(facade, "predict", lambda *a, **k: pytest.fail("predicted before refusing"))
    assert main(["-q", "spectrogram", str(real_wav), "-o", str(tmp_path / "f.png"), "--model", str(runs[0]),
                 "--explain"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "not functionals runs" in errors[0] and "cnnrnn.explain.saliency" in errors[0]


def test_a_file_longer_than_the_clip_is_explained_in_windows_on_its_own_frames(runs, real_waveform, tmp_path):
    """3.5 s against 2 s clips: windows at 0, 1 and 2 s (as prediction cuts them), placed on the file's frames."""
    from conftest import write_wav

    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.cnnrnn.saliency import explain
    from cnnrnn.features import load_clip, log_mel

    y, sr = real_waveform
    wav = write_wav(tmp_path / "long.wav", np.concatenate([y, y[: int(1.5 * sr)]]), sr)
    spec = load_config(runs[0].parent / "config.json").spectrogram
    frames = log_mel(load_clip(wav, spec), spec).shape[1]
    m = explain([runs[0]], wav, target=1)["saliency"]
    assert m.shape == (32, frames) and m.sum() == pytest.approx(1, abs=1e-4)
    assert m[:, -frames // 4:].sum() > 0.05  # the last window's evidence reaches the end of the file
