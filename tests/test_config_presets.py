"""The shipped presets state only what differs from what they extend, old key names load to the same settings,
unknown keys are refused with close matches, the one loader / override take every family's configs, and the
hold-out rule and split words are the same for every family."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from cnnrnn import config as C
from cnnrnn.baselines.config import BaselineConfig, load_baseline_config
from cnnrnn.cnnrnn.config import CnnrnnConfig, load_config
from cnnrnn.dcnn.config import DcnnConfig
from cnnrnn.functionals.config import FunctionalsConfig, load_functionals_config
from cnnrnn.hf.config import HFConfig
from cnnrnn.splits import SplitError, holdout_indices, holdout_split

FAMILIES = {"cnnrnn": CnnrnnConfig, "dcnn": DcnnConfig, "baselines": BaselineConfig,
            "functionals": FunctionalsConfig, "hf": HFConfig}
PRESETS = [(family, name) for family in FAMILIES for name in C.list_presets(family)]


def _effective(cls, family: str, data: dict, folder) -> dict:
    path = folder / "preset.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return dataclasses.asdict(C.load(cls, path, family=family))


@pytest.mark.parametrize("family,name", PRESETS)
def test_a_preset_states_only_what_differs_from_its_parent_and_the_defaults(family, name, tmp_path):
    cls = FAMILIES[family]
    raw = json.loads(C.preset_path(family, name).read_text(encoding="utf-8"))
    whole = _effective(cls, family, raw, tmp_path)
    sectioned = C.is_sectioned(cls)
    restated = []
    for section, values in raw.items():
        if section in ("description", "extends"):
            continue
        for key in (values if sectioned else [None]):
            less = json.loads(json.dumps(raw))
            if sectioned:
                del less[section][key]
            else:
                del less[section]
            try:
                same = _effective(cls, family, less, tmp_path) == whole
            except C.ConfigError:  # the key is needed (e.g. a size that must agree with another one)
                same = False
            if same:
                restated.append(f"{section}.{key}" if sectioned else section)
    assert not restated, f"{family}/{name} restates values it would have anyway: {restated}"


def test_old_split_keys_load_to_the_same_settings():
    old = load_config({"train": {"group_by_speaker": True}})
    assert old.train.fold_scheme == "speaker" and old.train.group_by_speaker
    assert load_config({"train": {"group_by_speaker": False}}) == load_config({})
    assert "group_by_speaker" not in old.to_dict()["train"]  # written back with the current names
    assert C.override(load_config("compact"), {"train.group_by_speaker": False}).train.fold_scheme == "stratified"
    with pytest.raises(C.ConfigError, match="train.group_by_speaker"):
        load_config({"train": {"group_by_speaker": "yes"}})
    with pytest.raises(C.ConfigError, match="old name"):
        load_config({"train": {"group_by_speaker": True, "fold_scheme": "speaker"}})

    base = load_baseline_config({"model": "ann", "split": "speaker", "val_size": 0.25, "holdout_speaker": "a"})
    assert (base.scheme, base.test_size, base.split, base.val_size) == ("speaker", 0.25, "speaker", 0.25)
    assert load_baseline_config("tiny_ann", split="speaker").scheme == "speaker"
    func = load_functionals_config({"split": "random"})
    assert (func.scheme, func.split) == ("random", "random")
    assert load_functionals_config("tiny", split="random") == load_functionals_config("tiny", scheme="random")


def test_unknown_keys_are_refused_with_close_matches():
    with pytest.raises(C.ConfigError, match=r"unknown key\(s\) \['epoch'\] in section 'train' \('epoch': did you "
                                            r"mean 'epochs'\?\)"):
        load_config({"train": {"epoch": 3}})
    with pytest.raises(C.ConfigError, match="did you mean 'spectrogram'"):
        load_config({"spectrogam": {}})
    with pytest.raises(C.ConfigError, match="did you mean 'learning_rate'"):
        load_baseline_config("tiny_ann", learning_rte=1e-3)
    with pytest.raises(C.ConfigError, match="did you mean 'epochs'"):
        C.override(load_config("tiny"), {"train.epoch": 3})
    with pytest.raises(C.ConfigError, match="unknown; give section.epoch.*did you mean 'epochs'"):
        C.override(load_config("tiny"), {"epoch": 3})
    with pytest.raises(C.ConfigError, match="did you mean 'kernel'"):
        load_functionals_config("tiny", kernal="rbf")


def test_one_loader_with_overrides_none_is_not_given_and_null_sets_null():
    values = {"train.epochs": 3, "split.scheme": "speaker", "train.speed_perturb": [0.9, 1.1], "train.folds": None}
    cfg = C.load(CnnrnnConfig, "tiny", family="cnnrnn", overrides=values)
    assert (cfg.train.epochs, cfg.split.scheme, cfg.train.speed_perturb, cfg.train.folds) == (3, "speaker",
                                                                                            [0.9, 1.1], 2)
    assert C.load(CnnrnnConfig, "tiny", family="cnnrnn", overrides={"train.epochs": None}) == load_config("tiny")
    assert C.override(load_config("yamnet"), {"train.crop_width": C.NULL}).train.crop_width is None
    assert load_functionals_config("egemaps_rbf", sr=16000).sr == 16000
    assert load_functionals_config("egemaps_rbf", sr=C.NULL).sr is None


def test_the_hold_out_rule_is_one_for_every_family():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    speakers = [f"s{i % 6}" for i in range(60)]
    sessions = [f"S{i % 2}" for i in range(60)]
    train, test, spec, stratified = holdout_indices(y, speakers, sessions, scheme="session", test_size=0.2, seed=1)
    assert spec["scheme"] == "session" and set(stratified) == {"S0", "S1"}
    assert sorted([*train, *test]) == list(range(60)) and len(test) == 12
    # random = session over one session; speaker = whole speakers held out
    r_train, r_test, r_spec = holdout_split(y, speakers, scheme="random", test_size=0.2, seed=1)
    i_train, i_test, _, _ = holdout_indices(y, scheme="random", test_size=0.2, seed=1)
    assert np.array_equal(r_test, np.sort(i_test)) and r_spec["stratified"] is True
    s_train, s_test, s_spec = holdout_split(y, speakers, scheme="speaker", test_size=0.2, seed=1)
    assert not {speakers[i] for i in s_train} & {speakers[i] for i in s_test} and s_spec["scheme"] == "speaker"
    _, h_test, h_spec = holdout_split(y, speakers, scheme="speaker", holdout_speaker="s3")
    assert {speakers[i] for i in h_test} == {"s3"} and h_spec["holdout_speaker"] == "s3"
    with pytest.raises(SplitError, match="hold-out scheme"):
        holdout_indices(y, scheme="loso")


def test_every_family_names_its_split_choices_with_the_words_of_cnnrnn_splits():
    from cnnrnn.baselines.config import SPLITS as BASELINE_SCHEMES
    from cnnrnn.cnnrnn.config import CV_FOLD_SCHEMES
    from cnnrnn.functionals.config import SPLITS as FUNCTIONALS_SCHEMES
    from cnnrnn.hf.config import FOLD_SCHEMES as HF_FOLD_SCHEMES
    from cnnrnn.splits import FOLD_SCHEMES, HOLDOUT_SCHEMES, SCHEMES

    assert HF_FOLD_SCHEMES == FOLD_SCHEMES and set(CV_FOLD_SCHEMES) <= set(FOLD_SCHEMES) <= set(SCHEMES)
    assert set(BASELINE_SCHEMES) == set(FUNCTIONALS_SCHEMES) <= set(HOLDOUT_SCHEMES)
    assert {load_config().split.scheme, load_baseline_config().scheme, load_functionals_config().scheme} <= \
        set(HOLDOUT_SCHEMES)
