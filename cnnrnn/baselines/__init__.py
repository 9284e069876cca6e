"""The ANN (raw waveform) and CNN (spectrogram) baselines (``cnnrnn baselines train|evaluate``).

Keras ports of the two models of the Korean PyTorch tutorial "디지털사운드 ANN과 CNN을 활용하여 음성 분류
인공지능 제작" ("building a sound-classification AI with ANN and CNN on digital sound"), which trains them on
the UrbanSound8K practice problem (``train.csv`` with ``ID,Class``, 5,435 clips, 10 classes, a random 8:2
split; 18.86 % validation accuracy for the ANN, 91.21 % for the CNN).

Modules, one per stage group, as in every family:

* :mod:`~cnnrnn.baselines.config`: :class:`~cnnrnn.baselines.config.BaselineConfig` and the presets in
  ``cnnrnn/configs/baselines/`` (``ann``, ``cnn``, ``tiny_ann``, ``tiny_cnn``);
* :mod:`~cnnrnn.baselines.data`: fixed-length waveforms, the scaled spectrogram, the on-disk feature cache
  streamed through ``tf.data``, and the train/validation split;
* :mod:`~cnnrnn.baselines.train`: ``train`` (run folder, ``run.json``, report);
* :mod:`~cnnrnn.baselines.predict`: ``evaluate`` (a run scored again) and prediction on audio files
  (``cnnrnn predict --model RUN``).

Import the submodules directly; this package imports nothing.
"""
