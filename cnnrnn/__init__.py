"""cnnrnn: speech emotion recognition from spectrogram images, in Keras 3.

Stages of the main job (see :mod:`cnnrnn.pipeline`): corpus → per-session split →
mel-spectrogram PNGs → pickled image arrays → ResNet50+LSTM k-fold CV → ``.h5``
checkpoints → test-set prediction. Importing the package is cheap; TensorFlow is
imported only by the stages that train or predict.
"""
__version__ = "0.1.0"
