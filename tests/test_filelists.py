"""Filelists (wavpath|speaker_id|text|emotion_id|lang_id): bad lines, preparation from real corpora, and the
ESD and JTES readers on tiny layouts built from real EmoDB speech."""
import json
import shutil

import pytest
import soundfile as sf

from cnnrnn.cli import main
from cnnrnn.corpora import EMODB_LABELS, ESD_LABELS, JTES_LABELS, load_corpus
from cnnrnn.dcnn.filelists import FilelistEntry, FilelistError, prepare_filelists, read_filelist, write_filelist


@pytest.fixture(scope="module")
def wavs(sample_dir):
    return sorted((sample_dir / "wav" / "Session01").glob("*.wav"))


def test_bad_filelist_lines_are_clear_errors_and_missing_wav_a_counted_skip(tmp_path, real_wav):
    good = FilelistEntry(str(real_wav), "03", "a01", 1, 0)
    path = write_filelist(tmp_path / "list.txt", [good, FilelistEntry(str(tmp_path / "gone.wav"), "03", "", 2, 0)])
    entries, report = read_filelist(path, labels=ESD_LABELS)
    assert entries == [good] and report.skipped == {"missing_audio": [str(tmp_path / "gone.wav")]}
    assert (report.n_annotated, report.n_kept) == (2, 1)

    (tmp_path / "fields.txt").write_text(f"{real_wav}|03|a01|1|0\n{real_wav}|03|1|0\n")
    with pytest.raises(FilelistError, match=r"fields.txt:2: expected 5 '\|'-separated fields .* got 4"):
        read_filelist(tmp_path / "fields.txt")
    (tmp_path / "label.txt").write_text(f"{real_wav}|03|a01|4|0\n")
    with pytest.raises(FilelistError, match="emotion id 4 is outside the label set 0..3"):
        read_filelist(tmp_path / "label.txt", labels=ESD_LABELS)


def test_prepare_filelists_emodb_speaker_disjoint_folds_and_loso(tmp_path, shared_data):
    root, out = shared_data / "emodb-535", tmp_path / "emodb"
    assert main(["-q", "filelists", "--corpus", "emodb", "--root", str(root), "--out", str(out)]) == 0
    labels = json.loads((out / "labels.json").read_text())["labels"]
    assert labels == list(EMODB_LABELS.values())
    every = {p.resolve().as_posix() for p in root.glob("*.wav")}
    assert len(every) == 535

    def read(name):
        entries, report = read_filelist(out / name, labels=labels)
        assert report.n_skipped == 0
        for e in entries:  # the id is the EmoDB letter's label, the speaker the name's first two digits
            stem = e.wavpath.rsplit("/", 1)[1]
            assert labels[e.emotion_id] == EMODB_LABELS[stem[5]] and e.speaker_id == stem[:2] and e.lang_id == 0
        return entries

    tested = []
    for k in range(1, 6):
        train, test = read(f"kfold/fold{k}_train.txt"), read(f"kfold/fold{k}_test.txt")
        assert not {e.speaker_id for e in train} & {e.speaker_id for e in test}
        assert len({e.speaker_id for e in test}) == 2 and len(train) + len(test) == 535
        tested += [e.wavpath for e in test]
    assert sorted(tested) == sorted(every)

    pairs = sorted(p.name for p in (out / "loso").glob("*_test.txt"))
    assert len(pairs) == 10
    tested = []
    for name in pairs:
        speaker = name.split("_")[0]
        train, test = read(f"loso/{speaker}_train.txt"), read(f"loso/{name}")
        assert {e.speaker_id for e in test} == {speaker} and speaker not in {e.speaker_id for e in train}
        assert len(train) + len(test) == 535
        tested += [e.wavpath for e in test]
    assert sorted(tested) == sorted(every)
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["kfold"]["by_speaker"] and report["n_entries"] == 535 and len(report["loso"]) == 10


def _esd_layout(root, wavs):
    """Speakers 0011-0013 with four used emotions each (0011's transcript is UTF-16, one line missing), a
    Surprise clip, a Mandarin speaker 0001 and a misnamed file."""
    texts = {}
    i = 0
    for spk in ("0011", "0012", "0013"):
        for emotion in ("Neutral", "Happy", "Sad", "Angry", "Surprise"):
            for _ in range(2 if emotion != "Surprise" else 1):
                uid = f"{spk}_{i:06d}"
                (root / spk / emotion).mkdir(parents=True, exist_ok=True)
                shutil.copy(wavs[i % len(wavs)], root / spk / emotion / f"{uid}.wav")
                texts.setdefault(spk, []).append(f"{uid}\tSentence {i} | with a bar.\t{emotion}")
                i += 1
    texts["0011"].pop(0)  # 0011_000000 (Neutral) has no transcript line
    (root / "0011" / "0011.txt").write_text("\n".join(texts["0011"]) + "\n", encoding="utf-16")
    for spk in ("0012", "0013"):
        (root / spk / f"{spk}.txt").write_text("\n".join(texts[spk]) + "\n", encoding="utf-8")
    (root / "0001" / "Happy").mkdir(parents=True)
    shutil.copy(wavs[0], root / "0001" / "Happy" / "0001_000001.wav")
    shutil.copy(wavs[1], root / "0012" / "Sad" / "0013_000999.wav")


def test_esd_reader_and_prepare_filelists(tmp_path, wavs):
    root = tmp_path / "ESD"
    _esd_layout(root, wavs)
    utts, report = load_corpus("esd", root)
    assert len(utts) == 24 and {u.emotion for u in utts} == set(ESD_LABELS)
    assert {k: len(v) for k, v in report.skipped.items()} == {
        "unused_emotion": 3, "out_of_scope_speaker": 1, "speaker_mismatch": 1}
    by_id = {u.id: u for u in utts}
    assert by_id["0011_000000"].text is None and report.fixed == {"no_transcript_line": 1}
    assert by_id["0011_000003"].text == "Sentence 3 | with a bar."  # decoded from UTF-16
    assert by_id["0012_000016"].emotion == "angry" and by_id["0012_000016"].speaker == "0012"

    out = tmp_path / "lists"
    report = prepare_filelists("esd", root, out, folds=3, seed=1)
    assert json.loads((out / "labels.json").read_text()) == {"labels": list(ESD_LABELS)}
    assert report["kfold"]["by_speaker"] and report["n_text_fixed"] == 23
    assert report["label_counts"] == {"neutral": 6, "happy": 6, "sad": 6, "angry": 6}
    for k in (1, 2, 3):
        test, _ = read_filelist(out / "kfold" / f"fold{k}_test.txt", labels=ESD_LABELS)
        assert len({e.speaker_id for e in test}) == 1
        for e in test:
            assert e.wavpath.split("/")[-2].lower() == ESD_LABELS[e.emotion_id]
    lines = (out / "loso" / "0011_test.txt").read_text().splitlines()
    assert len(lines) == 8 and any(x.endswith("0011/Neutral/0011_000000.wav|0011||0|0") for x in lines)
    assert "Sentence 3 with a bar." in (out / "loso" / "0011_test.txt").read_text()
    assert sorted(p.name for p in (out / "loso").iterdir()) == [
        f"{s}_{part}.txt" for s in ("0011", "0012", "0013") for part in ("test", "train")]


def test_jtes_reader_parses_names_and_counts_mismatches(tmp_path, wavs):
    root = tmp_path / "jtes"
    layout = {"f01/neu/f01_neu_01.wav": "neu", "f01/joy/f01_joy_01.wav": "joy", "m50/sad/m50_sad_50.wav": "sad",
              "m02/ang/m02_ang_07.wav": "ang", "f01/ang/f01_ang_02.wav": "ang", "m02/neu/m02_neu_01.wav": "neu",
              "f01/joy/f01_neu_02.wav": "folder_mismatch", "f02/sur/f02_sur_01.wav": "unknown_emotion",
              "f51/neu/f51_neu_01.wav": "unparsable_name", "f01/neu/notes.wav": "unparsable_name"}
    for i, rel in enumerate(layout):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(wavs[i], root / rel)
    utts, report = load_corpus("jtes", root)
    assert {u.id: u.emotion for u in utts} == {rel.split("/")[-1][:-4]: lab for rel, lab in layout.items()
                                               if lab in JTES_LABELS}
    assert {k: len(v) for k, v in report.skipped.items()} == {
        "folder_mismatch": 1, "unknown_emotion": 1, "unparsable_name": 2}
    u = next(u for u in utts if u.id == "m02_ang_07")
    assert u.speaker == "m02" and u.text == "07" and sf.info(u.audio_path).samplerate == 16000

    out = tmp_path / "lists"
    report = prepare_filelists("jtes", root, out, folds=2, loso=False, labels=["neu", "ang"])
    assert report["skipped"] == {"label_not_in_set": ["f01_joy_01", "m50_sad_50"]}
    assert report["kfold"]["by_speaker"] and not (out / "loso").exists()  # 2 speakers left for 2 folds
    folds = [read_filelist(out / "kfold" / f"fold{k}_test.txt", labels=["neu", "ang"])[0] for k in (1, 2)]
    assert sorted((e.speaker_id, e.emotion_id) for part in folds for e in part) == [
        ("f01", 0), ("f01", 1), ("m02", 0), ("m02", 1)]
    assert {e.speaker_id for e in folds[0]} in ({"f01"}, {"m02"})
    # n_folds, the old name of folds, is still taken
    prepare_filelists("jtes", root, out, n_folds=3, folds_by="stratified", loso=False, labels=["neu", "ang"])
    rerun = prepare_filelists("jtes", root, out, folds=2, loso=False, labels=["neu", "ang"])
    assert sorted(p.rsplit("/", 1)[1] for p in rerun["removed_stale"]) == ["fold3_test.txt", "fold3_train.txt"]
    assert sorted(p.name for p in (out / "kfold").iterdir()) == [
        "fold1_test.txt", "fold1_train.txt", "fold2_test.txt", "fold2_train.txt"]
    with pytest.raises(ValueError, match="need at least 3 utterances per label"):
        prepare_filelists("jtes", root, out, n_folds=3, folds_by="speaker")


def test_filelists_cli_errors(tmp_path):
    assert main(["-q", "filelists", "--corpus", "esd", "--root", str(tmp_path / "none"), "--out",
                 str(tmp_path / "o")]) == 2
