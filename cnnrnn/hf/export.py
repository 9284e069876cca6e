"""The Hugging Face family's part of ``cnnrnn export`` (:mod:`cnnrnn.export`): none. Its runs are not exported
(:data:`NOT_EXPORTABLE` says why, and is the one-line error of ``cnnrnn export`` on such a run)."""

#: Why an HF run cannot be exported.
NOT_EXPORTABLE = ("Hugging Face runs are tf_keras models of transformers that take tokenised text and/or raw audio "
                  "through the transformers processors; export them with the Hugging Face tools (transformers.onnx / "
                  "optimum), which know those graphs")
