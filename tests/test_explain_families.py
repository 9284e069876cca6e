"""``cnnrnn spectrogram --explain`` for DCNN-BLSTMwA and baseline runs (issue 23): the families' ``saliency`` parts.

Tiny runs trained here, once for the module, as tests/test_dcnn.py and tests/test_baselines.py make theirs (the
``tiny_*`` presets, one epoch, six clips of the bundled sample): a DCNN-BLSTMwA run of both steps with 1 s
utterances (so the 2 s test file is explained in three windows of two segments each), a ``cnn`` baseline (1 s
clips at 8 kHz: windows too) and an ``ann`` baseline (refused: the raw waveform has no log-mel).
"""
from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from cnnrnn.cli import main

#: Keras steps run eagerly here (conftest.eager_module): tracing costs more than these tiny models' steps.
EAGER_KERAS = True


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sample_dir):
    """``{"dcnn1", "dcnn2", "cnn", "ann"}``: the run folders (the training's own figures are drawn but not saved:
    they are not what this module tests, and saving them is a fifth of its time)."""
    from cnnrnn import plots
    from cnnrnn.baselines.train import train
    from cnnrnn.config import preset_path
    from cnnrnn.dcnn.filelists import FilelistEntry, write_filelist

    root = tmp_path_factory.mktemp("explain_families")
    wavs = sorted((sample_dir / "wav").rglob("*.wav"))[:6]
    entries = [FilelistEntry(str(w), w.stem.split("_")[2], "", i % 2) for i, w in enumerate(wavs)]
    write_filelist(root / "lists" / "train.txt", entries[:4])
    write_filelist(root / "lists" / "test.txt", entries[4:])
    (root / "lists" / "labels.json").write_text(json.dumps({"labels": ["a", "b"]}))
    cfg = json.loads(preset_path("dcnn", "tiny_finetune").read_text())
    cfg["data"]["max_sec"] = 1.0
    for step in ("finetune", "train"):
        cfg["train"]["name"] = f"t_{step}"
        if step == "train":
            cfg["train"].update(finetune_name="t_finetune", batch_size=4)
        (root / f"{step}.json").write_text(json.dumps(cfg))
    common = ["--filelist-train", str(root / "lists" / "train.txt"), "--filelist-test",
              str(root / "lists" / "test.txt"), "--out", str(root / "logs")]
    (root / "clips.csv").write_text("path,label\n" + "".join(f"{w},{'ab'[i % 2]}\n" for i, w in enumerate(wavs)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plots, "_save", lambda fig, path: Path(path))
        for step in ("finetune", "train"):
            with contextlib.redirect_stdout(io.StringIO()):
                assert main(["-q", "dcnn", step, "--config", str(root / f"{step}.json"), *common]) == 0
        for model in ("cnn", "ann"):
            train("manifest", root / "clips.csv", root / model, config=f"tiny_{model}", progress=False, verbose=0)
    return {"dcnn1": root / "logs" / "t_finetune", "dcnn2": root / "logs" / "t_train", "cnn": root / "cnn",
            "ann": root / "ann"}


def _check_map(result: dict, wav) -> None:
    """The contract: a non-negative float32 map summing to 1 on the frames of the returned config's log-mel."""
    from cnnrnn.audio import load_audio
    from cnnrnn.features import log_mel

    spec = result["spectrogram"]
    m = result["saliency"]
    assert m.shape == log_mel(load_audio(wav, spec.sr)[0], spec).shape
    assert m.dtype == np.float32 and m.min() >= 0 and m.sum() == pytest.approx(1, abs=1e-4)
    assert (m.sum(axis=0) > 0).mean() > 0.8  # evidence along the file (its windows placed on its frames)


def _explain_from_cli(run, family: str, wav, out, figures, monkeypatch) -> tuple[dict, str]:
    """``cnnrnn spectrogram WAV -o OUT --model RUN --explain``, the family hook's return value kept."""
    from cnnrnn import families

    part = families.module(family, "saliency")
    kept = {}

    def spy(*args, **kwargs):
        kept.update(part_explain(*args, **kwargs), target=kwargs["target"])
        return kept

    part_explain = part.explain
    monkeypatch.setattr(part, "explain", spy)
    assert main(["-q", "spectrogram", str(wav), "-o", str(out), "--model", str(run), "--explain"]) == 0
    assert out.is_file() and out.stat().st_size > 1000
    title = figures[-1].axes[0].get_title()
    found = re.search(r"evidence for (\S+) \(p = ([0-9.]+); ([a-z-]+)\)", title)
    assert found, title
    assert found.group(1) == kept["labels"][kept["target"]] and found.group(3) == kept["method"]
    # the title's class and probability are prediction's: the top class of `cnnrnn predict` on the same file
    from cnnrnn.predict import predict

    row = predict(str(run), wav, out.parent / f"{out.stem}_predict", progress=False)["predictions"].iloc[0]
    probabilities = {label: float(row[f"p_{label}"]) for label in kept["labels"]}
    assert found.group(1) == max(probabilities, key=probabilities.get)
    assert found.group(2) == f"{probabilities[found.group(1)]:.2f}"
    return kept, title


def test_dcnn_step2_explained_from_the_cli_through_the_blstm_attention(runs, real_wav, tmp_path, figures,
                                                                       monkeypatch):
    kept, _ = _explain_from_cli(runs["dcnn2"], "dcnn", real_wav, tmp_path / "dcnn2.png", figures, monkeypatch)
    assert kept["method"] == "grad-cam" and kept["step"] == "train" and kept["labels"] == ["a", "b"]
    _check_map(kept, real_wav)
    spec = kept["spectrogram"]
    assert (spec.sr, spec.n_fft, spec.hop_length, spec.n_mels, spec.fmin) == (16000, 400, 160, 64, 20.0)


def test_dcnn_step2_map_is_the_gradient_of_the_step2_score_through_each_segment(runs, real_wav):
    """Per segment, the composed model (segment → DCNN features in its slot → BiLSTM-attention) has the gradient
    of the whole two-step model with every segment at once."""
    import tensorflow as tf

    from cnnrnn import explain as E
    from cnnrnn.artifacts import load_model
    from cnnrnn.dcnn.config import read_sidecar
    from cnnrnn.dcnn.data import waveform_segments
    from cnnrnn.dcnn.saliency import _slot_model
    from cnnrnn.features import load_clip, to_backbone_input
    from cnnrnn.models.dcnn import feature_extractor

    _, f, meta = read_sidecar(runs["dcnn2"] / "blstm_attention.h5", "blstm_attention.json")
    blstm, dcnn = load_model(runs["dcnn2"] / "blstm_attention.h5"), load_model(runs["dcnn2"] / meta["dcnn_checkpoint"])
    x = np.asarray(to_backbone_input(waveform_segments(load_clip(real_wav, f), f), f.resize))
    extractor = feature_extractor(dcnn)
    xt = tf.constant(x)
    with E._logits(blstm), tf.GradientTape() as tape:
        tape.watch(xt)
        score = blstm(extractor(xt)[None])[0, 1]
    joint = tape.gradient(score, xt).numpy()
    scorer, place = _slot_model(extractor, blstm, np.asarray(extractor(x)))
    for i in range(len(x)):
        place(i)
        np.testing.assert_allclose(E._input_gradients(scorer, x[i:i + 1], 1)[0], joint[i], atol=1e-6)


def test_dcnn_step1_hook_explains_the_dcnns_own_score(runs, real_wav):
    from cnnrnn.dcnn.saliency import explain

    result = explain([runs["dcnn1"] / "dcnn.h5"], real_wav, method="gradient")
    assert result["method"] == "gradient" and result["step"] == "finetune"
    _check_map(result, real_wav)


def test_cnn_baseline_explained_from_the_cli_on_its_own_log_mel(runs, real_wav, tmp_path, figures, monkeypatch):
    kept, _ = _explain_from_cli(runs["cnn"], "baselines", real_wav, tmp_path / "cnn.png", figures, monkeypatch)
    assert kept["method"] == "grad-cam"
    _check_map(kept, real_wav)
    spec = kept["spectrogram"]
    assert (spec.sr, spec.n_fft, spec.hop_length, spec.n_mels) == (8000, 256, 128, 32)  # tiny_cnn's log-mel


def test_ann_baseline_is_refused_in_one_line_before_predicting(runs, real_wav, tmp_path, caplog, monkeypatch):
    import cnnrnn.predict as facade

    monkeypatch.setattr(facade, "predict", lambda *a, **k: pytest.fail("predicted before refusing"))
    out = tmp_path / "ann.png"
    assert main(["-q", "spectrogram", str(real_wav), "-o", str(out), "--model", str(runs["ann"]), "--explain"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0] and "raw waveform" in errors[0] and "cnn baseline" in errors[0]
    assert not out.exists()


def test_fold_frames_adds_the_reflected_repeats_to_the_frames_they_repeat():
    from cnnrnn.baselines.saliency import fold_frames

    # a clip of 522 samples reflect-padded: frame centres 0, 128, ... 1152 repeat samples 0, 128, 256, 384, 512,
    # 403, 275, 147, 19, 108
    folded = fold_frames(np.arange(10, dtype=np.float32)[None], 522, 128, 0, 6)
    np.testing.assert_allclose(folded[0], [0 + 8, 1 + 7 + 9, 2 + 6, 3 + 5, 4, 0])
    shifted = fold_frames(np.ones((1, 4), np.float32), 10_000, 128, 64, 8)  # half a frame in: one-to-one
    np.testing.assert_allclose(shifted[0], [0, 1, 1, 1, 1, 0, 0, 0])


def test_dcnn_run_on_whisper_frames_is_refused_in_one_line_before_predicting(runs, real_wav, tmp_path, caplog,
                                                                              monkeypatch):
    """Its segments are encoder outputs, not a log-mel: refused from the sidecar alone (the checkpoint unread)."""
    import cnnrnn.predict as facade

    meta = json.loads((runs["dcnn1"] / "dcnn.json").read_text())
    meta["features"].update(kind="whisper", max_sec=None, preemphasis=0.0, n_mels=80, fmin=0.0, fmax=None,
                            segment_frames=32, segment_hop=16)
    run = tmp_path / "whisper_run"
    run.mkdir()
    (run / "dcnn.json").write_text(json.dumps({"labels": meta["labels"], "features": meta["features"]}))
    (run / "dcnn.h5").write_bytes(b"never read")
    monkeypatch.setattr(facade, "predict", lambda *a, **k: pytest.fail("predicted before refusing"))
    out = tmp_path / "whisper.png"
    assert main(["-q", "spectrogram", str(real_wav), "-o", str(out), "--model", str(run), "--explain"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "Whisper encoder frames" in errors[0] and not out.exists()
