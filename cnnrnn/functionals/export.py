"""The openSMILE-functionals family's part of ``cnnrnn export`` (:mod:`cnnrnn.export`): none. Its runs are not
exported (:data:`NOT_EXPORTABLE` says why, and is the one-line error of ``cnnrnn export`` on such a run)."""

#: Why a functionals run cannot be exported.
NOT_EXPORTABLE = ("openSMILE-functionals runs are scikit-learn models on openSMILE features, not Keras graphs "
                  "(skl2onnx converts scikit-learn models; openSMILE itself cannot be exported)")
