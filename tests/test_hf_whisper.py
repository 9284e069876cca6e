"""The Whisper speech backbone of the hf family (``model.speech_backbone`` ``whisper``): a random 2-block, width-64
Whisper encoder in the CTranslate2 format, converted by ``cnnrnn whisper-convert --hf-out`` and loaded back by
path (only the encoder), on a few real clips of the bundled KEMDy20-layout sample."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import WHISPER_CT2, write_ct2_whisper

from cnnrnn.cli import main as cli_main
from cnnrnn.config import ConfigError
from cnnrnn.corpora import CorpusReport
from cnnrnn.corpora.kemdy import KEMDY_LABELS
from cnnrnn.hf.backbones import (HFModelError, build_tiny_backbones, load_whisper_encoder, save_whisper_encoder,
                                 whisper_hidden)
from cnnrnn.hf.config import load_config
from cnnrnn.hf.data import read_records
from cnnrnn.hf.models import HFModel, ModelSpec
from cnnrnn.hf.predict import load_checkpoint
from cnnrnn.hf.train import fit, train_fold
from cnnrnn.models.whisper_convert import convert

N_RECORDS = 4  # 2 contiguous folds: fold 1 trains on records 0-1 and tests on 2-3


@pytest.fixture(scope="module")
def whisper_folder(tmp_path_factory):
    """An HF-format Whisper folder (config.json + encoder-only model.safetensors) of a random 2-block encoder."""
    root = tmp_path_factory.mktemp("whisper")
    return convert(ct2=write_ct2_whisper(root / "model.bin"), hf_out=root / "hf")["hf_out"]


@pytest.fixture(scope="module")
def records(sample_dir):
    return read_records(root=sample_dir)[0][:N_RECORDS]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, records):
    """Tiny random RoBERTa (tokenizer trained on the clips' transcripts) and wav2vec2 folders."""
    return build_tiny_backbones(tmp_path_factory.mktemp("backbones"), [r.text for r in records if r.text])


def _cfg(folder, **model):
    return load_config({"model": {"modality": "speech", "speech_backbone": "whisper", "speech_model": str(folder),
                                  "max_seconds": 1.0, "proj_dim": 8, **model},
                        "train": {"epochs": 1, "batch_size": N_RECORDS, "valid_batch_size": 2, "folds": 2,
                                  "fold": 1, "eager": True}})


def _spec(folder, **model):
    return ModelSpec.from_config(_cfg(folder, **model).model, KEMDY_LABELS)


def _report():
    return CorpusReport("test", "")


def test_speech_model_trains_saves_and_predicts_with_whisper(tmp_path, whisper_folder, records):
    metrics = train_fold(records, _cfg(whisper_folder), tmp_path, progress=False)
    assert metrics["n"] == 2 and metrics["n_train"] == 2
    assert metrics["speech_backbone"] == "whisper" and metrics["speech_pooling"] == "mean"
    speech = tmp_path / "checkpoint" / "speech"
    assert json.loads((speech / "config.json").read_text())["model_type"] == "whisper"
    assert (speech / "model.safetensors").is_file() and not (speech / "preprocessor_config.json").exists()

    model = load_checkpoint(tmp_path / "checkpoint", task="classification", modality="speech")
    assert model.extractor is None and model.model.speech_backbone.config.encoder_layers == 2
    prepared = model.prepare(records, _report())
    probs = model.predict(prepared, batch_size=3)["emotion"]
    assert probs.shape == (N_RECORDS, 7) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    # a fixed length (max_seconds): a clip's output does not depend on the batch it is in
    assert np.allclose(probs, model.predict(prepared, batch_size=1)["emotion"], atol=1e-5)
    table = pd.read_csv(tmp_path / "predictions.csv")  # the test fold (records 2-3), as scored at training
    assert list(table["id"]) == [r.id for r in records[2:]]
    np.testing.assert_allclose(table[[f"p_{lab}" for lab in KEMDY_LABELS]].to_numpy(), probs[2:], atol=1e-5)


def test_multimodal_model_with_a_whisper_speech_side(tmp_path, whisper_folder, tiny, records):
    for name in ("whisper", "multimodal_whisper"):  # the presets pick this backbone
        preset = load_config(name).model
        assert (preset.speech_backbone, preset.whisper_block, preset.whisper_finetune_blocks) == ("whisper", 2, 0)
    assert load_config("multimodal_whisper").model.modality == "multimodal"
    cfg = _cfg(whisper_folder, modality="multimodal", task="total", fusion="add", text_model=str(tiny[0]),
               max_len=16)
    metrics = train_fold(records, cfg, tmp_path, progress=False)
    assert metrics["n"] == 2 and metrics["modality"] == "multimodal" and metrics["speech_backbone"] == "whisper"
    assert {"emotion", "regression"} <= set(metrics)
    ck = tmp_path / "checkpoint"
    assert (ck / "text" / "config.json").is_file() and (ck / "speech" / "model.safetensors").is_file()
    model = load_checkpoint(ck, task="total", modality="multimodal")
    out = model.predict(model.prepare(records, _report()), batch_size=2)
    assert out["emotion"].shape == (N_RECORDS, 7) and out["va"].shape == (N_RECORDS, 2)


def test_whisper_block_picks_the_hidden_state(whisper_folder, records):
    """``whisper_hidden`` equals transformers' own ``hidden_states[k]`` (on the 30 s it requires), and the model's
    speech vector is the mean of block ``whisper_block`` over the clip's frames, so the block changes it."""
    import tensorflow as tf

    enc = load_whisper_encoder(whisper_folder)
    x = np.random.default_rng(0).standard_normal((1, 3000, 80)).astype(np.float32)
    ref = enc(tf.transpose(x, (0, 2, 1)), output_hidden_states=True).hidden_states
    for k in range(3):
        np.testing.assert_allclose(whisper_hidden(enc, x, k).numpy(), ref[k].numpy(), atol=1e-5)

    vectors = {}
    for block in (1, 2):
        model = HFModel(_spec(whisper_folder, whisper_block=block), None, whisper_folder)
        inputs = model.speech_inputs(records[0].audio_path)
        n = int(inputs["speech_mask"].sum())
        assert inputs["input_features"].shape == (100, 80) and 0 < n <= 100  # 1 s of 10 ms frames
        batch = {k: v[None] for k, v in inputs.items()}
        vec = model.model._speech_vector(batch["input_features"], batch["speech_mask"], False).numpy()[0]
        hidden = whisper_hidden(model.model.speech_backbone, batch["input_features"], block).numpy()[0]
        np.testing.assert_allclose(vec, hidden[: (n + 1) // 2].mean(axis=0), atol=1e-5)
        vectors[block] = vec
    assert not np.allclose(vectors[1], vectors[2], atol=1e-3)


def test_frozen_or_fine_tuned_top_block(whisper_folder, records):
    frozen = HFModel(_spec(whisper_folder), None, whisper_folder)
    assert frozen.model.whisper_trained == []
    assert not {id(w) for w in frozen.model.speech_backbone.weights} & {id(w) for w in frozen.model.trainable_weights}
    assert frozen.model.trainable_weights and all(
        any(id(w) == id(h) for h in frozen.model.head.weights) for w in frozen.model.trainable_weights)
    tuned = HFModel(_spec(whisper_folder, whisper_finetune_blocks=1), None, whisper_folder)
    assert tuned.model.whisper_trained == ["block2"]
    enc = tuned.model.speech_backbone
    trainable = {id(w) for w in tuned.model.trainable_weights}
    assert {id(w) for w in enc.encoder_layers[1].weights + enc.layer_norm.weights} <= trainable
    assert not {id(w) for w in enc.encoder_layers[0].weights + enc.conv1.weights} & trainable
    assert len(tuned.model.trainable_weights) == len(frozen.model.trainable_weights) + 17  # block 2 + final norm

    before = [w.numpy().copy() for w in enc.encoder_layers[0].weights + enc.encoder_layers[1].weights]
    cfg = _cfg(whisper_folder, whisper_finetune_blocks=1)
    fit(tuned, tuned.prepare(records[:2], _report()), cfg.train, progress=False)
    after = [w.numpy() for w in enc.encoder_layers[0].weights + enc.encoder_layers[1].weights]
    n0 = len(enc.encoder_layers[0].weights)
    assert all(np.array_equal(a, b) for a, b in zip(before[:n0], after[:n0]))  # block 1: frozen
    assert any(not np.array_equal(a, b) for a, b in zip(before[n0:], after[n0:]))  # block 2: trained

    with pytest.raises(ConfigError, match="whisper_finetune_blocks"):
        _cfg(whisper_folder, whisper_block=1, whisper_finetune_blocks=3)
    with pytest.raises(HFModelError, match="has 2 blocks"):
        HFModel(_spec(whisper_folder, whisper_block=3), None, whisper_folder)


def test_a_folder_that_is_not_whisper_is_refused(tmp_path, whisper_folder, tiny, sample_dir, caplog):
    other = tiny[1]  # a wav2vec2 folder
    with pytest.raises(HFModelError, match="'wav2vec2' model, not Whisper.*whisper-convert"):
        load_whisper_encoder(other)
    with pytest.raises(HFModelError, match="whisper-convert --ct2 model.bin --hf-out"):
        load_whisper_encoder(tmp_path / "missing")
    code = cli_main(["-q", "hf", "train", "--root", str(sample_dir), "--modality", "speech", "--speech-backbone",
                     "whisper", "--speech-model", str(other), "--out", str(tmp_path / "o")])
    assert code == 2 and "not Whisper" in caplog.text
    assert not (tmp_path / "o" / "checkpoint").exists()
    # and a Whisper folder given as a wav2vec2 model says what to use instead
    saved = save_whisper_encoder(load_whisper_encoder(whisper_folder), tmp_path / "resaved")
    with pytest.raises(HFModelError, match="not a wav2vec2-style speech model .for a Whisper folder use "
                                           "--speech-backbone whisper"):
        HFModel(ModelSpec.from_config(load_config({"model": {"modality": "speech"}}).model, ["a", "b"]), None, saved)


@pytest.mark.skipif(not WHISPER_CT2.is_file(), reason="whisper-tiny.en CTranslate2 weights not in ../shared/data")
def test_real_whisper_tiny_encoder_loads(tmp_path, real_waveform):
    folder = convert(ct2=WHISPER_CT2, hf_out=tmp_path / "hf")["hf_out"]
    enc = load_whisper_encoder(folder)
    assert (enc.config.d_model, enc.config.encoder_layers) == (384, 4)
    from cnnrnn.whisper_features import whisper_log_mel

    y, sr = real_waveform
    assert sr == 16000
    mel = whisper_log_mel(y[:16000], pad_to_seconds=1.0)[None]
    hidden = whisper_hidden(enc, mel, 2).numpy()
    assert hidden.shape == (1, 50, 384) and np.isfinite(hidden).all()
