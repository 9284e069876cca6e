"""``cnnrnn export``: a trained run as ONNX, TFLite or a SavedModel, with a JSON sidecar (the work is in
:mod:`cnnrnn.export`)."""
from __future__ import annotations

import argparse

DESCRIPTION = """\
Export a trained run (CNNRNN, ANN/CNN baseline, DCNN-BLSTMwA with a fixed clip length) for use without
cnnrnn: one model file that maps the model input to class probabilities, as `cnnrnn predict` computes them
(the CV folds of a run averaged; a CNNRNN model trained on time crops cuts the image into its segments), and a
JSON sidecar that describes the preprocessing from audio to that input (sr, clip length, n_fft, hop_length,
n_mels, fmin, fmax, top_db, normalisation and its statistics, image size, colormap, input scaling), the
labels in output order, and the parity check.

  onnx        MODEL.onnx + MODEL.onnx.json      (tf2onnx; runs with onnxruntime alone, no TensorFlow)
  tflite      MODEL.tflite + MODEL.tflite.json  (LiteRT; LSTM/GRU layers unrolled for the fixed input)
  savedmodel  FOLDER/ with FOLDER/export.json    (TensorFlow SavedModel, endpoint "serve")

After writing, the file is run by its own runtime on real audio (default: the first 8 recordings of the
bundled sample) and compared with the Keras model: max abs difference of probabilities <= 1e-4 (ONNX,
SavedModel) or <= 1e-2 (TFLite), printed and stored in the sidecar; a larger one fails (exit 2).
ONNX needs the export extra: pip install 'cnnrnn[export]' (tf2onnx, onnx, onnxruntime).
An existing --out is replaced only when it is a previous export of cnnrnn (its sidecar beside it, reading as
ours; a SavedModel folder holding nothing else); a user's file or folder is refused before any work (exit 2)
and nothing is touched. The labels must be distinct, one per output column.

examples:
  cnnrnn export --model emodb --format onnx --out emodb.onnx
  cnnrnn export --model out/run --format tflite --out run.tflite --audio my_recordings/
  cnnrnn export --model old_model.h5 --config old_config.json --labels labels.json --format savedmodel"""


def add_commands(sub) -> None:
    """Add ``cnnrnn export`` to the ``cnnrnn`` parser's subparsers ``sub``."""
    p = sub.add_parser("export", help="a trained run as ONNX / TFLite / SavedModel + a JSON preprocessing sidecar",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, metavar="RUN_OR_CHECKPOINT",
                   help="run folder, checkpoint (one fold of a run), or a shipped model's name (emodb), as for "
                        "cnnrnn predict")
    p.add_argument("--format", dest="fmt", choices=("onnx", "tflite", "savedmodel"), default=None,
                   help="export format (default: from --out's suffix, .onnx or .tflite; else onnx)")
    p.add_argument("--out", default=None, metavar="PATH",
                   help="the .onnx / .tflite file or SavedModel folder to write (default: ./<run name>.onnx, "
                        ".tflite or _savedmodel); an existing one is replaced only if it is a previous cnnrnn "
                        "export (its sidecar beside it, nothing else in the folder): any other file or non-empty "
                        "folder is refused (exit 2) and left untouched")
    p.add_argument("--config", default=None, metavar="PRESET_OR_JSON",
                   help="the config the model was trained with, for a checkpoint without run.json or config file "
                        "(it overrides the run's own for CNNRNN and baseline runs)")
    p.add_argument("--labels", default=None, metavar="LABELS_JSON",
                   help="class names, for a checkpoint whose run does not record them")
    p.add_argument("--family", default=None, choices=("cnnrnn", "baselines", "dcnn"),
                   help="the family of a bare checkpoint outside any run (default: cnnrnn, as cnnrnn predict)")
    p.add_argument("--audio", default=None, action="append", metavar="FILE_OR_DIR",
                   help="real audio for the parity check: a file, or a folder (its first 8 files, sorted); repeat it "
                        "for several; default: the bundled sample")
    p.add_argument("--batch-size", type=int, default=None, help="batch size of the parity predictions (default 16)")
    p.add_argument("--trust-code", action="store_true",
                   help="load a checkpoint with Lambda layers (their Python code runs, and is exported); only for "
                        "files from a trusted source")
    p.set_defaults(handler=_export)


def _export(args, progress: bool) -> int:
    from ..export import export

    result = export(args.model, args.fmt, args.out, config=args.config, labels=args.labels, family=args.family,
                    audio=args.audio, batch_size=args.batch_size or 16, trust_code=args.trust_code)
    parity, fmt, inp = result["parity"], result["format"], result["model_input"]
    print(f"exported {result['family']} run to {result['out']} ({fmt}); sidecar {result['sidecar']}")
    print(f"input {inp['name']!r} float32 {inp['shape']}; output {result['model_output']['name']!r}: probabilities "
          f"of {len(result['labels'])} labels: {', '.join(result['labels'])}")
    print(f"parity on {parity['files']} real recording(s) ({parity['runtime']} vs Keras): max abs difference "
          f"{parity['max_abs_diff']:.3g} <= {parity['tolerance']:g}: {'passed' if parity['passed'] else 'FAILED'}")
    return 0
