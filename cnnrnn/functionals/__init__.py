"""The classical reference: openSMILE functionals + SVM (``cnnrnn functionals train|evaluate``).

One fixed-length vector per utterance, openSMILE's eGeMAPSv02 (88) or ComParE_2016 (6,373) functionals
(``opensmile`` package, offline), normalised per speaker (:mod:`cnnrnn.normalize`), classified by a scikit-learn
SVM (linear or RBF kernel) with calibrated probabilities. On ``emodb-535`` leave-one-speaker-out it beats every
deep model this package trains from scratch (issue 11), so it is the bar to clear. The ``whisper`` feature set
puts the frozen Whisper encoder's pooled block features (:mod:`cnnrnn.models.whisper`) in the same recipe, with a
logistic-regression head and the block and C chosen by nested leave-one-speaker-out on the training speakers.

Modules, one per stage group, as in every family:

* :mod:`~cnnrnn.functionals.config`: :class:`~cnnrnn.functionals.config.FunctionalsConfig` and the presets in
  ``cnnrnn/configs/functionals/`` (``compare_linear``, ``egemaps_rbf``, ``whisper``, ``tiny``);
* :mod:`~cnnrnn.functionals.data`: openSMILE or Whisper features per file (cached), the train/test split,
  normalisation;
* :mod:`~cnnrnn.functionals.select`: the nested leave-one-speaker-out choice of the Whisper block and of C;
* :mod:`~cnnrnn.functionals.train`: ``train`` (run folder, ``run.json``, report);
* :mod:`~cnnrnn.functionals.predict`: the skops model file, ``evaluate`` (a run scored again) and prediction on
  audio files (``cnnrnn predict --model RUN``).

Import the submodules directly; this package imports nothing.
"""
