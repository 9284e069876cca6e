from collections import Counter

import numpy as np
import pytest

from cnnrnn.corpora import Utterance, read_corpus
from cnnrnn.cnnrnn.data import split_per_session
from cnnrnn.splits import (SCHEMES, ContiguousFolds, LeaveOneSpeakerOut, PerSessionSplit, SpeakerFolds,
                           SplitError, StratifiedFolds, kfold_indices, loso_indices, make_splitter)


def _utts(n_per=10, sessions=("S1", "S2"), labels=("a", "b")):
    return [Utterance(id=f"{s}_{lab}_{i}", audio_path="x", speaker=f"{s}{i % 2}", session=s, emotion=lab,
                      emotions=[lab]) for s in sessions for lab in labels for i in range(n_per)]


def test_per_session_8_2_stratified_and_seeded():
    utts = _utts()
    a = split_per_session(utts, 0.2, seed=7)
    b = split_per_session(utts, 0.2, seed=7)
    c = split_per_session(utts, 0.2, seed=8)
    for s in ("S1", "S2"):
        assert len(a.train[s]) == 16 and len(a.test[s]) == 4
        assert Counter(u.emotion for u in a.test[s]) == {"a": 2, "b": 2}
        assert not {u.id for u in a.train[s]} & {u.id for u in a.test[s]}
    assert [u.id for u in a.flat("test")] == [u.id for u in b.flat("test")]
    assert [u.id for u in a.flat("test")] != [u.id for u in c.flat("test")]
    assert a.labels == ["a", "b"] and a.report["sessions"]["S1"]["stratified"]


def test_ties_left_out_by_default_or_kept_with_first_label():
    utts = _utts()
    utts.append(Utterance(id="tie", audio_path="x", session="S1", emotion="a", emotions=["a", "b"]))
    left = split_per_session(utts)
    assert left.report["n_ties"] == 1 and left.report["tied_ids"] == ["tie"]
    assert "tie" not in {u.id for p in ("train", "test") for u in left.flat(p)}
    kept = split_per_session(utts, keep_ties=True)
    all_ids = {u.id: u for p in ("train", "test") for u in kept.flat(p)}
    assert all_ids["tie"].emotion == "a"


def test_corpus_without_sessions_is_one_session(sample_dir):
    utts = [Utterance(id=str(i), audio_path="x", emotion="ab"[i % 2], emotions=["ab"[i % 2]]) for i in range(10)]
    result = split_per_session(utts)
    assert list(result.train) == ["all"] and len(result.test["all"]) == 2


def test_sample_split_keeps_every_session(sample_dir):
    result = split_per_session(read_corpus("kemdy20", sample_dir))
    assert set(result.train) == set(result.test) == {"Session01", "Session03", "Session17"}
    assert result.report["n_train"] + result.report["n_test"] == 103  # 105 minus 2 ties


def test_unknown_label_in_fixed_label_list():
    with pytest.raises(ValueError, match="not in the configured label list"):
        split_per_session(_utts(), labels=["a"])


def test_declared_label_order_gives_the_codes_whatever_the_subset():
    utts = [Utterance(id=str(i), audio_path="x", emotion=lab, emotions=[lab])
            for i, lab in enumerate(["sad", "angry"] * 5)]
    result = split_per_session(utts, corpus="kemdy20")
    assert result.labels == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert split_per_session(utts, corpus="manifest").labels == ["angry", "sad"]


def test_kfold_stratified_speaker_disjoint_and_loso():
    y = np.repeat([0, 1, 2], 20)
    folds = kfold_indices(y, 5, seed=1)
    assert len(folds) == 5
    assert sorted(np.concatenate([va for _, va in folds]).tolist()) == list(range(60))
    for tr, va in folds:
        assert np.bincount(y[va]).tolist() == [4, 4, 4]
    assert [va.tolist() for _, va in kfold_indices(y, 5, seed=1)] == [va.tolist() for _, va in folds]
    groups = np.array([f"spk{i % 10}" for i in range(60)])
    for tr, va in kfold_indices(y, 5, seed=1, groups=groups):
        assert not set(groups[tr]) & set(groups[va])
    with pytest.raises(ValueError, match="at least 5 speakers"):
        kfold_indices(y, 5, groups=np.array(["a", "b"] * 30))
    loso = loso_indices(groups)
    assert [g for g, _, _ in loso] == sorted(set(groups)) and all(set(groups[te]) == {g} for g, _, te in loso)


def test_every_splitter_has_one_interface_and_carries_its_seed():
    y = np.repeat([0, 1], 20)
    speakers = np.array([f"s{i % 8}" for i in range(40)])
    sessions = np.array(["A"] * 20 + ["B"] * 20)
    for scheme in SCHEMES:
        splitter = make_splitter(scheme, folds=4, seed=3)
        pairs = list(splitter.split(np.arange(40), y, sessions if scheme == "session" else speakers))
        assert pairs and all(len(np.intersect1d(tr, te)) == 0 for tr, te in pairs), scheme
        again = make_splitter(**{k: v for k, v in splitter.spec().items() if k in ("scheme", "folds", "seed")})
        assert [te.tolist() for _, te in again.split(40, y, sessions if scheme == "session" else speakers)] == \
               [te.tolist() for _, te in pairs], scheme
    session_split = PerSessionSplit(0.2, seed=1)
    tr, te = session_split.fold(0, 40, y, sessions)
    assert len(te) == 8 and set(sessions[te]) == {"A", "B"} and session_split.stratified == {"A": True, "B": True}
    blocks = [te.tolist() for _, te in ContiguousFolds(5).split(10)]
    assert blocks == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert StratifiedFolds(5, 1).fold(2, 40, y)[1].tolist() != StratifiedFolds(5, 2).fold(2, 40, y)[1].tolist()
    for tr, te in SpeakerFolds(4, 0).split(40, y, speakers):
        assert not set(speakers[tr]) & set(speakers[te])
    assert [set(speakers[te]) for _, te in LeaveOneSpeakerOut().split(40, y, speakers)] == [{f"s{i}"} for i in range(8)]
    with pytest.raises(SplitError, match="fold 9 does not exist"):
        ContiguousFolds(5).fold(9, 10)
    with pytest.raises(SplitError, match="speaker for every item"):
        list(SpeakerFolds(2).split(4, [0, 1, 0, 1], ["a", None, "b", "c"]))


def test_cross_corpus_vocabulary():
    from cnnrnn.corpora import canonical_emotion, match_labels

    assert [canonical_emotion(x) for x in ("Angry", "ang", "anger", "joy", "happy", "disqust", "neu", "7")] == \
           ["anger", "anger", "anger", "happiness", "happiness", "disgust", "neutral", "7"]
    emodb = ["anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral"]
    assert match_labels(["angry", "disqust", "surprise"], emodb) == {"angry": "anger", "disqust": "disgust",
                                                                       "surprise": None}
    with pytest.raises(ValueError, match="both mean"):
        match_labels(["angry"], ["angry", "anger"])


def test_speaker_split_holds_out_whole_speakers(sample_dir, tmp_path, capsys):
    from cnnrnn import cli

    utts = read_corpus("kemdy20", sample_dir)
    session = split_per_session(utts, corpus="kemdy20")
    assert session.report["speakers_in_both"]  # the original split mixes speakers
    speaker = split_per_session(utts, corpus="kemdy20", scheme="speaker")
    train_speakers = {u.speaker for u in speaker.flat("train")}
    test_speakers = {u.speaker for u in speaker.flat("test")}
    assert test_speakers and not train_speakers & test_speakers and speaker.report["speakers_in_both"] == []
    assert speaker.report["n_train"] + speaker.report["n_test"] == 103
    assert cli.main(["-q", "split", "--corpus", "kemdy20", "--root", str(sample_dir), "--out", str(tmp_path),
                     "--split", "speaker"]) == 0
    out = capsys.readouterr().out
    assert '"speakers_in_train_and_test": []' in out and "not speaker-independent" not in out
    assert cli.main(["-q", "split", "--corpus", "kemdy20", "--root", str(sample_dir), "--out", str(tmp_path)]) == 0
    assert "not speaker-independent" in capsys.readouterr().out


def test_inner_split_never_uses_the_scored_fold():
    from cnnrnn.splits import inner_split

    y = np.repeat([0, 1], 20)
    speakers = [f"s{i % 5}" for i in range(40)]
    train_idx = np.arange(30)
    fit, sel = inner_split(train_idx, y, speakers, seed=3)
    assert len({speakers[i] for i in sel}) == 1 and not {speakers[i] for i in sel} & {speakers[i] for i in fit}
    assert sorted(np.concatenate([fit, sel]).tolist()) == list(range(30))
    fit2, sel2 = inner_split(train_idx, y, None, seed=3)
    assert len(sel2) == 6 and set(sel2) <= set(train_idx) and not set(fit2) & set(sel2)
