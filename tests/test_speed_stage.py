"""Issue 14 (fast and flat), on real speech from the bundled sample: the numpy log-mel equals librosa's within
1e-3 dB; ``spectrograms`` writes the packed arrays in the same pass as the PNGs (resumable, atomic, checked against
``packed.json``); ``pack`` writes the final pickles from the memory maps (or skips them); training reads batches from
the memory maps and gives what it gives on in-memory arrays; a full disk and arrays that do not match their manifest
fail clearly, leaving no partial file."""
import collections
import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnrnn import cli
from cnnrnn.artifacts import load_image_table, load_json, load_pickle
from cnnrnn.audio import load_audio, pad_or_trim
from cnnrnn.cnnrnn import data as D
from cnnrnn.cnnrnn.config import load_config
from cnnrnn.config import override
from cnnrnn.cnnrnn.speed import COPIES_KEY
from cnnrnn.features import LogMelConfig, SpectrogramConfig, log_mel, log_mels, mel_filters, read_png

from conftest import write_wav

CONFIG = {"extends": "tiny_speed"}  # small images, two speed copies per train utterance, compact model, quickly


@pytest.fixture(scope="module")
def clips(sample_dir):
    """18 real clips of the sample (1.4-5.3 s: shorter and longer than the 2 s images), 6 speakers."""
    return sorted((sample_dir / "wav").rglob("*.wav"))[::5][:18]


def cli_ok(*argv) -> None:
    assert cli.main(["-q", *map(str, argv)]) == 0, argv


def cli_error(caplog, *argv) -> str:
    caplog.clear()
    assert cli.main(["-q", *map(str, argv)]) == 2, argv
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    return errors[0]


def split_run(folder: Path, clips, extra=()) -> Path:
    """A run folder after `cnnrnn split` of a manifest of ``clips`` (+ ``extra`` files)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "recipe.json").write_text(json.dumps(CONFIG), encoding="utf-8")
    with (folder / "corpus.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "speaker"])
        for i, f in enumerate([*clips, *extra]):
            w.writerow([f, "ang" if i % 2 else "neu", f"s{i % 6}"])
    out = folder / "run"
    cli_ok("split", "--corpus", "manifest", "--root", folder / "corpus.csv", "--out", out, "--config",
           folder / "recipe.json")
    return out


@pytest.fixture(scope="module")
def packed_run(tmp_path_factory, clips):
    """split → spectrograms (one silent file among the real ones) → pack."""
    folder = tmp_path_factory.mktemp("packed")
    silent = write_wav(folder / "silent.wav", np.zeros(16000, np.float32), 16000)
    out = split_run(folder, clips, [silent])
    cli_ok("spectrograms", "--out", out, "--workers", "1")
    cli_ok("pack", "--out", out)
    return out


def temporary_files(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*") if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- the log-mel
def test_log_mel_equals_librosa_within_a_thousandth_of_a_db(clips):
    import librosa

    for cfg in (SpectrogramConfig(), LogMelConfig(n_fft=512, hop_length=256, n_mels=32, duration=2.0),
                LogMelConfig(n_fft=1024, hop_length=256, n_mels=64, fmin=20.0, fmax=7600.0, duration=3.0)):
        ys = [pad_or_trim(load_audio(f, cfg.sr)[0], cfg.n_samples) for f in clips[:5]]
        ys[0] = pad_or_trim(np.concatenate([np.zeros(3001, np.float32), ys[0]]), cfg.n_samples)  # silent start
        batch = log_mels(np.stack(ys), cfg)
        for y, ours in zip(ys, batch):
            ref = librosa.power_to_db(librosa.feature.melspectrogram(
                y=y, sr=cfg.sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels, fmin=cfg.fmin,
                fmax=cfg.fmax), ref=np.max, top_db=cfg.top_db)
            assert ours.shape == ref.shape and ours.dtype == np.float32
            assert np.abs(ours - ref).max() < 1e-3
            assert ours.max() == 0.0 and ours.min() >= -cfg.top_db
            np.testing.assert_array_equal(log_mel(y, cfg), ours)  # one clip alone: the same numbers
    y, _ = load_audio(clips[0], 16000)  # a whole file, not padded
    ref = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=16000), ref=np.max, top_db=80.0)
    assert np.abs(log_mel(y, LogMelConfig()) - ref).max() < 1e-3
    for htk in (False, True):
        for sr, n_fft, n_mels, fmin, fmax in ((16000, 2048, 128, 0.0, None), (22050, 400, 64, 125.0, 7500.0)):
            np.testing.assert_allclose(mel_filters(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk),
                                       librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax,
                                                           htk=htk), rtol=1e-5, atol=1e-9)


# --------------------------------------------------------------------------- spectrograms + pack
def test_spectrograms_write_the_packed_arrays_in_the_same_pass(packed_run):
    packed = load_json(packed_run / D.PACKED_FILE)
    for part in ("train", "test"):
        table = load_pickle(packed_run / f"data_{part}.pickle")
        images = D.open_packed(packed_run / D.IMAGES_FILES[part], packed[part]["images"])
        assert images.shape == (len(table["id"]), 32, 48, 3) and images.dtype == np.uint8
        assert packed[part]["n"] == len(table["id"]) and "silent" not in table["id"]
        for row, png in zip(images, table["path"]):
            np.testing.assert_array_equal(row, read_png(png))  # the rows are the PNGs' pixels
    table = load_pickle(packed_run / "data_train.pickle")
    copies = D.open_packed(packed_run / D.COPIES_FILE, packed["train"]["copies"])
    assert copies.shape == (2, len(table["id"]), 32, 48, 3)
    for c in range(2):
        for row, png in zip(copies[c], table[COPIES_KEY][c]):
            np.testing.assert_array_equal(row, read_png(png))
    assert load_json(packed_run / "spectrogram_report.json")["spectrograms"]["failed"] == {"silent": ["silent"]}
    assert temporary_files(packed_run) == []
    # pack wrote the original's final pickles from the memory maps
    for part in ("train", "test"):
        final = load_image_table(packed_run / f"{part}_final.pickle")
        np.testing.assert_array_equal(final["path"], np.load(packed_run / D.IMAGES_FILES[part]))
        assert final["path"].flags.writeable and final["id"] == load_pickle(packed_run / f"data_{part}.pickle")["id"]
    final = load_image_table(packed_run / "train_final.pickle")
    np.testing.assert_array_equal(final[COPIES_KEY], np.load(packed_run / D.COPIES_FILE))


def test_reruns_resume_and_pack_can_skip_the_pickles(packed_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(packed_run, run)
    arrays = [run / D.IMAGES_FILES["train"], run / D.IMAGES_FILES["test"], run / D.COPIES_FILE]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in arrays}
    cli_ok("spectrograms", "--out", run, "--workers", "1")  # nothing new: the arrays are not written again
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in arrays} == before
    # an interrupted run: a PNG missing, staged rows left behind; the rerun renders it and packs the same arrays
    victim = Path(load_pickle(run / "data_train.pickle")["path"][2])
    victim.unlink()
    (run / ".train_images.npy.0123abcd.tmp").write_bytes(b"half")
    cli_ok("spectrograms", "--out", run, "--workers", "1")
    assert victim.is_file() and temporary_files(run) == []
    assert all(p.read_bytes() == before[p][1] for p in arrays)
    assert load_json(run / "spectrogram_report.json")["spectrograms"]["n_written"] == 1

    summary = json.loads(_pack_output(run))
    assert summary["train"]["pickle"] == "written"  # the data pickle changed: written again
    assert json.loads(_pack_output(run))["test"]["pickle"] == "up to date"
    summary = json.loads(_pack_output(run, "--force", "--no-pickle"))  # arrays again from the PNGs, no pickles
    assert summary["train"]["pickle"] == "skipped" and summary["train"]["file"] is None
    assert not (run / "train_final.pickle").exists() and not (run / "test_final.pickle").exists()
    assert all(p.read_bytes() == before[p][1] for p in arrays)
    assert load_json(run / D.PACKED_FILE)["pickle"] is False
    assert json.loads(_pack_output(run))["train"]["pickle"] == "skipped"  # the recorded choice holds
    table = D.load_packed(run, "train", [32, 48])
    assert isinstance(table["path"], np.memmap) and isinstance(table[COPIES_KEY], np.memmap)
    assert json.loads(_pack_output(run, "--pickle"))["test"]["pickle"] == "written"


def _pack_output(run: Path, *flags) -> str:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        cli_ok("pack", "--out", run, *flags)
    return buffer.getvalue()


# --------------------------------------------------------------------------- bad input
def test_arrays_that_do_not_match_their_manifest_are_a_clear_error(packed_run, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(packed_run, run)
    npy = run / D.IMAGES_FILES["train"]
    good = npy.read_bytes()
    manifest = load_json(run / D.PACKED_FILE)

    def broken(write, match):
        write()
        with pytest.raises(D.PackedArrayError, match=match):
            D.load_packed(run, "train", [32, 48])
        message = cli_error(caplog, "train", "--out", run)  # refused before TensorFlow is even imported
        assert str(npy) in message or "data_train.pickle" in message
        npy.write_bytes(good)
        (run / D.PACKED_FILE).write_text(json.dumps(manifest), encoding="utf-8")

    images = {**manifest["train"]["images"], "shape": [7, 32, 48, 3]}
    other = {**manifest, "train": {**manifest["train"], "images": images}}
    broken(lambda: (run / D.PACKED_FILE).write_text(json.dumps(other), encoding="utf-8"),
           r"holds a \(\d+, 32, 48, 3\) uint8 array but packed.json records \(7, 32, 48, 3\) uint8")
    broken(lambda: np.save(npy, np.zeros((3, 32, 48, 3), np.float32)), r"\(3, 32, 48, 3\) float32 array but")
    broken(lambda: npy.write_bytes(good[:len(good) // 2]), "is truncated")
    broken(lambda: npy.write_bytes(b"not an array"), "not an .npy array")
    table = load_pickle(run / "data_train.pickle")
    table["id"] = table["id"][::-1]
    from cnnrnn.artifacts import save_pickle

    save_pickle(table, run / "x.pickle")
    shutil.move(run / "data_train.pickle", run / "data_train.keep")
    broken(lambda: shutil.copy(run / "x.pickle", run / "data_train.pickle"), "lists other utterances")
    assert not (run / "models").exists() and temporary_files(run) == []


def test_not_enough_disk_for_the_arrays_fails_clearly_leaving_no_file(clips, tmp_path, caplog, monkeypatch):
    out = split_run(tmp_path, clips[:12])
    before = set(out.rglob("*"))
    real = shutil.disk_usage
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(real(p).total, real(p).total - 10_000, 10_000))
    message = cli_error(caplog, "spectrograms", "--out", out, "--workers", "1")
    assert message.startswith(f"not enough free disk space in {out} for the packed image arrays")
    assert "free some space or use another --out (nothing was written)" in message
    # not a PNG, not an array, no temporary file (the stage's lock file in .cnnrnn/ aside)
    assert {p for p in out.rglob("*") if ".cnnrnn" not in p.parts} == {p for p in before if ".cnnrnn" not in p.parts}
    # pack, whose arrays are gone, refuses likewise before writing any
    monkeypatch.setattr(shutil, "disk_usage", real)
    cli_ok("spectrograms", "--out", out, "--workers", "1")
    for name in (D.IMAGES_FILES["train"], D.IMAGES_FILES["test"], D.COPIES_FILE, D.PACKED_FILE):
        (out / name).unlink()
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(real(p).total, real(p).total - 10_000, 10_000))
    assert "not enough free disk space" in cli_error(caplog, "pack", "--out", out)
    assert not list(out.glob("*.npy")) and not list(out.glob("*_final.pickle")) and temporary_files(out) == []


# --------------------------------------------------------------------------- training from the memory maps
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_reading_a_memory_map_batch_by_batch_keeps_it_out_of_memory(tmp_path):
    from cnnrnn.cnnrnn.train import RowStack, take_rows

    def rss_file_kib() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssFile:"):
                return int(line.split()[1])
        pytest.skip("no RssFile in /proc/self/status")

    arr = np.random.default_rng(0).integers(0, 255, (400, 128, 128, 3), dtype=np.uint8)  # 19 MiB
    np.save(tmp_path / "a.npy", arr)
    mm = D.open_packed(tmp_path / "a.npy")
    stack = RowStack([mm, mm[100:]])
    start = rss_file_kib()
    for i in range(0, 700, 16):
        rows = np.arange(i, min(i + 16, 700))
        np.testing.assert_array_equal(take_rows(stack, rows), np.concatenate([arr, arr[100:]])[rows])
    assert rss_file_kib() - start < 4 * 1024  # a batch or two resident, never the 19 MiB


def test_training_from_the_memory_maps_equals_training_from_arrays(packed_run, tmp_path):
    """crop_width + mixup + PreciseBN + speed copies, on the memory maps and on in-memory copies of them: the same
    folds, the same predictions."""
    import keras

    from cnnrnn.cnnrnn.train import cross_validate, predict_proba

    table = D.load_packed(packed_run, "train", [32, 48])
    y, groups = np.asarray(table["emotion"]), table["speaker"]
    labels = load_json(packed_run / "labels.json")["labels"]
    cfg = override(load_config("tiny_speed"), {"train.crop_width": 32, "train.crop_hop": 8, "train.mixup": 0.2,
                                                "train.precise_bn": True}).train
    held_out = np.isin(groups, sorted(set(groups))[:2])  # one fold: two speakers scored, the rest fit / choose
    fold = [(np.flatnonzero(~held_out), np.flatnonzero(held_out))]
    reports = [cross_validate(images, y, labels, tmp_path / name, cfg, groups=groups, verbose=0, folds=fold,
                              train_copies=copies)
               for name, images, copies in (("memmap", table["path"], table[COPIES_KEY]),
                                            ("array", np.array(table["path"]), np.array(table[COPIES_KEY])))]
    folds = [[load_json(tmp_path / name / "folds" / "fold1.json")] for name in ("memmap", "array")]
    for a, b in zip(*folds):
        assert a["val_predictions"] == b["val_predictions"] and a["val_ids_index"] == b["val_ids_index"]
        assert a["n_fit_copies"] == 2 * a["n_fit"]
    assert reports[0]["mean"] == reports[1]["mean"]
    # prediction of some rows of a memory map, segment by segment, as a plain array of them predicts
    model = keras.models.load_model(reports[0]["checkpoints"][0], compile=False)
    rows = np.array([5, 0, 3])
    np.testing.assert_allclose(predict_proba(model, table["path"], 2, 8, indices=rows),
                               predict_proba(model, np.array(table["path"])[rows], 16, 8), rtol=1e-5, atol=1e-6)
