"""Hugging Face TensorFlow text, speech and text+speech emotion models for the KEMDy corpora (``cnnrnn hf``).

Ports of two KEMDy research codebases (``-ETRI-Emotion-Recognition``: RoBERTa, imbalance-aware loss, the
2-stage neutral/rest classifier, RoBERTa + wav2vec2; ``etri_multimodal``: text / speech / multimodal ×
classification / regression / total, concat or add fusion, 5 contiguous folds) to transformers' TF classes
on ``tf_keras``. Offline only: backbones come from a local folder or the local Hugging Face cache.

Modules, in the shape of every family: ``config`` (:class:`~cnnrnn.hf.config.HFConfig`, presets under
``cnnrnn/configs/hf/``), ``data`` (records, folds on :mod:`cnnrnn.splits`, inputs), ``backbones`` (offline
loading, tiny random models, the encoder of a local Whisper folder as a speech backbone), ``models``
(tf_keras head, losses, the model wrapper and its checkpoint), ``metrics`` (multi-label and valence/arousal
scores), ``train`` (one fold: fit, checkpoint, ``run.json``) and ``predict`` (load, evaluate, ``hf predict``
from the run manifest, ``predict_run`` for ``cnnrnn predict``).
Import the submodules directly; this package imports nothing heavy.
"""
