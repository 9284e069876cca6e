"""KEMDy label processing (``cnnrnn kemdy-labels``): typo fixes, rater weights, weighted vote, new_data.csv."""
import csv
import json
import shutil

import pytest

from cnnrnn import cli
from cnnrnn.artifacts import load_json
from cnnrnn.corpora import CorpusError, load_corpus
from cnnrnn.corpora.kemdy import WEIGHTED_COLUMNS, read_kemdy_ratings
from cnnrnn.corpora.kemdy_labels import LABELS, canonical_label, majority_label, process_labels, weighted_vote

from conftest import FIXTURES

RATERS = [f"Eval{i:02d}" for i in range(1, 11)]


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


def check_output(report, out_csv, n_raters=10):
    """What holds for any corpus: columns, weights in [0, 1], canonical weighted labels, raw kept."""
    columns, rows = read_rows(out_csv)
    assert tuple(columns) == WEIGHTED_COLUMNS
    assert len(rows) == report["n_written"] > 0
    assert sorted(report["rater_weights"]) == RATERS[:n_raters]
    assert all(0.0 <= w <= 1.0 for w in report["rater_weights"].values())
    for row in rows:
        assert row["emotion_weighted"] and all(lab in LABELS for lab in row["emotion_weighted"].split(";"))
        assert row["wav_path"].endswith(row["segment_id"] + ".wav")
    # the raw cell is kept as written (corpus spelling and ties), the weighted label is canonical
    assert any("disqust" in row["emotion_raw"] for row in rows)
    assert any(row["emotion_weighted"] == "disgust" for row in rows)
    assert report["ties_before"] == sum(";" in row["emotion_raw"] for row in rows)
    assert report["ties_after"] == sum(";" in row["emotion_weighted"] for row in rows)
    return rows


def test_kemdy20_layout_corpus(shared_data, tmp_path):
    root = shared_data / "kemdy20-layout"
    out, report_json = tmp_path / "new_data.csv", tmp_path / "report.json"
    report = process_labels("kemdy20", root, out, report_json)
    rows = check_output(report, out)
    assert load_json(report_json) == json.loads(json.dumps(report))
    assert report["n_annotated"] == 454 and report["n_written"] == 445
    assert list(report["skipped"]) == ["missing_audio"] and len(report["skipped"]["missing_audio"]) == 9
    assert report["fixed"]["session_prefix"] == 11
    assert report["ties_before"] == 2 and report["ties_after"] == 0
    assert report["n_majority_segments"] > 300
    # the raters differ in reliability on purpose: the weights must spread
    weights = report["rater_weights"]
    assert max(weights.values()) > 0.9 and min(weights.values()) < 0.6
    # Sess18_ ids in Sess17_eval.csv are fixed; every segment has its cp949 transcript
    assert not any(r["segment_id"].startswith("Sess18_") for r in rows)
    assert all(r["text"] for r in rows) and report["text"] == {}
    # the weighted vote agrees with the EmoDB emotion the stand-in was built from at least as often as the
    # raters' plain majority, and both former ties resolve to the true emotion
    with open(root / "SOURCE.tsv", encoding="utf-8") as fh:
        truth = {r["segment_id"]: canonical_label(r["emodb_emotion_as_kemdy"]) for r in csv.DictReader(fh, delimiter="\t")}
    raw_hits = sum(canonical_label(r["emotion_raw"]) == truth[r["segment_id"]] for r in rows)
    weighted_hits = sum(r["emotion_weighted"] == truth[r["segment_id"]] for r in rows)
    assert weighted_hits >= raw_hits
    assert all(r["emotion_weighted"] == truth[r["segment_id"]] for r in rows if ";" in r["emotion_raw"])


@pytest.mark.parametrize("corpus", ["kemdy20", "kemdy19"])
def test_bundled_sample_and_kemdy19_fixture(corpus, sample_dir, tmp_path):
    root = sample_dir if corpus == "kemdy20" else FIXTURES / "kemdy19"
    report = process_labels(corpus, root, tmp_path / "new_data.csv")
    rows = check_output(report, tmp_path / "new_data.csv")
    assert not (tmp_path / "report.json").exists()
    assert report["ties_before"] >= 1 and report["ties_after"] < report["ties_before"]
    utts, _ = load_corpus(corpus, root)  # the same segments as the corpus reader keeps
    assert sorted(r["segment_id"] for r in rows) == sorted(u.id for u in utts)
    assert any(k.startswith("typo:disqust->disgust") for k in report["fixed"])


def test_majority_and_weighted_vote_rules():
    assert canonical_label(" Disqust ") == "disgust" and canonical_label("bored") is None
    assert canonical_label("") is None
    assert majority_label(["sad"] * 6 + ["happy"] * 4) == "sad"
    assert majority_label(["sad"] * 5 + ["happy"] * 5) is None  # half is not a majority
    assert majority_label(["sad"] * 5 + [None] * 5) is None  # a missing vote does not count for the label
    w = {"a": 0.9, "b": 0.4, "c": 0.4}
    assert weighted_vote({"a": "happy", "b": "sad", "c": "sad"}, w) == ["happy"]  # 0.9 outweighs 0.4 + 0.4
    assert weighted_vote({"a": None, "b": "sad", "c": "sad"}, w) == ["sad"]
    assert weighted_vote({"a": None, "b": "sad", "c": "angry"}, w) == ["angry", "sad"]
    assert weighted_vote({"a": None}, w) == []


def _write_case(root, sample_dir, real_wav):
    """A KEMDy20 corpus with one annotation file whose rater cells are set by hand (header from the sample).

    Majority segments are A and B only. Eval01–06 always agree with the majority (weight 1), Eval07
    agrees once out of two (0.5), Eval08–10 never (0).
    """
    header = list(csv.reader(open(sample_dir / "annotation" / "Sess01_eval.csv", encoding="utf-8")))[:2]
    cases = {
        # id suffix: (Total Evaluation, ten rater cells)
        "001": ("angry", ["angry"] * 6 + ["sad"] * 4),
        "002": ("happy", ["happy"] * 7 + ["neutral"] * 3),
        "003": ("fear;sad", ["fear"] * 5 + ["sad"] * 4 + ["disqust"]),  # weighted: fear 5 vs sad 1.5
        "004": ("sad", ["happy"] * 3 + ["neutral"] * 2 + ["", "sad", "bored", "sad", "sad"]),  # plurality sad
        "005": ("angry;sad", ["angry", "sad"] + [""] * 8),  # 1.0 vs 1.0: the tie stays
        "006": ("neutral", [""] * 10),  # no valid vote: the Total Evaluation is kept
        "007": ("", [""] * 10),  # nothing at all: skipped
    }
    (root / "annotation").mkdir(parents=True)
    wav_dir = root / "wav" / "Session01"
    wav_dir.mkdir(parents=True)
    rows = header
    for i, (suffix, (total, raters)) in enumerate(cases.items(), start=1):
        seg_id = f"Sess01_script01_User001M_{suffix}"
        cells = [c for lab in raters for c in (lab, "3", "3")]
        rows.append([str(i), "0.0", "1.0", seg_id, total, "3.0", "3.0"] + cells)
        shutil.copy(real_wav, wav_dir / f"{seg_id}.wav")
        (wav_dir / f"{seg_id}.txt").write_bytes("안녕하세요.".encode("cp949"))
    (wav_dir / "Sess01_script01_User001M_001.txt").unlink()  # missing transcript
    (wav_dir / "Sess01_script01_User001M_002.txt").write_bytes(b"\xff\xfe\xfa\xfb")  # neither cp949 nor UTF-8
    (wav_dir / "Sess01_script01_User001M_003.txt").write_bytes("안녕하세요.".encode("utf-8"))  # not cp949
    with open(root / "annotation" / "Sess01_eval.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)


def test_weighted_vote_follows_hand_set_weights(tmp_path, sample_dir, real_wav):
    root = tmp_path / "k20"
    _write_case(root, sample_dir, real_wav)
    report = process_labels("kemdy20", root, tmp_path / "new_data.csv", tmp_path / "report.json")
    assert report["n_majority_segments"] == 2
    assert report["rater_weights"] == {**{r: 1.0 for r in RATERS[:6]}, "Eval07": 0.5,
                                       "Eval08": 0.0, "Eval09": 0.0, "Eval10": 0.0}
    assert report["rater_stats"]["Eval07"] == {"n_majority": 2, "n_agree": 1}
    _, rows = read_rows(tmp_path / "new_data.csv")
    got = {r["segment_id"][-3:]: (r["emotion_raw"], r["emotion_weighted"]) for r in rows}
    assert got == {
        "001": ("angry", "angry"), "002": ("happy", "happy"), "003": ("fear;sad", "fear"),
        "004": ("sad", "happy"), "005": ("angry;sad", "angry;sad"), "006": ("neutral", "neutral"),
    }
    assert report["ties_before"] == 2 and report["ties_after"] == 1 and report["n_changed"] == 1
    assert report["weighted_from_total"] == ["Sess01_script01_User001M_006"]
    assert report["skipped"] == {"no_label": ["Sess01_script01_User001M_007"]}
    # bad rater cells are ignored votes, counted (not a crash)
    assert report["ignored_votes"]["empty"]["n"] == 1 + 8 + 10 + 10
    assert report["ignored_votes"]["unknown_label"] == {"n": 1, "examples": ["Sess01_script01_User001M_004:Eval08='bored'"]}
    assert report["fixed"] == {"typo:disqust->disgust (rater)": 1}
    # transcripts: missing and undecodable give an empty text, counted; UTF-8 is read but noted
    assert report["text"] == {"missing": ["Sess01_script01_User001M_001"],
                              "undecodable": ["Sess01_script01_User001M_002"],
                              "not_cp949": ["Sess01_script01_User001M_003"]}
    text = {r["segment_id"][-3:]: r["text"] for r in rows}
    assert text["001"] == text["002"] == "" and text["003"] == text["004"] == "안녕하세요."


def test_cli_writes_csv_and_report_and_split_reads_it(tmp_path, sample_dir, capsys):
    out = tmp_path / "labels" / "new_data.csv"
    assert cli.main(["-q", "kemdy-labels", "--corpus", "kemdy20", "--root", str(sample_dir), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "rater weights" in printed and "ties before 2, after 0" in printed
    report = load_json(tmp_path / "labels" / "new_data_report.json")
    assert report["n_written"] == 105 and not list(tmp_path.glob("labels/.*.tmp"))

    run = tmp_path / "run"
    assert cli.main(["-q", "split", "--corpus", "kemdy-weighted", "--root", str(out), "--out", str(run)]) == 0
    labels = load_json(run / "labels.json")["labels"]
    assert "disgust" in labels and "disqust" not in labels
    records = load_json(run / "train_audio.json") + load_json(run / "test_audio.json")
    assert len(records) == 105  # the two former ties are single labels now, so none is left out
    _, rows = read_rows(out)
    weighted = {r["segment_id"]: r["emotion_weighted"] for r in rows}
    assert all(rec["emotion"] == weighted[rec["id"]] and labels[rec["label"]] == rec["emotion"] for rec in records)


def test_weighted_reader_relative_paths_skips_and_errors(tmp_path, sample_dir):
    out = tmp_path / "new_data.csv"
    process_labels("kemdy20", sample_dir, out)
    _, rows = read_rows(out)
    shutil.copy(rows[0]["wav_path"], tmp_path / "first.wav")
    rows[0]["wav_path"] = "first.wav"  # relative to the CSV's folder
    rows[1]["wav_path"] = str(tmp_path / "gone.wav")
    rows[2]["emotion_weighted"] = ""
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=WEIGHTED_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    utts, report = load_corpus("kemdy-weighted", out)
    assert len(utts) == len(rows) - 2
    assert utts[0].audio_path == str((tmp_path / "first.wav").resolve()) and utts[0].session == "Session01"
    assert report.skipped == {"missing_audio": [rows[1]["segment_id"]], "no_label": [rows[2]["segment_id"]]}

    bad = tmp_path / "bad.csv"
    bad.write_text("segment_id,wav_path\nx,y.wav\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="emotion_weighted"):
        load_corpus("kemdy-weighted", bad)


def test_bad_corpus_is_a_clear_error(tmp_path, caplog):
    assert cli.main(["-q", "kemdy-labels", "--corpus", "kemdy20", "--root", str(tmp_path / "nope"),
                     "-o", str(tmp_path / "x.csv")]) == 2
    assert "does not exist" in caplog.text and not (tmp_path / "x.csv").exists()
    with pytest.raises(CorpusError, match="unknown corpus"):
        read_kemdy_ratings("emodb", tmp_path)
