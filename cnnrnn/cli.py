"""The ``cnnrnn`` command line: the top-level parser; every subcommand lives in a module of
:mod:`cnnrnn.commands` (one per family, one for ``predict``, one for the tools), which only parses arguments
and calls the library."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

DESCRIPTION = """\
Speech emotion recognition from spectrogram images (ResNet50+LSTM, "CNNRNN").

The main job runs in stages that talk through files in one output folder:
  split         corpus -> train.json, test.json, train_audio.json, test_audio.json, labels.json
  spectrograms  *_audio.json -> spectrograms/<id>.png, data_train.pickle, data_test.pickle
  pack          data_*.pickle -> train_final.pickle, test_final.pickle (uint8 image arrays)
  train         train_final.pickle -> 5-fold CV, models/CNN_RNN_fold{k}_epoch{E}_e4.h5, cv_report.json
  evaluate      the fold models' average on test_final.pickle -> test/predictions.csv, test/metrics.json
  predict       .h5 model(s) + pickle / wav / png / folder -> predictions.csv, metrics.json
  run           all stages, then predicts the test set;  demo: the same on the bundled sample

predict takes a run of any family (CNNRNN, dcnn, baselines, functionals, hf): it reads the run's run.json;
--fuse averages several runs. export writes a run as ONNX, TFLite or a SavedModel, with a JSON sidecar
describing its preprocessing. The other families: dcnn, baselines, functionals, hf, kemdy-labels, and tools.
Every CNNRNN subcommand takes --config: a preset (default, demo, tiny, compact, best, yamnet, ...) or a JSON file
with the sections "split", "spectrogram" and "train" (see cnnrnn/configs/cnnrnn/default.json for every key).
"""


# Each module of cnnrnn/commands has add_commands(sub), whose parsers set_defaults(handler=fn) with
# fn(args, progress) -> int (the exit code). The module named baseline adds the command `baselines`.
COMMAND_MODULES = ("cnnrnn", "predict", "tools", "dcnn", "baseline", "kemdy", "hf", "functionals", "export")
#: Old command names still accepted (argparse aliases), each → its name now; using one prints a note on stderr.
DEPRECATED_COMMANDS = {"baseline": "baselines"}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="cnnrnn", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cnnrnn {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="less logging and no progress bars")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up lines (absl, oneDNN, CUDA), hidden by default")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"cnnrnn.commands.{name}").add_commands(sub)
    return parser


#: What an interrupted command says (one line, on stderr).
INTERRUPTED = "interrupted; rerun the same command to resume"
#: Exit codes of a command stopped by Ctrl-C (SIGINT) and by SIGTERM: 128 + the signal's number, as shells do.
EXIT_SIGINT, EXIT_SIGTERM = 130, 143


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM (:func:`main` installs the handler), so that a terminated command ends
    as an interrupted one: workers stopped, temporaries removed, one line, exit 143."""


def _raise_terminated(signum, frame) -> None:  # noqa: ARG001 - a signal handler's signature
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cnnrnn`` console script. Returns the exit code: 0, 2 for a clear error (one line),
    130 after Ctrl-C and 143 after SIGTERM (one line, :data:`INTERRUPTED`, no traceback)."""
    import signal
    import threading

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from .quiet import onnxruntime_telemetry_off

    onnxruntime_telemetry_off()  # before anything (tf2onnx, transformers) imports onnxruntime
    args = build_parser().parse_args(argv)
    if args.command in DEPRECATED_COMMANDS:
        print(f"note: 'cnnrnn {args.command}' is deprecated; use 'cnnrnn {DEPRECATED_COMMANDS[args.command]}'",
              file=sys.stderr, flush=True)
    if not args.verbose:
        from .quiet import quiet_tensorflow_import

        quiet_tensorflow_import()  # before anything imports TensorFlow
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    progress = not args.quiet
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    try:
        return int(args.handler(args, progress) or 0)
    except (ValueError, FileNotFoundError, OSError) as exc:
        logging.getLogger("cnnrnn").error("%s", exc)
        return 2
    except KeyboardInterrupt as exc:
        print(INTERRUPTED, file=sys.stderr, flush=True)
        return EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
