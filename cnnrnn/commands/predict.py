"""``cnnrnn predict``: prediction with a trained run of any family (the work is in :mod:`cnnrnn.predict`)."""
from __future__ import annotations

import json


def add_commands(sub) -> None:
    """Add ``cnnrnn predict`` to the ``cnnrnn`` parser's subparsers ``sub``."""
    p = sub.add_parser(
        "predict", help="predict with a trained run or checkpoint(s) of any family",
        description="Predict emotions with a run of any family (CNNRNN, DCNN-BLSTMwA, ANN/CNN baselines, Hugging "
                    "Face, openSMILE functionals), found from its run.json. --model takes a run folder, a "
                    "checkpoint, or the name of a model shipped with the package (emodb: see its MODEL_CARD.md); "
                    "several CNNRNN checkpoints (or a models/ folder) average their probabilities (fold "
                    "ensemble); several functionals runs too. --input takes "
                    "what the family predicts on: audio files or folders; CNNRNN also PNGs and *_final.pickle; "
                    "DCNN also a filelist; Hugging Face a new_data.csv. Writes predictions.csv, and metrics.json + "
                    "confusion_matrix.png when the true labels are known. Long recordings: an audio file longer "
                    "than the model's clip (e.g. 2 s for emodb) is predicted in windows (--window, --hop), "
                    "silent windows marked and not classified; timeline.csv holds every window, "
                    "timeline_<file>.png draws the spectrogram above the emotion over time, and the file's row in "
                    "predictions.csv is the mean of its windows' probabilities. Speech check: an audio file or "
                    "window that holds no speech (noise, a constant, a tone, music; Silero VAD) gets the label "
                    "no_speech instead of an emotion, and counts as an error when true labels are known; "
                    "--classify-anyway turns the check off.")
    p.add_argument("--model", required=True, action="append", metavar="RUN_OR_CHECKPOINT",
                   help="run folder, checkpoint, or a shipped model's name (emodb: 7 EmoDB emotions, trained on all of "
                        "emodb-535; research use only), or a model written by cnnrnn export (.onnx, .tflite, a "
                        "SavedModel folder; an .onnx runs with onnxruntime, without TensorFlow); repeat it to "
                        "average several")
    p.add_argument("--input", required=True,
                   help="audio file or folder (CNNRNN: also .png, *_final.pickle; CNNRNN and functionals: also a CSV "
                        "with path[,speaker,label], scored when it has labels)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: <run>/predictions; ./predictions for a shipped model)")
    p.add_argument("--labels", help="labels.json (default: the run's labels)")
    p.add_argument("--resize", action="store_true", default=None,
                   help="resize images whose size differs from the model input (CNNRNN)")
    p.add_argument("--images", action="store_true", default=None,
                   help="CNNRNN: from a folder holding both audio and spectrogram images (a run folder), predict the "
                        "images instead of the audio (default: the audio; never both, which would predict every "
                        "utterance twice)")
    p.add_argument("--batch-size", type=int, default=None, help="prediction batch size")
    p.add_argument("--config", metavar="JSON", help="config for rendering audio (default: the run's)")
    p.add_argument("--speaker", metavar="NAME", default=None,
                   help="the speaker of every input, for speaker normalisation (functionals runs, and CNNRNN runs "
                        "with spectrogram.normalization speaker; a functionals CSV --input with path,speaker columns "
                        "gives one per file). Without one, inputs use the run's global statistics (the training "
                        "data's); the output says so")
    p.add_argument("--speaker-from", choices=("folder",), default=None,
                   help="CNNRNN: each input file's speaker is the name of its folder (a folder per speaker)")
    p.add_argument("--render", choices=("fast", "specshow"), default=None,
                   help="CNNRNN: how audio becomes the spectrogram image: fast (OpenCV colormap) or specshow (the "
                        "original CNNRNN code's matplotlib figure). Default: the run's spectrogram.render; specshow "
                        "for a Keras 2 .h5 without a run (the original's checkpoints were trained on such images)")
    p.add_argument("--pixel-range", choices=("0-255", "0-1"), default=None,
                   help="CNNRNN: the pixel values the model takes (default 0-255: raw BGR, as the original's "
                        "cv2.imread gave them; a Keras 2 file does not record it). 0-1 divides by 255")
    p.add_argument("--trust-code", action="store_true", default=None,
                   help="load a model file whose Lambda layers hold Python code (marshalled bytecode), which "
                        "then runs: only for files from a source you trust. Without it such files are refused")
    p.add_argument("--window", type=float, default=None, metavar="SECONDS",
                   help="cut every audio file into windows of SECONDS and predict each (default: the model's clip "
                        "length, for the files longer than it; shorter files are one clip as before). A file "
                        "shorter than the window is one window, padded as the training clips were. Needed for "
                        "runs without a clip length (functionals; DCNN without max_sec) to get a timeline; not "
                        "for Hugging Face runs")
    p.add_argument("--hop", type=float, default=None, metavar="SECONDS",
                   help="seconds between window starts (default: half the window); must be > 0")
    p.add_argument("--silence-db", type=float, default=None, metavar="DB",
                   help="a window is silence (marked in timeline.csv, not classified) when under a quarter of it is "
                        "within DB of the recording's loudest part (default 40; 0 classifies every window)")
    p.add_argument("--classify-anyway", action="store_true",
                   help="skip the speech check: give an emotion to every audio file and window that is not silence, "
                        "even one that holds no speech (by default such a file or window is labelled no_speech, "
                        "with NaN probabilities, and is an error in the scores of a labelled set)")
    p.add_argument("--no-figures", action="store_true",
                   help="write no timeline figure (timeline_<file>.png) for the files predicted in windows: faster on "
                        "a folder of many long recordings; timeline.csv holds the same windows")
    p.add_argument("--fuse", action="store_true",
                   help="late fusion: each run (of any family) predicts on its own, into OUT/<family>_<k>/, and their "
                        "class probabilities are averaged, classes matched by meaning (angry = anger)")
    p.set_defaults(handler=_predict)


def _predict(args, progress: bool) -> int:
    from ..normalize import SPEAKER_FROM_FOLDER
    from ..predict import predict

    if args.speaker_from and args.speaker:
        raise ValueError("give --speaker NAME or --speaker-from folder, not both")
    silence = {} if args.silence_db is None else {"silence_db": args.silence_db or None}
    result = predict(args.model, args.input, args.out, progress=progress, labels=args.labels, config=args.config,
                     resize=args.resize, batch_size=args.batch_size, images=args.images,
                     speaker=SPEAKER_FROM_FOLDER if args.speaker_from else args.speaker,
                     render=args.render, pixel_range=args.pixel_range, trust_code=args.trust_code, fuse=args.fuse,
                     window=args.window, hop=args.hop, classify_anyway=args.classify_anyway,
                     figures=not args.no_figures, **silence)
    df = result["predictions"]
    print(df[[c for c in ("id", "true", "predicted", "confidence") if c in df]].to_string(index=False, max_rows=30))
    metrics = result["metrics"]
    if metrics:
        print(json.dumps({k: metrics[k] for k in ("n", "accuracy", "ua", "wa", "f1_micro", "f1_macro", "f1_weighted",
                                                  "no_speech") if k in metrics}, indent=2))
    summary = {"family": result["family"], "files": result["files"], "skipped": result["skipped"]}
    if "no_speech" in result:
        summary["no_speech"] = result["no_speech"]
    print(json.dumps(summary, indent=2, ensure_ascii=False, default=str))
    for note in result.get("notes") or ():
        print(f"note: {note}")
    return 0
