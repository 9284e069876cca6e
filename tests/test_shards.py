"""Issue 23, item 2: sharded spectrograms (``cnnrnn spectrograms --shard K/N``, merged by ``cnnrnn pack``), on the
bundled sample (real speech) with the ``tiny`` preset: three shards give the bytes of one unsharded run, with and
without speaker normalisation; a rerun resumes; a missing or incomplete shard is named by ``pack``; bad ``--shard``
values, shards of different N and a shard started without its statistics are refused with the reason."""
import logging
import shutil

import numpy as np
import pytest

from cnnrnn import cli
from cnnrnn.artifacts import load_image_table, load_json, load_pickle, save_json
from cnnrnn.cnnrnn.config import load_config
from cnnrnn.cnnrnn.data import pack, spectrograms, split
from cnnrnn.cnnrnn.shards import ShardError, parse_shard, render_shard, shard_of, spectrogram_stats
from cnnrnn.config import override
from cnnrnn.outputs import FolderInUseError, stage_lock

SPEAKER = {"spectrogram.normalization": "speaker", "spectrogram.workers": 1}
PLAIN = {"spectrogram.workers": 1}
#: Files of the whole run that the unsharded stage (or pack, merging) writes, and a shard never does.
RUN_FILES = ("data_train.pickle", "data_test.pickle", "packed.json", "spectrogram_report.json", "train_images.npy",
             "test_images.npy", "spectrograms/sources.json", "spectrograms/spectrogram_config.json")


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory, sample_dir):
    """The split stage's files of the sample (tiny preset), to be copied by each test."""
    out = tmp_path_factory.mktemp("shards") / "split"
    corpora_log = logging.getLogger("cnnrnn.corpora")
    level = corpora_log.level
    corpora_log.setLevel(logging.ERROR)  # the sample's skipped rows, said once per split: not this file's subject
    try:
        split("kemdy20", sample_dir, out, load_config("tiny"))
    finally:
        corpora_log.setLevel(level)  # the other test files of this worker process read these warnings
    return out


def fresh(split_dir, tmp_path, name="run"):
    return shutil.copytree(split_dir, tmp_path / name)


def cfg_of(settings):
    return override(load_config("tiny"), settings)


@pytest.mark.parametrize("settings", [PLAIN, SPEAKER], ids=["no-normalisation", "speaker-normalisation"])
def test_three_shards_give_the_bytes_of_one_unsharded_run(split_dir, tmp_path, settings):
    cfg = cfg_of(settings)
    one, three = fresh(split_dir, tmp_path, "one"), fresh(split_dir, tmp_path, "three")
    spectrograms(one, cfg, progress=False)
    pack(one, cfg, progress=False)
    if cfg.spectrogram.uses_stats:
        assert spectrogram_stats(three, cfg, progress=False)["made"] is True
        assert spectrogram_stats(three, cfg, progress=False)["made"] is False  # kept: nothing changed
    counts = [render_shard(three, k, 3, cfg, progress=False)["n_items"] for k in (1, 2, 3)]
    assert all(counts) and sum(counts) == len(list((one / "spectrograms").glob("*.png")))
    for name in RUN_FILES:  # the shards wrote only their PNGs and their records
        assert not (three / name).exists(), name
    assert sorted(p.name for p in (three / "spectrograms" / "shards").iterdir()) == [
        "1-of-3.json", "2-of-3.json", "3-of-3.json"]
    summary = pack(three, cfg, progress=False)
    assert summary["shards"]["n"] == 3 and sum(summary["shards"][f"{k}/3"]["n_written"] for k in (1, 2, 3)) == sum(
        counts)

    pngs = sorted(p.name for p in (one / "spectrograms").glob("*.png"))
    assert pngs == sorted(p.name for p in (three / "spectrograms").glob("*.png"))
    assert all((one / "spectrograms" / n).read_bytes() == (three / "spectrograms" / n).read_bytes() for n in pngs)
    if cfg.spectrogram.uses_stats:
        stats = load_json(three / "spectrograms" / "normalization.json")
        assert stats == load_json(one / "spectrograms" / "normalization.json") and len(stats["speakers"]) > 1
    for name in ("train_images.npy", "test_images.npy"):
        assert (one / name).read_bytes() == (three / name).read_bytes(), name
    for part in ("train", "test"):
        a, b = load_image_table(one / f"{part}_final.pickle"), load_image_table(three / f"{part}_final.pickle")
        assert a["path"].dtype == np.uint8 and np.array_equal(a["path"], b["path"])
        assert (a["id"], a["emotion"], a["speaker"]) == (b["id"], b["emotion"], b["speaker"])
        d = load_pickle(three / f"data_{part}.pickle")
        assert d["id"] == a["id"] and all(p.startswith(str(three.resolve())) for p in d["path"])
    assert load_json(three / "spectrogram_report.json")["shards"]["n"] == 3
    # pack again: the shards were merged already, nothing is merged again
    assert "shards" not in pack(three, cfg, progress=False)


def test_a_rerun_resumes_and_the_same_shard_twice_is_refused(split_dir, tmp_path):
    out, cfg = fresh(split_dir, tmp_path), cfg_of(PLAIN)
    first = render_shard(out, 2, 3, cfg, progress=False)
    assert first["n_written"] == first["n_items"] > 0
    again = render_shard(out, 2, 3, cfg, progress=False)
    assert (again["n_written"], again["n_existing"]) == (0, first["n_items"])
    record = load_json(out / "spectrograms" / "shards" / "2-of-3.json")
    assert record["complete"] and all(shard_of(uid, 3) == 2 for uid in record["sources"])
    victim = sorted(record["sources"])[0]
    (out / "spectrograms" / f"{victim}.png").unlink()
    assert render_shard(out, 2, 3, cfg, progress=False)["n_written"] == 1
    with stage_lock(out, "spectrograms", "shard-2-of-3"):  # shard 2/3 is running: not twice, but 1/3 runs beside
        with pytest.raises(FolderInUseError, match="in use by"):
            render_shard(out, 2, 3, cfg, progress=False)
        assert render_shard(out, 1, 3, cfg, progress=False)["n_written"] > 0
        with pytest.raises(FolderInUseError, match="shard"):  # pack waits for the running shards
            pack(out, cfg, progress=False)


def test_pack_names_the_missing_and_incomplete_shards(split_dir, tmp_path, caplog):
    out, cfg = fresh(split_dir, tmp_path), cfg_of(PLAIN)
    render_shard(out, 1, 3, cfg, progress=False)
    with pytest.raises(ShardError, match=r"shard 2/3 is missing; shard 3/3 is missing: run .*--shard 2/3, --shard 3/3"):
        pack(out, cfg, progress=False)
    record = out / "spectrograms" / "shards" / "3-of-3.json"
    render_shard(out, 3, 3, cfg, progress=False)
    save_json(load_json(record) | {"complete": False}, record)  # as a killed shard leaves it
    caplog.clear()
    assert cli.main(["-q", "pack", "--out", str(out)]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert "shard 2/3 is missing" in errors[0] and "shard 3/3 is incomplete" in errors[0]
    assert not (out / "data_train.pickle").exists() and not (out / "train_final.pickle").exists()
    render_shard(out, 2, 3, cfg, progress=False)
    render_shard(out, 3, 3, cfg, progress=False)
    assert pack(out, cfg, progress=False)["shards"]["n"] == 3


def test_changed_audio_is_named_and_an_unsharded_run_after_some_shards_is_kept(split_dir, tmp_path):
    out, cfg = fresh(split_dir, tmp_path), cfg_of(PLAIN)
    for k in (1, 2):
        render_shard(out, k, 2, cfg, progress=False)
    victim = sorted(load_json(out / "spectrograms" / "shards" / "2-of-2.json")["sources"])[0]
    name = next(n for n in ("train_audio.json", "test_audio.json")
                if victim in [r["id"] for r in load_json(out / n)])
    records = load_json(out / name)
    record = next(r for r in records if r["id"] == victim)
    audio = shutil.copy(record["audio_path"], tmp_path / "victim.wav")  # never touch the bundled sample
    with open(audio, "ab") as fh:  # other audio under the same id: the fingerprint changes
        fh.write(b"\0\0")
    record["audio_path"] = str(audio)
    save_json(records, out / name)
    with pytest.raises(ShardError, match=rf"shard 2/2 was made from other audio .*{victim}.*--shard 2/2"):
        pack(out, cfg, progress=False)
    assert render_shard(out, 2, 2, cfg, progress=False)["re_rendered"] == 1  # the rerun renders it again
    assert pack(out, cfg, progress=False)["shards"]["n"] == 2
    # shards of a new N after an unsharded run: the unsharded run's files are what pack uses, not a half of N
    other = fresh(split_dir, tmp_path, "other")
    render_shard(other, 1, 3, cfg, progress=False)
    spectrograms(other, cfg, progress=False)
    assert "shards" not in pack(other, cfg, progress=False) and (other / "train_final.pickle").is_file()


@pytest.mark.parametrize("text, reason", [("0/3", "between 1 and N=3"), ("4/3", "between 1 and N=3"),
                                          ("-1/3", "between 1 and N=3"), ("1/0", "at least 1"),
                                          ("2", "expected K/N"), ("a/b", "expected K/N"), ("1/2/3", "expected K/N"),
                                          ("1.5/3", "expected K/N"), ("", "expected K/N")])
def test_bad_shard_values_are_refused_before_any_work(split_dir, tmp_path, caplog, text, reason):
    with pytest.raises(ShardError, match=reason):
        parse_shard(text)
    out = fresh(split_dir, tmp_path)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    caplog.clear()
    assert cli.main(["-q", "spectrograms", "--out", str(out), f"--shard={text}"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and reason in errors[0] and "\n" not in errors[0]
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing written


def test_shard_parsing_at_the_cli(split_dir, tmp_path, capsys):
    assert parse_shard("2/3") == (2, 3) and parse_shard(" 1 / 1 ") == (1, 1)
    assert [shard_of("Sess01_script01_User001M_001", 1)] == [1]
    assert all(1 <= shard_of(f"id{i}", 7) <= 7 for i in range(50)) and len({shard_of(f"id{i}", 7)
                                                                             for i in range(50)}) == 7
    out = fresh(split_dir, tmp_path)
    assert cli.main(["-q", "spectrograms", "--out", str(out), "--shard", "2/3", "--workers", "1"]) == 0
    assert '"shard": "2/3"' in capsys.readouterr().out
    assert load_json(out / "spectrograms" / "shards" / "2-of-3.json")["complete"] is True
    assert cli.main(["-q", "spectrograms", "--out", str(out), "--shard", "1/3", "--stats-only"]) == 2


def test_shards_of_different_n_are_refused(split_dir, tmp_path):
    out, cfg = fresh(split_dir, tmp_path), cfg_of(PLAIN)
    render_shard(out, 1, 3, cfg, progress=False)
    with pytest.raises(ShardError, match=r"holds shards of N=3, not N=2"):
        render_shard(out, 1, 2, cfg, progress=False)
    assert not (out / "spectrograms" / "shards" / "1-of-2.json").exists()
    save_json({"complete": True}, out / "spectrograms" / "shards" / "1-of-2.json")  # written by hand, or a race
    with pytest.raises(ShardError, match=r"shards of different N \(2, 3\)"):
        pack(out, cfg, progress=False)


def test_a_shard_without_the_statistics_names_the_command(split_dir, tmp_path, caplog):
    out, cfg = fresh(split_dir, tmp_path), cfg_of(SPEAKER)
    with pytest.raises(ShardError, match=r"--stats-only"):
        render_shard(out, 1, 3, cfg, progress=False)
    config = tmp_path / "speaker.json"  # the tiny preset with speaker normalisation, at the CLI
    save_json({"extends": "tiny", "spectrogram": {"normalization": "speaker"}}, config)
    caplog.clear()
    assert cli.main(["-q", "spectrograms", "--out", str(out), "--shard", "1/3", "--config", str(config)]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and f"cnnrnn spectrograms --out {out} --stats-only" in errors[0]
    assert not (out / "spectrograms" / "shards" / "1-of-3.json").exists()
    # the documented order at the CLI: the statistics once, the shards (here one after another), then pack
    assert cli.main(["-q", "spectrograms", "--out", str(out), "--stats-only", "--config", str(config)]) == 0
    for k in (1, 2, 3):
        assert cli.main(["-q", "spectrograms", "--out", str(out), "--shard", f"{k}/3", "--config", str(config)]) == 0
    assert cli.main(["-q", "pack", "--out", str(out), "--config", str(config)]) == 0
    assert load_json(out / "spectrogram_report.json")["normalization"]["speakers"]
    assert load_json(out / "config.json")["spectrogram"]["normalization"] == "speaker"
