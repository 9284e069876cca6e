"""The spectrogram CNN baseline's recipe preset (``cnn_recipe``: ``cnn`` + speaker normalisation + SpecAugment),
config ``extends`` for the flat baselines config, and the FSDD benchmark's model keys (benchmarks/baselines.py)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from cnnrnn.baselines.config import BaselineConfigError, load_baseline_config

RECIPE = {"normalization": "speaker", "freq_masks": 2, "freq_mask_width": 8, "time_masks": 2, "time_mask_width": 16}


def _differences(a, b) -> dict:
    return {k: v for k, v in b.to_dict().items() if a.to_dict()[k] != v}


def test_cnn_recipe_is_the_cnn_preset_plus_speaker_norm_and_specaugment():
    cnn, recipe = load_baseline_config("cnn"), load_baseline_config("cnn_recipe", model="cnn")
    assert {k: getattr(recipe, k) for k in RECIPE} == RECIPE
    # the mask widths equal the dataclass defaults, so only these keys differ from the plain preset
    assert _differences(cnn, recipe) == {"normalization": "speaker", "freq_masks": 2, "time_masks": 2}
    assert recipe.spec_augment() == {"freq_masks": 2, "freq_width": 8, "time_masks": 2, "time_width": 16,
                                     "seed": cnn.seed}
    assert recipe.input_spec()["normalization"] == "speaker" and recipe.input_shape == (128, 173, 1)


def test_a_flat_baseline_file_extends_a_preset_and_refuses_an_unknown_parent(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"extends": "cnn_recipe", "description": "no speaker statistics",
                                "normalization": "utterance", "epochs": 2}), encoding="utf-8")
    cfg = load_baseline_config(path)
    assert _differences(load_baseline_config("cnn_recipe"), cfg) == {"normalization": "utterance", "epochs": 2}
    path.write_text(json.dumps({"extends": "no_such_preset", "epochs": 2}), encoding="utf-8")
    with pytest.raises(BaselineConfigError, match="no_such_preset"):
        load_baseline_config(path)


def test_fsdd_benchmark_model_keys_map_to_loadable_presets():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "baselines.py"
    spec = importlib.util.spec_from_file_location("bench_baselines", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    configs = {key: load_baseline_config(preset, **fixed) for key, (preset, fixed) in bench.MODELS.items()}
    assert {"ann", "cnn", "cnn_recipe", "cnn_specaug"} <= set(configs)
    assert configs["cnn_recipe"].to_dict() == load_baseline_config("cnn_recipe").to_dict()
    # the figure without the transductive speaker statistics: the same recipe, the tutorial's scaling
    assert _differences(configs["cnn_recipe"], configs["cnn_specaug"]) == {"normalization": "none"}
