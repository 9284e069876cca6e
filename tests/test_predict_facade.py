"""The prediction facade names no family (issue 22): run discovery in cnnrnn.runs, the families' capabilities read
from their own predict modules, unknown options refused, one set of entry-point names, and the renamed commands."""
import warnings

import pytest

from cnnrnn import cli, families
from cnnrnn import predict as P
from cnnrnn.runs import find_manifest, find_run, legacy_family, write_manifest


def test_find_run_starts_at_a_folder_and_stops_after_levels(tmp_path):
    run = tmp_path / "run"
    deep = run / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (run / "labels.json").write_text("[]")
    (deep / "model.h5").write_bytes(b"")
    assert find_run(deep / "model.h5", ["labels.json"]) == run
    assert find_run(run, ["labels.json"]) == run  # a folder is searched itself first
    assert find_run(deep / "model.h5", ["labels.json"], levels=3) is None  # c, b, a: not as far as run
    assert find_run(deep, ["labels.json"], levels=3) == run  # deep itself, then c's parents b, a, run
    assert find_run(deep, ["nothing.json"]) is None


@pytest.mark.parametrize("family, marker", [(f, m) for f, markers in families.LEGACY_MARKERS for m in markers])
def test_legacy_runs_are_recognised_by_their_files(tmp_path, family, marker):
    (tmp_path / "run" / "models").mkdir(parents=True)
    (tmp_path / "run" / marker).write_text("{}")
    (tmp_path / "run" / "models" / "m.h5").write_bytes(b"")
    assert legacy_family(tmp_path / "run" / "models" / "m.h5") == family
    assert legacy_family(tmp_path / "run") == family


def test_a_folder_without_markers_is_the_default_family_and_the_nearest_marker_wins(tmp_path):
    assert legacy_family(tmp_path) == families.DEFAULT_FAMILY
    first, second = families.LEGACY_MARKERS[:2]
    inner = tmp_path / "outer" / "inner"
    inner.mkdir(parents=True)
    (tmp_path / "outer" / first[1][0]).write_text("{}")  # the first family's marker, one folder up
    (inner / second[1][0]).write_text("{}")  # the second family's, nearer
    assert legacy_family(inner) == second[0]


def test_find_manifest_uses_the_one_walk(tmp_path):
    write_manifest(tmp_path, families.DEFAULT_FAMILY, {}, ["a", "b"])
    (tmp_path / "models").mkdir()
    assert find_manifest(tmp_path / "models" / "x.h5") == tmp_path / "run.json"


@pytest.mark.parametrize("family", families.FAMILIES)
def test_every_family_declares_what_the_facade_reads(family):
    module = families.module(family, "predict")
    for name, default in P.CAPABILITIES.items():
        value = getattr(module, name)
        assert type(value) is type(default), (family, name)


@pytest.mark.parametrize("family", families.FAMILIES)
def test_every_family_has_the_same_entry_point_names(family):
    assert callable(families.module(family, "train").train)
    assert callable(families.module(family, "predict").evaluate)
    assert callable(families.module(family, "predict").predict_run)


def test_what_differs_between_families_is_declared_not_named():
    speech = {f for f in families.FAMILIES if P.capability(f, "SPEECH_CHECK")}
    windows = {f for f in families.FAMILIES if P.capability(f, "WINDOWS")}
    folder = {f for f in families.FAMILIES if P.capability(f, "FOLDER_SPEAKERS")}
    images = {f for f in families.FAMILIES if "images" in P.capability(f, "PREDICT_OPTIONS")}
    assert speech == windows == set(families.FAMILIES) - {"hf"}
    assert folder == images == {"cnnrnn"}
    assert P.capability(P.EXPORTED, "PREDICT_OPTIONS") >= {"labels", "batch_size", "speaker"}
    assert not P.capability(P.EXPORTED, "FOLDER_SPEAKERS")


def test_options_a_family_does_not_take_are_refused_naming_option_and_family():
    from cnnrnn.normalize import SPEAKER_FROM_FOLDER

    with pytest.raises(P.OptionError, match=r"'batchsize' \(--batchsize\) does not apply to cnnrnn runs"):
        P.check_options(["cnnrnn"], {"batchsize": 8})  # misspelled
    with pytest.raises(P.OptionError, match=r"'images' \(--images\) does not apply to dcnn runs"):
        P.check_options(["dcnn"], {"images": True})
    with pytest.raises(P.OptionError, match="'threshold' .* does not apply to functionals runs"):
        P.check_options(["hf", "functionals"], {"threshold": 0.5, "labels": None})  # every run of a fusion
    with pytest.raises(P.OptionError, match="--speaker-from folder: baselines runs"):
        P.check_options(["baselines"], {"speaker": SPEAKER_FROM_FOLDER})
    # what the command line passes when nothing is set: None, False
    names = set().union(*(P.capability(f, "PREDICT_OPTIONS") for f in families.FAMILIES))
    P.check_options(list(families.FAMILIES) + [P.EXPORTED], {name: None for name in names})
    P.check_options(["dcnn"], {"images": False, "resize": None, "batch_size": 8, "speaker": "s1"})
    P.check_options(["cnnrnn"], {"speaker": SPEAKER_FROM_FOLDER, "images": True, "render": "fast"})
    assert issubclass(P.OptionError, TypeError) and issubclass(P.OptionError, ValueError)


def _functionals_run(folder):
    write_manifest(folder, "functionals", {}, ["a", "b"])
    return folder


def test_predict_refuses_an_option_before_any_work(tmp_path):
    run = _functionals_run(tmp_path / "run")
    with pytest.raises(P.OptionError, match="'batch_size' .* functionals runs .*they take: labels, speaker"):
        P.predict(run, tmp_path / "none.wav", progress=False, batch_size=4)
    with pytest.raises(P.OptionError, match="'bach_size' .* does not apply to functionals runs"):
        P.predict(run, tmp_path / "none.wav", progress=False, bach_size=4)
    assert sorted(p.name for p in run.iterdir()) == ["run.json"]


def test_the_command_line_says_it_in_one_line(tmp_path, caplog):
    run = _functionals_run(tmp_path / "run")
    assert cli.main(["-q", "predict", "--model", str(run), "--input", str(tmp_path), "--render", "fast"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == ["option 'render' (--render) does not apply to functionals runs (they take: labels, speaker)"]


def test_window_is_refused_for_a_family_that_does_not_declare_windows(tmp_path):
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")
    resolved = [("hf", None)]
    assert P.window_plan(wav, [tmp_path], resolved, None, None) is None
    with pytest.raises(ValueError, match="hf runs are not predicted in audio windows"):
        P.window_plan(wav, [tmp_path], resolved, 2.0, None)


def test_old_names_warn_and_call_the_new_ones(monkeypatch, tmp_path):
    from cnnrnn.cnnrnn import predict as cnnrnn_predict
    from cnnrnn.functionals import predict as functionals_predict
    from cnnrnn.functionals import train as functionals_train

    monkeypatch.setattr(cnnrnn_predict, "evaluate", lambda *a: ("evaluate", a))
    with pytest.warns(DeprecationWarning, match="cnnrnn.cnnrnn.predict.evaluate"):
        assert cnnrnn_predict.test(tmp_path, None, False) == ("evaluate", (tmp_path, None, False))
    monkeypatch.setattr(functionals_predict, "evaluate", lambda *a: ("evaluate", a))
    with pytest.warns(DeprecationWarning, match="cnnrnn.functionals.predict.evaluate"):
        assert functionals_train.evaluate(tmp_path)[0] == "evaluate"
    from cnnrnn.baselines import predict as baselines_predict
    from cnnrnn.baselines import train as baselines_train

    monkeypatch.setattr(baselines_predict, "evaluate", lambda *a: ("evaluate", a))
    with pytest.warns(DeprecationWarning, match="cnnrnn.baselines.predict.evaluate"):
        assert baselines_train.evaluate(tmp_path)[0] == "evaluate"


def test_hf_train_is_train_fold(monkeypatch):
    from cnnrnn.hf import train as hf_train

    monkeypatch.setattr(hf_train, "train_fold", lambda *a, **k: (a, k))
    args, kwargs = hf_train.train([1], "cfg", "out", labels=["a"])
    assert args == ([1], "cfg", "out") and kwargs["labels"] == ["a"] and kwargs["progress"] is True


def test_baselines_is_the_command_and_baseline_an_alias_with_a_note(tmp_path, capsys):
    missing = str(tmp_path / "missing")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the note is a line on stderr, not a Python warning
        assert cli.main(["-q", "baselines", "evaluate", "--run", missing]) == 2
        assert "deprecated" not in capsys.readouterr().err
        assert cli.main(["-q", "baseline", "evaluate", "--run", missing]) == 2
    err = capsys.readouterr().err
    assert "note: 'cnnrnn baseline' is deprecated; use 'cnnrnn baselines'" in err
    with pytest.raises(SystemExit):
        cli.main(["baselines", "--help"])
    assert "usage: cnnrnn baselines" in capsys.readouterr().out


def test_evaluate_is_the_cnnrnn_stage_5_command(tmp_path, caplog):
    assert cli.main(["-q", "evaluate", "--out", str(tmp_path / "nowhere")]) == 2  # no run there: one clear line
    assert [r.levelname for r in caplog.records if r.levelname == "ERROR"] == ["ERROR"]
