"""DCNN-BLSTMwA, the second model family (Zhang et al., "Pre-trained Deep Convolution Neural Network Model
With Attention for Speech Emotion Recognition", Frontiers in Physiology 2021; the public DCNN-BLSTMWA code).

* :mod:`cnnrnn.dcnn.config`: the config (``data``, ``model``, ``train`` sections; presets in
  ``cnnrnn/configs/dcnn/``) and the feature settings;
* :mod:`cnnrnn.dcnn.filelists`: the ``wavpath|speaker_id|text|emotion_id|lang_id`` filelists and their
  preparation from a corpus (``cnnrnn filelists``);
* :mod:`cnnrnn.dcnn.data`: log-mel + Δ + ΔΔ segments of wav files and filelists, ``tf.data`` input, step-2
  utterance features;
* :mod:`cnnrnn.dcnn.train`: step 1 (:func:`~cnnrnn.dcnn.train.finetune`, the DCNN on segments) and step 2
  (:func:`~cnnrnn.dcnn.train.train`, BiLSTM + attention on the DCNN's segment features);
* :mod:`cnnrnn.dcnn.folds`: both steps and scoring on every k-fold or LOSO fold of a filelist folder, with one
  resumable summary (``cnnrnn dcnn run-folds``);
* :mod:`cnnrnn.dcnn.predict`: wav files → predictions (``cnnrnn dcnn infer``) and the family's part of
  ``cnnrnn predict --model RUN`` (:func:`~cnnrnn.dcnn.predict.predict_run`).

The Keras models are in :mod:`cnnrnn.models.dcnn` and :mod:`cnnrnn.models.blstm_attention`.
"""
