"""The CNNRNN family, the package's main job (the original CNNRNN code: KEMDy per-session split, mel PNGs,
pickles, ResNet50+LSTM with 5-fold CV, ``.h5`` checkpoints, test-set prediction).

Modules, one per stage group, as in every family:

* :mod:`~cnnrnn.cnnrnn.config`: the ``split`` / ``spectrogram`` / ``train`` config sections and presets;
* :mod:`~cnnrnn.cnnrnn.data`: stage 1 ``split``, stage 2 ``spectrograms`` (parallel PNG rendering), stage 3
  ``pack`` (image arrays);
* :mod:`~cnnrnn.cnnrnn.train`: stage 4 k-fold cross-validation with ``.h5`` checkpoints and the run manifest;
* :mod:`~cnnrnn.cnnrnn.predict`: stage 5 test-set prediction, and prediction on any pickle / PNG / audio;
* :mod:`~cnnrnn.cnnrnn.pipeline`: all stages in order (``run``) and the bundled-sample ``demo``.
"""
