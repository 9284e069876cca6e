"""Hugging Face TF models (cnnrnn.hf, `cnnrnn hf`): tiny random RoBERTa + wav2vec2 saved to a folder and loaded
back by path, trained one step on real EmoDB speech in the KEMDy20 layout."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import write_wav

from cnnrnn import config as C
from cnnrnn.cli import main as cli_main
from cnnrnn.evaluation import classification_metrics
from cnnrnn.hf.backbones import HFModelError, build_tiny_backbones, load_text_backbone, resolve_model
from cnnrnn.hf.config import HFConfig, load_config
from cnnrnn.hf.data import (HFDataError, HFRecord, encode_texts, fold_split, load_speech, read_new_data,
                            read_records, receptive_field, split_spec)
from cnnrnn.hf.metrics import concordance_cc, multilabel_metrics, regression_metrics, top_label_codes
from cnnrnn.hf.models import HFCheckpointError, HFModel, ModelSpec, class_balanced_weights, emotion_loss
from cnnrnn.hf.predict import evaluate, load_checkpoint
from cnnrnn.hf.train import train_fold
from cnnrnn.runs import MANIFEST_FILE, read_manifest
from cnnrnn.splits import SplitError

N_RECORDS = 12  # a dozen utterances: fold 1 of 5 contiguous folds tests on records 2-4


@pytest.fixture(scope="session")
def sample_records(sample_dir):
    return read_records(root=sample_dir)[0]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory, sample_records):
    """Tiny random RoBERTa (tokenizer trained on the sample's transcripts) and wav2vec2, saved like real checkpoints."""
    return build_tiny_backbones(tmp_path_factory.mktemp("backbones"), [r.text for r in sample_records if r.text])


@pytest.fixture(scope="module")
def kemdy_table(tmp_path_factory, sample_dir):
    """``new_data.csv`` of the bundled KEMDy20-layout sample, written by ``cnnrnn kemdy-labels`` (105 records)."""
    from cnnrnn.corpora.kemdy_labels import process_labels

    table = tmp_path_factory.mktemp("kemdy") / "new_data.csv"
    process_labels("kemdy20", sample_dir, table)
    return table


def _cfg(tiny, model: dict | None = None, **train) -> HFConfig:
    """A 1-epoch config on the tiny backbones, testing on fold 1."""
    return load_config({"model": {"text_model": str(tiny[0]), "speech_model": str(tiny[1]), **(model or {})},
                        "train": {"epochs": 1, "batch_size": N_RECORDS, "valid_batch_size": 4, "fold": 1,
                                  "eager": True, **train}})


# The combinations that exercise distinct code (not the 12 of the full product: a task only picks the head's
# outputs, loss and metrics, a modality only the backbones, inputs and checkpoint folders, and the fusion only the
# multimodal head): every modality, every task, both fusions, both wav2vec2 poolings (``mean`` for regression,
# ``last_cnn`` otherwise) and the graph path (text classification) each run at least once, with speech both alone
# and fused, and regression both alone and with classification.
COMBOS = [("text", "classification", "concat"), ("speech", "regression", "concat"),
          ("speech", "classification", "concat"), ("multimodal", "total", "concat"),
          ("multimodal", "classification", "add"), ("multimodal", "regression", "add")]


@pytest.mark.parametrize("modality,task,fusion", COMBOS)
def test_every_combination_trains_evaluates_and_predicts(tmp_path, tiny, sample_records, modality, task, fusion):
    records = sample_records[:N_RECORDS]
    pooling = "mean" if task == "regression" else "last_cnn"
    model = dict(task=task, modality=modality, fusion=fusion, max_len=32, max_seconds=2.0, speech_pooling=pooling,
                 proj_dim=16)
    graph = modality == "text" and task == "classification"  # one run through the default tf.function path
    cfg = _cfg(tiny, model, eager=not graph)
    metrics = train_fold(records, cfg, tmp_path, progress=False)
    test = [records[i] for i in fold_split(records, split_spec(cfg.train))[1]]
    assert [r.id for r in test] == [r.id for r in records[2:5]]

    assert metrics["n"] == 3 and metrics["n_train"] == N_RECORDS - 3
    ck = tmp_path / "checkpoint"
    assert (ck / "head.h5").is_file() and (ck / "hf_model.json").is_file()
    assert (ck / "text" / "config.json").is_file() == (modality != "speech")
    assert (ck / "speech" / "preprocessor_config.json").is_file() == (modality != "text")
    assert len(pd.read_csv(tmp_path / "history.csv")) == 1
    manifest = read_manifest(tmp_path, families=["hf"])
    assert manifest.labels == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert manifest.split == {"scheme": "contiguous", "folds": 5, "fold": 1, "seed": None}
    assert manifest.input == {"sr": 16000, "max_len": 32, "max_seconds": 2.0, "modality": modality}
    assert manifest.checkpoint_paths() == [tmp_path / "checkpoint"] and manifest.config["model"]["task"] == task
    if task != "regression":
        assert {"accuracy", "balanced_accuracy", "f1_micro", "f1_macro"} <= set(metrics["emotion"])
        assert metrics["ua"] == metrics["emotion"]["ua"] and metrics["family"] == "hf"  # the shared keys
        assert (tmp_path / "confusion_matrix.png").is_file()
    if task != "classification":
        reg = metrics["regression"]
        assert reg["mse"] > 0 and -1 <= reg["ccc"] <= 1 and set(reg["valence"]) == {"mse", "pearson_r", "ccc"}

    # The checkpoint loads back by path and predicts exactly what the trained model predicted.
    before = pd.read_csv(tmp_path / "predictions.csv")
    reloaded = evaluate(load_checkpoint(ck, task=task, modality=modality), test, tmp_path / "again", 2)
    after = pd.read_csv(tmp_path / "again" / "predictions.csv")
    assert list(after["id"]) == [r.id for r in test] == list(before["id"])
    numeric = [c for c in before.columns if c.startswith("p_") or c.endswith("_pred")]
    assert numeric and np.allclose(before[numeric], after[numeric], atol=1e-5)
    assert reloaded["task"] == task and reloaded["modality"] == modality


def test_hierarchical_two_stage_classifier_with_focal_loss(tmp_path, tiny, sample_records):
    model = dict(task="classification", modality="text", max_len=32, proj_dim=16)
    metrics = train_fold(sample_records[:N_RECORDS], _cfg(tiny, model, hierarchical=True, loss="focal",
                                                          label_mode="single"), tmp_path, progress=False)
    ck = tmp_path / "checkpoint"
    assert json.loads((ck / "hf_model.json").read_text())["kind"] == "hierarchical"
    assert json.loads((ck / "neutral" / "hf_model.json").read_text())["spec"]["labels"] == ["neutral", "other"]
    assert "neutral" not in json.loads((ck / "rest" / "hf_model.json").read_text())["spec"]["labels"]
    table = pd.read_csv(tmp_path / "predictions.csv")
    probs = table[[f"p_{lab}" for lab in metrics["labels"]]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)  # P(neutral) + (1 - P(neutral)) * softmax(rest)
    assert set(pd.read_csv(tmp_path / "history.csv")["stage"]) == {"neutral", "rest"}
    with pytest.raises(ValueError, match="classification only"):
        train_fold(sample_records[:N_RECORDS], _cfg(tiny, {"task": "regression"}, hierarchical=True), tmp_path)


def test_losses_take_logits_and_class_balanced_weights_favour_rare_classes():
    import tensorflow as tf

    targets = np.array([[1, 0, 0]] * 8 + [[0, 1, 0]] * 2 + [[0, 0, 1]], dtype=np.float32)
    w = class_balanced_weights(targets)
    assert w[0] < w[1] < w[2] and np.isclose(w.mean(), 1.0)
    y = tf.constant([[0.0, 1.0, 0.0]])
    confident = tf.constant([[-8.0, 8.0, -8.0]])
    for kind in ("plain", "focal", "class_balanced"):
        for multilabel in (False, True):
            loss = emotion_loss(kind, multilabel, targets)
            assert float(tf.reduce_mean(loss(y, confident))) < 1e-3  # logits, not probabilities
            assert float(tf.reduce_mean(loss(y, -confident))) > 1.0
    bce = emotion_loss("plain", True, targets)(y, tf.constant([[0.0, 0.0, 0.0]]))
    assert np.isclose(float(bce), np.log(2.0), atol=1e-5)  # sigmoid(0) = 0.5 for each label
    with pytest.raises(ValueError, match="not one of"):
        emotion_loss("hinge", False, targets)


def test_metrics_multilabel_and_regression():
    targets = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1]], dtype=np.float32)
    probs = np.array([[0.9, 0.1, 0.0], [0.1, 0.2, 0.7], [0.6, 0.1, 0.3]])
    y_true = top_label_codes(targets, probs)
    assert list(y_true) == [0, 2, 2]  # a top-1 that is one of the tied labels counts
    assert classification_metrics(y_true, probs.argmax(axis=1), 3)["accuracy"] == pytest.approx(2 / 3)
    m = multilabel_metrics(targets, probs, threshold=0.5)
    assert m["subset_accuracy"] == pytest.approx(1 / 3)
    assert m["f1_micro"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))  # tp=2, fp=1, fn=2
    y = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 3.0], [4.0, 5.0]])
    assert regression_metrics(y, y)["ccc"] == pytest.approx(1.0)
    shifted = regression_metrics(y, y + 1.0)
    assert shifted["pearson_r"] == pytest.approx(1.0) and shifted["ccc"] < 0.8 and shifted["mse"] == pytest.approx(1.0)
    assert regression_metrics(y, np.full_like(y, 3.0))["valence"]["pearson_r"] is None
    assert concordance_cc(np.array([1.0, 2.0]), np.array([2.0, 1.0])) == pytest.approx(-1.0)


def test_contiguous_and_stratified_folds_come_from_the_core_splitters():
    records = [HFRecord(str(i), "t", "a.wav", ["angry" if i < 12 else "sad"], speaker=f"s{i % 6}") for i in range(23)]
    contiguous = {"scheme": "contiguous", "folds": 5, "seed": None}
    tests = [fold_split(records, {**contiguous, "fold": k})[1] for k in range(5)]
    assert np.array_equal(np.concatenate(tests), np.arange(23))  # contiguous, non-overlapping, all covered
    assert [len(t) for t in tests] == [5, 4, 5, 4, 5]  # cnnrnn.splits.ContiguousFolds: [round(k n / 5), ...)
    stratified = split_spec(load_config({"train": {"fold_scheme": "stratified", "seed": 7, "fold": 2}}).train)
    assert stratified == {"scheme": "stratified", "folds": 5, "fold": 2, "seed": 7}
    train, test = fold_split(records, stratified)
    assert sorted(np.concatenate([train, test])) == list(range(23))
    assert [records[i].labels[0] for i in test].count("angry") in (2, 3)
    assert not np.array_equal(test, fold_split(records, {**stratified, "seed": 8})[1])  # the seed is used
    speaker = fold_split(records, {"scheme": "speaker", "folds": 3, "fold": 0, "seed": 7})
    assert not {records[i].speaker for i in speaker[0]} & {records[i].speaker for i in speaker[1]}
    with pytest.raises(SplitError, match="fold 5 does not exist"):
        fold_split(records, {**contiguous, "fold": 5})


def test_config_presets_aliases_and_bad_values():
    assert load_config() == HFConfig() == load_config("default")  # the preset restates the dataclass defaults
    assert C.list_presets("hf") == ["default", "etri_multimodal", "etri_recognition_multimodal", "multimodal_whisper", "tiny",
                                    "whisper"]
    tiny = load_config("tiny")
    assert tiny.train.epochs == 1 and tiny.train.eager and tiny.model.max_len == 32
    old = load_config({"train": {"lr": 5e-4, "n_folds": 4, "fold": 3}})
    assert old.train.learning_rate == 5e-4 and old.train.folds == 4
    assert C.to_dict(old)["train"]["learning_rate"] == 5e-4 and "lr" not in C.to_dict(old)["train"]
    assert C.override(old, {"lr": 1e-3, "fold_scheme": "stratified", "epochs": None}).train.learning_rate == 1e-3
    for bad, match in [({"model": {"task": "ranking"}}, "model.task"), ({"train": {"fold": 5}}, "outside 0..4"),
                       ({"train": {"epocs": 1}}, "unknown key"), ({"train": {"epochs": "3"}}, "train.epochs"),
                       ({"train": {"fold_scheme": "loso"}}, "fold_scheme"), ({"data": {"corpus": "emodb"}}, "corpus")]:
        with pytest.raises(C.ConfigError, match=match):
            load_config(bad)
    spec = ModelSpec.from_config(tiny.model, ["a", "b"], multilabel=True)
    assert spec.max_len == 32 and spec.labels == ["a", "b"] and spec.multilabel
    assert ModelSpec(**{k: v for k, v in spec.to_dict().items() if k not in ("text_model", "speech_model")}) \
        == ModelSpec(**{**spec.to_dict(), "text_model": "klue/roberta-base",
                        "speech_model": "facebook/wav2vec2-base-960h"})  # an hf_model.json of before loads


def test_long_transcript_is_truncated_to_max_len(tiny, sample_records):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny[0]), local_files_only=True)
    long_text = " ".join(r.text for r in sample_records) * 3
    enc = encode_texts(tok, [long_text, "kurz"], max_len=16)
    assert enc["input_ids"].shape == (2, 16) and enc["input_ids"].dtype == np.int32
    assert enc["attention_mask"][0].all() and enc["input_ids"][0, -1] == tok.eos_token_id
    assert enc["attention_mask"][1].sum() < 16 and (enc["input_ids"][1][enc["attention_mask"][1] == 0] == 1).all()

    with pytest.raises(HFModelError, match="--max_len 300 exceeds"):  # the tiny RoBERTa has 256 positions
        HFModel(ModelSpec(modality="text", max_len=300), tiny[0], None)


def test_long_audio_is_cut_and_too_short_audio_is_a_counted_skip(tmp_path, tiny, real_waveform, sample_records):
    from transformers import AutoConfig, AutoFeatureExtractor

    from cnnrnn.audio import AudioError

    y, sr = real_waveform
    assert receptive_field(AutoConfig.from_pretrained(str(tiny[1]))) == 400  # wav2vec2-base's conv stack
    fe = AutoFeatureExtractor.from_pretrained(str(tiny[1]))
    long_wav = write_wav(tmp_path / "long.wav", np.tile(y, int(np.ceil(7 * sr / len(y)))), sr)
    x = load_speech(long_wav, fe, 400, max_seconds=5.0)
    assert x.shape == (80000,) and abs(float(x.mean())) < 1e-3  # 16 kHz x 5 s, normalised
    short = write_wav(tmp_path / "short.wav", y[4000:4300], sr)
    with pytest.raises(AudioError, match="receptive field") as err:
        load_speech(short, fe, 400, 5.0)
    assert err.value.reason == "too_short"
    assert load_speech(write_wav(tmp_path / "ok.wav", y[4000:4400], sr), fe, 400, 5.0).shape == (400,)

    from cnnrnn.corpora import CorpusReport

    model = HFModel(ModelSpec(modality="speech", labels=["neutral", "sad"], proj_dim=8), None, tiny[1])
    recs = [HFRecord("long", None, str(long_wav), ["sad"]), HFRecord("short", None, str(short), ["sad"]),
            HFRecord("gone", None, str(tmp_path / "missing.wav"), ["sad"])]
    report = CorpusReport("t", "")
    prepared = model.prepare(recs, report)
    assert [r.id for r in prepared.records] == ["long"]
    assert report.skipped == {"audio_too_short": ["short"], "audio_missing": ["gone"]}


def test_model_folder_without_config_json_and_uncached_hub_name(tmp_path, sample_dir, caplog):
    empty = tmp_path / "my_model"
    empty.mkdir()
    with pytest.raises(HFModelError, match="no config.json"):
        resolve_model(empty)
    with pytest.raises(HFModelError, match="huggingface-cli download cnnrnn-test/not-a-model") as err:
        resolve_model("cnnrnn-test/not-a-model")
    assert "--text-model models/not-a-model" in str(err.value)
    code = cli_main(["-q", "hf", "train", "--root", str(sample_dir), "--text-model", str(empty), "--out",
                     str(tmp_path / "o")])
    assert code == 2 and "no config.json" in caplog.text
    assert not (tmp_path / "o" / "checkpoint").exists()


def test_pytorch_safetensors_load_into_tf_without_torch(tmp_path, tiny):
    """A PyTorch-format model.safetensors (PT names and layouts, metadata format=pt) loads into TF."""
    from safetensors.numpy import save_file
    from transformers.modeling_tf_pytorch_utils import apply_transpose, convert_tf_weight_name_to_pt_weight_name

    tf_model, tok = load_text_backbone(tiny[0])
    state = {}
    for var in tf_model.weights:
        name, transpose = convert_tf_weight_name_to_pt_weight_name(
            var.name, start_prefix_to_remove=tf_model.base_model_prefix + ".", tf_weight_shape=var.shape)
        state[name] = np.ascontiguousarray(apply_transpose(transpose, var.numpy(), pt_to_tf=False))
    pt_dir = tmp_path / "pt_roberta"
    shutil.copytree(tiny[0], pt_dir, ignore=shutil.ignore_patterns("tf_model.h5"))
    save_file(state, str(pt_dir / "model.safetensors"), metadata={"format": "pt"})
    pt_model, _ = load_text_backbone(pt_dir)
    ids = encode_texts(tok, ["Der Lappen liegt auf dem Eisschrank."], 16)
    a = tf_model(**ids).last_hidden_state.numpy()
    b = pt_model(**ids).last_hidden_state.numpy()
    assert np.allclose(a, b, atol=1e-5)

    only_bin = tmp_path / "only_bin"
    shutil.copytree(tiny[0], only_bin, ignore=shutil.ignore_patterns("tf_model.h5"))
    (only_bin / "pytorch_model.bin").write_bytes(b"\0")
    with pytest.raises(HFModelError, match="need torch"):
        load_text_backbone(only_bin)


def test_speech_backbone_loads_with_layerdrop_off(tmp_path, tiny):
    from cnnrnn.hf.backbones import load_speech_backbone

    folder = shutil.copytree(tiny[1], tmp_path / "w2v")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "layerdrop": 0.1}))
    model, extractor = load_speech_backbone(folder)
    assert model.config.layerdrop == 0.0 and extractor.sampling_rate == 16000
    text_as_speech = shutil.copytree(tiny[0], tmp_path / "roberta")
    with pytest.raises(HFModelError, match="not a wav2vec2-style"):
        load_speech_backbone(text_as_speech)


def test_new_data_csv_rows_with_unknown_labels_are_counted_skips(tmp_path, sample_records):
    table = tmp_path / "new_data.csv"
    rows = [[r.id, r.session, r.speaker, r.text, r.audio_path, ";".join(r.labels), r.labels[-1], r.valence, r.arousal]
            for r in sample_records[:3]]
    rows += [["x1", "Session01", "User001M", "hallo", "wav/x1.wav", "joy", "joy", 3, 3],
             ["x2", "Session01", "User001M", "", "wav/x2.wav", "", "", 3, 3],
             ["x3", "Session01", "User001M", "hallo", "wav/x3.wav", "disqust", "Disqust", 2, 4]]
    pd.DataFrame(rows, columns=["segment_id", "session", "speaker", "text", "wav_path", "emotion_raw",
                                "emotion_weighted", "valence", "arousal"]).to_csv(table, index=False)
    records, report = read_new_data(table)
    assert report.skipped == {"unknown_label": ["x1"], "no_label": ["x2"]} and report.n_kept == 4
    assert records[-1].labels == ["disgust"]  # canonical spelling (the corpus writes disqust)
    assert records[-1].audio_path == str(tmp_path / "wav" / "x3.wav")  # relative to the table
    with pytest.raises(HFDataError, match="missing column"):
        read_new_data(table, label_column="emotion_final")
    unlabelled, report = read_new_data(table, keep_unlabelled=True)  # for prediction of new data
    assert [r.id for r in unlabelled if not r.labels] == ["x2"] and report.skipped == {"unknown_label": ["x1"]}


def test_cli_train_predict_on_kemdy_labels_output_and_refuse_other_task(tmp_path, tiny, kemdy_table, caplog):
    table = kemdy_table
    records, _ = read_new_data(table)
    out = tmp_path / "run"
    args = ["-q", "hf", "train", "--config", "tiny", "--input", str(table), "--modality", "text", "--task",
            "classification", "--text-model", str(tiny[0]), "--batch-size", "32", "--loss", "class_balanced",
            "--fold", "4", "--folds", "5", "--out", str(out)]
    assert cli_main(args[:-6] + ["--folds", "stratified", "--fold-scheme", "contiguous", "--out", str(out)]) == 2
    assert "--folds stratified and --fold-scheme contiguous disagree" in caplog.text
    assert cli_main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["loss"] == "class_balanced" and metrics["n"] == len(records) // 5
    config = read_manifest(out).config  # the tiny preset, overridden by the options given
    assert config["model"]["max_len"] == 32 and config["train"]["epochs"] == 1 and config["train"]["batch_size"] == 32
    assert metrics["multilabel"] is any(len(r.labels) > 1 for r in records[: len(records) - metrics["n"]])

    pred = tmp_path / "pred"
    assert cli_main(["-q", "hf", "predict", "--checkpoint", str(out / "checkpoint"), "--input", str(table),
                     "--task", "classification", "--modality", "text", "--all", "--batch-size", "16",
                     "--out", str(pred)]) == 0
    table_out = pd.read_csv(pred / "predictions.csv")
    assert list(table_out["id"]) == [r.id for r in records]
    assert set(table_out["predicted"]) <= set(metrics["labels"]) and (pred / "confusion_matrix.png").is_file()
    with pytest.raises(HFCheckpointError, match="text classification checkpoint"):
        load_checkpoint(out / "checkpoint", task="regression")
    assert cli_main(["-q", "hf", "predict", "--checkpoint", str(out / "checkpoint"), "--input", str(table),
                     "--modality", "speech", "--out", str(pred)]) == 2
    assert "cannot be used for modality 'speech'" in caplog.text


def test_cli_multimodal_on_kemdy20_layout_corpus(tmp_path, tiny, shared_data):
    out = tmp_path / "mm"
    assert cli_main(["-q", "hf", "train", "--root", str(shared_data / "kemdy20-layout"), "--modality", "multimodal",
                     "--task", "total", "--fusion", "add", "--text-model", str(tiny[0]), "--speech-model",
                     str(tiny[1]), "--epochs", "1", "--batch_size", "400", "--valid_batch_size", "32",
                     "--max_len", "32", "--max-seconds", "0.5", "--proj-dim", "8", "--fold", "2", "--eager",
                     "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] + metrics["n_train"] >= 440 and metrics["n"] > 80  # 445 readable segments, fold 2 of 5
    assert metrics["emotion"]["n"] == metrics["n"] and metrics["regression"]["n"] == metrics["n"]


@pytest.fixture(scope="module")
def stratified_run(tmp_path_factory, tiny, kemdy_table):
    """A tiny text run trained with a non-default seed (7), stratified folds and fold 1, through the CLI
    (the option spellings of before the config: --folds SCHEME, --lr, --batch_size, --max_len)."""
    out = tmp_path_factory.mktemp("stratified") / "run"
    assert cli_main(["-q", "hf", "train", "--input", str(kemdy_table), "--modality", "text", "--text-model",
                     str(tiny[0]), "--epochs", "1", "--batch_size", "64", "--max_len", "16", "--proj-dim", "8",
                     "--lr", "5e-4", "--folds", "stratified", "--seed", "7", "--fold", "1", "--eager",
                     "--out", str(out)]) == 0
    return out


def test_hf_predict_scores_exactly_the_training_runs_test_records(tmp_path, stratified_run, kemdy_table):
    """Issue 10: `hf predict` rebuilt the test fold with 5 contiguous folds and seed 42 whatever the run used,
    so it scored training records. The fold, scheme, folds and seed now come from the run's run.json."""
    trained = list(pd.read_csv(stratified_run / "predictions.csv")["id"])
    pred = tmp_path / "pred"
    assert cli_main(["-q", "hf", "predict", "--checkpoint", str(stratified_run / "checkpoint"), "--input",
                     str(kemdy_table), "--out", str(pred)]) == 0
    assert list(pd.read_csv(pred / "predictions.csv")["id"]) == trained and len(trained) == 21

    manifest = read_manifest(stratified_run, families=["hf"])
    assert manifest.split == {"scheme": "stratified", "folds": 5, "fold": 1, "seed": 7}
    assert manifest.config["train"]["learning_rate"] == 5e-4 and manifest.config["model"]["max_len"] == 16
    assert manifest.checkpoints == ["checkpoint"] and manifest.input["sr"] == 16000


def test_hf_predict_another_fold_warns_and_bad_manifests_are_refused(tmp_path, stratified_run, kemdy_table, caplog):
    import logging

    caplog.set_level(logging.WARNING)
    checkpoint = stratified_run / "checkpoint"
    trained = set(pd.read_csv(stratified_run / "predictions.csv")["id"])
    base = ["-q", "hf", "predict", "--checkpoint", str(checkpoint), "--input", str(kemdy_table), "--batch-size", "32"]
    assert cli_main(base + ["--out", str(tmp_path / "same"), "--fold", "1"]) == 0
    assert "training folds may be scored" not in caplog.text  # the run's own fold, given explicitly
    assert cli_main(base + ["--out", str(tmp_path / "other"), "--fold", "2"]) == 0
    assert "fold 2 (trained: 1)" in caplog.text and "records of the training folds may be scored" in caplog.text
    other = set(pd.read_csv(tmp_path / "other" / "predictions.csv")["id"])
    assert other and not other & trained  # fold 2 of the run's own split: disjoint from its fold 1
    caplog.clear()
    assert cli_main(base + ["--out", str(tmp_path / "seed"), "--seed", "8"]) == 0
    assert "seed 8 (trained: 7)" in caplog.text

    # A manifest of another family, or of a newer schema: a clear error naming the field.
    manifest = json.loads((stratified_run / MANIFEST_FILE).read_text())
    for field, value in (("family", "dcnn"), ("schema_version", 99)):
        copy = tmp_path / f"bad_{field}"
        shutil.copytree(stratified_run, copy)
        (copy / MANIFEST_FILE).write_text(json.dumps({**manifest, field: value}))
        caplog.clear()
        assert cli_main(["-q", "hf", "predict", "--checkpoint", str(copy / "checkpoint"), "--input",
                         str(kemdy_table), "--out", str(tmp_path / "x")]) == 2
        assert f"field '{field}'" in caplog.text

    # A checkpoint of before run manifests: fold 0 of 5 contiguous folds, as hf predict always assumed.
    old = tmp_path / "old"
    shutil.copytree(checkpoint, old / "checkpoint")
    assert cli_main(["-q", "hf", "predict", "--checkpoint", str(old / "checkpoint"), "--input", str(kemdy_table),
                     "--out", str(tmp_path / "old_pred")]) == 0
    records, _ = read_new_data(kemdy_table)
    assert list(pd.read_csv(tmp_path / "old_pred" / "predictions.csv")["id"]) == [r.id for r in records[:21]]


def test_cnnrnn_predict_any_family_takes_an_hf_run(tmp_path, stratified_run, kemdy_table):
    """`cnnrnn predict --model RUN` (the facade, cnnrnn.predict) hands an HF run to cnnrnn.hf.predict.predict_run:
    every record of --input is predicted and, the labels being known, scored."""
    out = tmp_path / "any"
    assert cli_main(["-q", "predict", "--model", str(stratified_run), "--input", str(kemdy_table),
                     "--out", str(out)]) == 0
    table = pd.read_csv(out / "predictions.csv")
    records, _ = read_new_data(kemdy_table)
    assert list(table["id"]) == [r.id for r in records]
    assert {"true", "predicted", "confidence", "p_neutral"} <= set(table.columns)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == len(records) and metrics["family"] == "hf" and 0 <= metrics["ua"] <= 1
    assert (out / "confusion_matrix.png").is_file()

    from cnnrnn.hf.predict import predict_run

    result = predict_run([stratified_run / "checkpoint"], kemdy_table)  # a checkpoint folder, no manifest given
    assert len(result["predictions"]) == len(records) and result["metrics"]["n"] == len(records)
    assert result["files"]["predictions"] == str(stratified_run / "predictions" / "predictions.csv")
    with pytest.raises(ValueError, match="new_data.csv"):
        predict_run([stratified_run], stratified_run / MANIFEST_FILE)
