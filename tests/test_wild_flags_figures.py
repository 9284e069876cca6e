"""Issue 13, items 5 and 6: the original scripts' flags (etri_multimodal's `--dataset/--dataset_dir/--num_fold`,
the -ETRI-Emotion-Recognition multimodal preset), `cnnrnn dcnn run-folds` over the filelists of `cnnrnn filelists`,
and spectrogram figures for people (`cnnrnn spectrogram`, :func:`cnnrnn.plots.plot_spectrogram`,
:func:`cnnrnn.plots.plot_timeline`), on real speech of the bundled KEMDy20-layout sample."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cnnrnn import plots
from cnnrnn.cli import main
from cnnrnn.features import LogMelConfig, log_mel, read_png

LABELS = ["angry", "happy", "sad"]


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_yticklabels()]


# ------------------------------------------------------------------------------------ plots (core, arrays)
def test_plot_spectrogram_has_axes_in_seconds_and_hz_a_db_bar_and_the_probabilities(tmp_path, real_wav, figures):
    from cnnrnn.audio import load_audio

    cfg = LogMelConfig(sr=16000, n_mels=64, n_fft=1024, hop_length=256)
    y, _ = load_audio(real_wav, cfg.sr)
    db = log_mel(y, cfg)                                                 # 2.0 s: 126 frames of 16 ms
    out = plots.plot_spectrogram(db, tmp_path / "s.png", sr=cfg.sr, hop_length=cfg.hop_length,
                                 title=f"{real_wav.name}  (label: happy)", labels=LABELS,
                                 probabilities=[0.2, 0.7, 0.1])
    image = read_png(out)
    assert image.shape[1] > 2 * image.shape[0] > 400 and image.std() > 20   # a wide figure, not a blank page
    spec, bar_ax, cbar = figures[-1].axes
    assert spec.get_xlabel() == "time (s)" and "Hz" in spec.get_ylabel() and "mel" in spec.get_ylabel()
    assert spec.get_xlim()[1] == pytest.approx(db.shape[1] * cfg.hop_length / cfg.sr, abs=0.02)   # seconds
    assert spec.get_ylim()[1] == pytest.approx(cfg.sr / 2, rel=0.05) and spec.get_yscale() == "symlog"  # mel
    assert all(t.get_text().endswith("dB") for t in cbar.get_yticklabels() if t.get_text())
    assert real_wav.name in spec.get_title() and "happy" in spec.get_title()
    assert bar_ax.get_title() == "predicted: happy (0.70)" and _texts(bar_ax) == LABELS
    np.testing.assert_allclose([p.get_width() for p in bar_ax.patches], [0.2, 0.7, 0.1])

    plots.plot_spectrogram(db, tmp_path / "plain.png", sr=cfg.sr, hop_length=cfg.hop_length)
    assert len(figures[-1].axes) == 2                                    # spectrogram + colour bar only
    with pytest.raises(ValueError, match="one label per probability"):
        plots.plot_spectrogram(db, tmp_path / "x.png", sr=16000, hop_length=256, probabilities=[0.5, 0.5])
    with pytest.raises(ValueError, match=r"\(n_mels, frames\)"):
        plots.plot_spectrogram(db[0], tmp_path / "x.png", sr=16000, hop_length=256)


def _timeline(seconds: float, window: float = 2.0, hop: float = 1.0, silent=(3,)) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i, start in enumerate(np.arange(0.0, seconds - window + 1e-9, hop)):
        p = rng.dirichlet(np.ones(len(LABELS)))
        row = {"file": "long.wav", "start_s": start, "end_s": start + window, "label": LABELS[int(p.argmax())],
               "confidence": p.max(), **{f"p_{lab}": v for lab, v in zip(LABELS, p)}}
        if i in silent:  # a silent window: marked, not classified
            row.update(label="silence", confidence=np.nan, **{f"p_{lab}": np.nan for lab in LABELS})
        rows.append(row)
    return pd.DataFrame(rows)


def test_window_edges_split_overlapping_windows_at_the_midpoints():
    np.testing.assert_allclose(plots.window_edges([0, 1, 2], [2, 3, 4]), [0, 1.5, 2.5, 4])
    np.testing.assert_allclose(plots.window_edges([0], [2]), [0, 2])
    np.testing.assert_allclose(plots.window_edges([0, 2], [2, 4]), [0, 2, 4])   # no overlap: the windows


def test_timeline_draws_spectrogram_labels_and_stacked_probabilities_on_one_time_axis(tmp_path, real_wav, figures):
    from cnnrnn.audio import load_audio

    cfg = LogMelConfig(sr=16000, n_mels=64, n_fft=1024, hop_length=256)
    y, _ = load_audio(real_wav, cfg.sr)
    y = np.tile(y, 4)                                                    # 8 s of real speech
    table = _timeline(8.0)                                               # 2 s windows every 1 s: 7 rows
    out = plots.plot_timeline(table, tmp_path / "t.png", db=log_mel(y, cfg), sr=cfg.sr, hop_length=cfg.hop_length)
    assert read_png(out).shape[1] > 800
    fig = figures[-1]
    spec, strip, areas = fig.axes[0], fig.axes[2], fig.axes[4]           # left column; right: colour bar, legend
    assert [ax.get_xlim() for ax in (spec, strip)] == [areas.get_xlim()] * 2 == [(0.0, 8.0)] * 2
    assert areas.get_xlabel() == "time (s)" and "Hz" in spec.get_ylabel() and areas.get_ylim() == (0.0, 1.0)
    assert [t.get_text() for t in fig.axes[5].get_legend().get_texts()] == LABELS
    assert "long.wav" in spec.get_title()
    # the strip: one span per window, coloured by its label; the silent window grey
    spans = strip.collections[0]
    np.testing.assert_allclose([p.vertices[:, 0].min() for p in spans.get_paths()],
                               plots.window_edges(table["start_s"], table["end_s"])[:-1])
    colours = spans.get_facecolors()
    grey = (0.827, 0.827, 0.827)
    assert np.allclose(colours[3][:3], grey, atol=0.01)
    assert not np.allclose(colours[0][:3], grey, atol=0.01)
    # stacked areas: the top of the last label is 1 wherever a window was classified, 0 where it was not
    top = areas.collections[len(LABELS) - 1].get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(1.0)

    marked = table.copy()                                                # silence marked by its label alone
    marked.loc[5, ["label", *(f"p_{lab}" for lab in LABELS)]] = ["silence", 0.0, 0.0, 0.0]
    plots.plot_timeline(marked, tmp_path / "no_spec.png")                # without a spectrogram: two panels
    assert len([ax for ax in figures[-1].axes if ax.get_visible() and ax.axison]) == 2
    colours = figures[-1].axes[0].collections[0].get_facecolors()
    assert [np.allclose(c[:3], grey, atol=0.01) for c in colours] == [i in (3, 5) for i in range(len(table))]
    two_files = pd.concat([table, table.assign(file="other.wav")])
    with pytest.raises(ValueError, match="holds 2 files"):
        plots.plot_timeline(two_files, tmp_path / "x.png")
    plots.plot_timeline(two_files, tmp_path / "other.png", file="other.wav")
    with pytest.raises(ValueError, match="p_<label>"):
        plots.plot_timeline(table, tmp_path / "x.png", labels=["angry", "calm"])
    with pytest.raises(ValueError, match="needs sr and hop_length"):
        plots.plot_timeline(table, tmp_path / "x.png", db=np.zeros((8, 10)))


# ------------------------------------------------------------------------------------- cnnrnn spectrogram
def test_spectrogram_cli_default_is_the_figure_raw_is_the_model_input(tmp_path, real_wav, sample_dir, figures, caplog):
    cfg = tmp_path / "c.json"
    cfg.write_text('{"spectrogram": {"image_size": [40, 90], "n_mels": 64, "n_fft": 1024, "hop_length": 256}}')
    raw, fig_png = tmp_path / "raw.png", tmp_path / "fig.png"
    assert main(["-q", "spectrogram", str(real_wav), "-o", str(raw), "--raw", "--config", str(cfg)]) == 0
    assert read_png(raw).shape == (40, 90, 3)
    assert main(["-q", "spectrogram", str(real_wav), "-o", str(fig_png), "--config", str(cfg),
                 "--corpus", "kemdy20", "--root", str(sample_dir)]) == 0
    assert read_png(fig_png).shape[0] > 300
    spec = figures[-1].axes[0]
    from cnnrnn.corpora import load_corpus

    truth = {u.audio_path: u.emotion for u in load_corpus("kemdy20", sample_dir)[0]}[str(real_wav.resolve())]
    assert spec.get_title() == f"{real_wav.name}  (label: {truth})" and spec.get_xlabel() == "time (s)"
    assert main(["-q", "spectrogram", str(real_wav), "-o", str(fig_png), "--label", "calm"]) == 0
    assert figures[-1].axes[0].get_title().endswith("(label: calm)")

    other = next(p for p in sorted(real_wav.parent.glob("*.wav")) if p != real_wav)
    (tmp_path / "m.csv").write_text(f"path,label\n{other},sad\n")      # a manifest without this file
    for bad, message in ((["--raw", "--label", "x"], "--raw writes the bare"),
                         (["--corpus", "kemdy20"], "--corpus and --root go together"),
                         (["--corpus", "manifest", "--root", str(tmp_path / "m.csv")], "is not an utterance")):
        caplog.clear()
        assert main(["-q", "spectrogram", str(real_wav), "-o", str(tmp_path / "e.png"), *bad]) == 2
        assert message in caplog.text


# ------------------------------------------------------------------------------------- cnnrnn hf train flags
@pytest.fixture
def captured_training(monkeypatch):
    """`hf train` up to the training call: the records and config it would train with. The training module
    (TensorFlow, transformers) is replaced by a stand-in: no model is built, nothing heavy is imported."""
    import sys
    import types

    seen = {}

    def fake_train_fold(records, cfg, out, progress=True, source=None):
        seen.update(records=records, cfg=cfg, source=source)
        return {"task": cfg.model.task, "n": 0}

    monkeypatch.setitem(sys.modules, "cnnrnn.hf.train", types.SimpleNamespace(train_fold=fake_train_fold,
                                                                              claim_run=lambda out: Path(out)))
    return seen


def test_hf_train_takes_etri_multimodal_flags(tmp_path, sample_dir, captured_training, monkeypatch):
    argv = ["-q", "hf", "train", "--dataset", "20", "--dataset_dir", str(sample_dir), "--num_fold", "2",
            "--batch_size", "32", "--lr", "1e-5", "--out", str(tmp_path)]
    assert main(argv) == 0
    cfg = captured_training["cfg"]
    assert (cfg.data.corpus, cfg.train.fold, cfg.train.batch_size, cfg.train.learning_rate) == ("kemdy20", 1, 32, 1e-5)
    assert len(captured_training["records"]) == 105 and captured_training["source"]["root"] == str(sample_dir)

    import cnnrnn.hf.data as hf_data

    real_read, corpora = hf_data.read_records, []
    monkeypatch.setattr(hf_data, "read_records", lambda inp, root, data, *a: (corpora.append(data.corpus),
                                                                             real_read(inp, root, data))[1])
    assert main(["-q", "hf", "train", "--dataset", "19", "--dataset-dir", str(sample_dir), "--out", str(tmp_path),
                 "--num-fold", "5", "--input", str(tmp_path / "absent.csv")]) == 2   # read, then not found
    assert corpora == ["kemdy19"]                                        # --dataset 19 is the kemdy19 reader


@pytest.mark.parametrize("extra,message", [
    (["--num_fold", "0"], "counts folds from 1"),
    (["--num_fold", "6"], "beyond the 5 folds"),
    (["--num_fold", "3", "--folds", "2"], "beyond the 2 folds"),
    (["--num_fold", "2", "--fold", "0"], "disagree"),
    (["--dataset", "20", "--corpus", "kemdy19"], "disagree"),
])
def test_hf_flag_mistakes_are_one_line_errors(tmp_path, sample_dir, captured_training, caplog, extra, message):
    assert main(["-q", "hf", "train", "--dataset_dir", str(sample_dir), "--out", str(tmp_path), *extra]) == 2
    assert message in caplog.text and "cfg" not in captured_training


def test_hf_presets_of_the_two_etri_codebases(tmp_path, sample_dir, captured_training):
    from cnnrnn.hf.config import load_config

    m = load_config("etri_recognition_multimodal")
    assert (m.model.modality, m.model.max_len, m.model.max_seconds, m.train.batch_size, m.train.learning_rate,
            m.train.epochs, m.model.text_model) == ("multimodal", 196, 4.0, 64, 1e-4, 30, "klue/roberta-base")
    e = load_config("etri_multimodal")
    assert (e.train.batch_size, e.train.learning_rate, e.model.max_len, e.model.max_seconds, e.train.fold_scheme,
            e.model.text_model) == (32, 1e-5, 256, 5.0, "contiguous", "klue/bert-base")
    assert main(["-q", "hf", "train", "--config", "etri_recognition_multimodal", "--dataset", "20", "--dataset_dir",
                 str(sample_dir), "--num_fold", "1", "--out", str(tmp_path)]) == 0
    cfg = captured_training["cfg"]
    assert (cfg.model.max_len, cfg.model.max_seconds, cfg.train.fold) == (196, 4.0, 0)


# ------------------------------------------------------------------------------------- cnnrnn dcnn run-folds
@pytest.fixture(scope="module")
def filelists(tmp_path_factory, sample_dir):
    """`cnnrnn filelists` of 18 real utterances (3 speakers × 3 emotions × 2) of the bundled sample: 2 k-fold
    folds (speaker-disjoint) and 3 LOSO folds."""
    from cnnrnn.corpora import load_corpus

    root = tmp_path_factory.mktemp("runfolds")
    count: dict = {}
    rows = []
    for u in load_corpus("kemdy20", sample_dir)[0]:
        key = (u.speaker, u.emotion)
        if u.emotion in LABELS and u.speaker in ("User002F", "User006F", "User034F") and count.get(key, 0) < 2:
            count[key] = count.get(key, 0) + 1
            rows.append([u.audio_path, u.emotion, u.speaker])
    with open(root / "m.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["path", "label", "speaker"], *rows])
    assert main(["-q", "filelists", "--corpus", "manifest", "--root", str(root / "m.csv"), "--out",
                 str(root / "lists"), "--folds", "2"]) == 0
    return root / "lists"


@pytest.fixture(scope="module")
def step_configs(tmp_path_factory):
    """The tiny_compact preset pair, each step keeping its last epoch without batch-norm recalibration (the
    cheapest training): ``--config`` / ``--config-train`` arguments."""
    folder = tmp_path_factory.mktemp("configs")
    cheap = {"train": {"selection": "last"}, "model": {"precise_bn": False}}
    for step in ("finetune", "train"):
        (folder / f"{step}.json").write_text(json.dumps({"extends": f"tiny_compact_{step}", **cheap}))
    return ["--config", str(folder / "finetune.json"), "--config-train", str(folder / "train.json"), "--epochs", "1"]


@pytest.fixture(scope="module")
def folds_run(filelists, step_configs, tmp_path_factory):
    """One fold (fold2: 12 utterances of two speakers train, the third speaker's 6 test), through the CLI."""
    out = tmp_path_factory.mktemp("folds") / "out"
    assert main(["-q", "dcnn", "run-folds", "--filelists", str(filelists), "--scheme", "kfold", *step_configs,
                 "--fold", "fold2", "--out", str(out)]) == 0
    return out


def test_run_folds_trains_scores_and_summarises(folds_run, filelists):
    summary = json.loads((folds_run / "summary.json").read_text())
    (row,) = summary["folds"]
    metrics = json.loads((folds_run / "fold2" / "train" / "metrics_train.json").read_text())["utterances"]
    step1 = json.loads((folds_run / "fold2" / "finetune" / "metrics_finetune.json").read_text())["utterances"]
    n_test = len((filelists / "kfold" / "fold2_test.txt").read_text().splitlines())
    assert (row["fold"], row["status"], row["n"]) == ("fold2", "trained", n_test)
    assert [row[k] for k in ("ua", "wa", "f1_macro")] == [metrics[k] for k in ("ua", "wa", "f1_macro")]
    assert row["finetune_ua"] == step1["ua"]
    assert summary["summary"]["ua"] == {"mean": row["ua"], "std": 0.0}
    assert summary["pooled"] == {"n": n_test, **{k: pytest.approx(metrics[k]) for k in ("ua", "wa", "f1_macro")}}
    assert summary["labels"] == LABELS and summary["scheme"] == "kfold"
    manifest = json.loads((folds_run / "fold2" / "train" / "run.json").read_text())
    assert manifest["split"]["fold"] == 1 and manifest["split"]["folds"] == 2      # recorded 0-based
    table = pd.read_csv(folds_run / "summary.csv")
    assert table["fold"].tolist() == ["fold2", "mean", "std"]
    assert table.loc[0, "ua"] == pytest.approx(row["ua"]) and table.loc[2, "ua"] == 0.0
    md = (folds_run / "summary.md").read_text()
    assert "| fold2 |" in md and "± 0.0000" in md and "pooled over the folds" in md


def test_run_folds_rerun_resumes_without_retraining(folds_run, filelists, step_configs, capsys):
    h5 = folds_run / "fold2" / "train" / "blstm_attention.h5"
    before = os.stat(h5).st_mtime_ns
    assert main(["-q", "dcnn", "run-folds", "--filelists", str(filelists), *step_configs, "--fold", "fold2",
                 "--out", str(folds_run)]) == 0
    assert "| fold2 |" in capsys.readouterr().out
    assert os.stat(h5).st_mtime_ns == before
    assert json.loads((folds_run / "summary.json").read_text())["folds"][0]["status"] == "resumed"

    from cnnrnn.config import override
    from cnnrnn.dcnn.config import load_dcnn_config
    from cnnrnn.dcnn.folds import fold_configs, fold_filelists, finished_step

    lists = {f.name: f for f in fold_filelists(filelists, "kfold")}
    assert list(lists) == ["fold1", "fold2"]
    one = {"train.epochs": 1}
    cfg1, cfg2 = fold_configs(override(load_dcnn_config(step_configs[1]), one),
                              override(load_dcnn_config(step_configs[3]), one), lists["fold2"],
                              filelists / "labels.json", folds_run)
    assert finished_step(cfg1, "finetune") is not None and finished_step(cfg2, "train") is not None
    assert finished_step(override(cfg2, {"train.epochs": 2}), "train") is None     # another config: retrained


def test_run_folds_spectrogram_of_its_model(folds_run, real_wav, tmp_path, figures):
    """`cnnrnn spectrogram --model RUN`: the prediction of the facade, drawn beside the spectrogram."""
    run = folds_run / "fold2" / "train"
    assert main(["-q", "spectrogram", str(real_wav), "-o", str(tmp_path / "p.png"), "--model", str(run)]) == 0
    bar_ax = figures[-1].axes[1]
    assert _texts(bar_ax) == LABELS                                      # the run's labels, in its order
    widths = np.array([p.get_width() for p in bar_ax.patches])
    assert widths.sum() == pytest.approx(1.0, abs=1e-5) and widths.min() > 0
    assert bar_ax.get_title() == f"predicted: {LABELS[int(widths.argmax())]} ({widths.max():.2f})"
    assert main(["-q", "spectrogram", str(real_wav), "-o", str(tmp_path / "r.png"), "--raw", "--model", str(run)]) == 2


@pytest.mark.parametrize("extra,message", [
    (["--fold", "fold9"], "unknown fold(s) ['fold9']"),
    (["--scheme", "loso", "--filelists", "MISSING"], "does not exist"),
    (["--config", "does_not_exist"], "not a preset pair"),
])
def test_run_folds_bad_input_is_a_one_line_error(filelists, tmp_path, caplog, extra, message):
    argv = ["-q", "dcnn", "run-folds", "--filelists", str(filelists), "--config", "tiny_compact", "--out",
            str(tmp_path), *extra]
    argv = [str(tmp_path / "nowhere") if a == "MISSING" else a for a in argv]
    assert main(argv) == 2
    assert message in caplog.text


def test_fold_filelists_pairs_and_orders_the_lists(tmp_path):
    from cnnrnn.dcnn.folds import fold_filelists

    kfold = tmp_path / "kfold"
    kfold.mkdir()
    for k in (1, 2, 10):
        for part in ("train", "test"):
            (kfold / f"fold{k}_{part}.txt").write_text("")
    assert [f.name for f in fold_filelists(tmp_path)] == ["fold1", "fold2", "fold10"]
    (kfold / "fold3_test.txt").write_text("")
    with pytest.raises(ValueError, match=r"\['fold3'\] lack their train or test list"):
        fold_filelists(tmp_path)
    with pytest.raises(ValueError, match="scheme must be one of"):
        fold_filelists(tmp_path, "shuffle")
