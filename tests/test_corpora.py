import csv
import shutil

import pytest

from cnnrnn.corpora import CorpusError, load_corpus, read_corpus

from conftest import FIXTURES, write_wav


def test_kemdy20_bundled_sample(sample_dir):
    utts, report = load_corpus("kemdy20", sample_dir)
    assert report.n_annotated == 108 and len(utts) == 105
    assert sorted(report.skipped) == ["missing_audio"] and len(report.skipped["missing_audio"]) == 3
    assert report.fixed["session_prefix"] >= 1
    assert {u.session for u in utts} == {"Session01", "Session03", "Session17"}
    assert not any(u.id.startswith("Sess18_") for u in utts)
    assert all(u.audio_path.endswith(f"{u.id}.wav") for u in utts)
    ties = [u for u in utts if u.is_tied]
    assert sorted(tuple(u.emotions) for u in ties) == [("disgust", "happy"), ("fear", "neutral")]  # the corpus spells it disqust
    assert all(u.emotion == u.emotions[0] for u in ties)
    first = next(u for u in utts if u.id == "Sess01_script01_User002F_003")
    assert first.speaker == "User002F" and first.emotion == "neutral"
    assert (first.valence, first.arousal) == (2.9, 2.8)
    assert first.text == "그 물건은 냉장고 위에 놓여 있어요."  # decoded from cp949


def test_kemdy20_full_stand_in(shared_data):
    utts, report = load_corpus("kemdy20", shared_data / "kemdy20-layout")
    assert report.n_annotated == 454 and len(utts) == 445 and report.n_skipped == 9
    assert set(report.skipped) == {"missing_audio"}
    source = {}
    with open(shared_data / "kemdy20-layout" / "SOURCE.tsv", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            source[row["segment_id"]] = row
    for u in utts:  # every kept utterance agrees with the corpus's own record
        assert source[u.id]["audio"] == "present"
        # the corpus' "disqust" is read as the canonical "disgust"
        assert ";".join(u.emotions) == source[u.id]["total_evaluation"].replace("disqust", "disgust")


def test_kemdy19_fixture():
    utts, report = load_corpus("kemdy19", FIXTURES / "kemdy19")
    ids = [u.id for u in utts]
    # each segment once, from its own speaker's file (the other file's label is different on purpose)
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 6
    by_id = {u.id: u for u in utts}
    assert by_id["Sess01_impro01_F001"].emotion == "happy"
    assert by_id["Sess01_impro01_M001"].emotion == "angry"
    assert by_id["Sess01_script01_M002"].emotions == ["neutral", "sad"]
    assert by_id["Sess01_impro01_F001"].speaker == "Session01_F"
    assert by_id["Sess01_impro01_F001"].text == "오늘 정말 기분이 좋아요."
    assert report.skipped == {"missing_audio": ["Sess01_impro02_M003"]}


def test_unknown_label_is_skipped_and_counted(tmp_path, sample_dir):
    root = tmp_path / "k20"
    shutil.copytree(sample_dir, root)
    path = root / "annotation" / "Sess01_eval.csv"
    rows = list(csv.reader(open(path, encoding="utf-8")))
    rows[2][4] = "bored"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    utts, report = load_corpus("kemdy20", root)
    assert report.skipped["unknown_label:bored"] == [rows[2][3]]
    assert len(utts) == 104


def test_emodb_labels_from_the_sixth_character(tmp_path, real_waveform):
    y, sr = real_waveform
    for name in ("03a01Fa", "08b02Wc", "16a05Nd", "badname"):
        write_wav(tmp_path / f"{name}.wav", y[:4000], sr)
    utts, report = load_corpus("emodb", tmp_path)
    assert [(u.id, u.emotion, u.speaker) for u in utts] == [
        ("03a01Fa", "happiness", "03"), ("08b02Wc", "anger", "08"), ("16a05Nd", "neutral", "16")]
    assert report.skipped == {"unparsable_name": ["badname.wav"]}


def test_manifest(tmp_path, real_waveform):
    y, sr = real_waveform
    write_wav(tmp_path / "a" / "one.wav", y[:4000], sr)
    write_wav(tmp_path / "two.wav", y[:4000], sr)
    (tmp_path / "m.csv").write_text("path,label,speaker\na/one.wav,happy,s1\ntwo.wav,sad,s2\ngone.wav,sad,s3\n")
    utts, report = load_corpus("manifest", tmp_path / "m.csv")
    assert [(u.id, u.emotion, u.speaker, u.session) for u in utts] == [("one", "happy", "s1", None),
                                                                      ("two", "sad", "s2", None)]
    assert report.skipped == {"missing_audio": ["gone.wav"]}
    (tmp_path / "bad.csv").write_text("file,emotion\nx.wav,sad\n")
    with pytest.raises(CorpusError, match=r"lacks column\(s\) \['label', 'path'\]"):
        read_corpus("manifest", tmp_path / "bad.csv")


@pytest.mark.parametrize("name", ["kemdy20", "kemdy19", "emodb"])
def test_missing_or_empty_corpus_folder(tmp_path, name):
    with pytest.raises(CorpusError, match="does not exist"):
        read_corpus(name, tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="is empty"):
        read_corpus(name, tmp_path / "empty")


def test_unknown_reader():
    with pytest.raises(CorpusError, match="unknown corpus"):
        read_corpus("iemocap", ".")
