"""``cnnrnn`` subcommands: the DCNN-BLSTMwA flow's tools (``resample``, ``amp-normalize``, ``hparams``), its
dataset preparation (``filelists``) and the YAMNet and Whisper weights converters (``yamnet-convert``,
``whisper-convert``). The work is in
:mod:`cnnrnn.audio_tools`, :mod:`cnnrnn.hparams`, :func:`cnnrnn.dcnn.filelists.prepare_filelists` and
:mod:`cnnrnn.models.yamnet_convert`."""
from __future__ import annotations

import argparse
import json

from ..artifacts import ensure_writable_dir

#: The kind of the HF-format folder ``whisper-convert --hf-out`` writes (:func:`cnnrnn.outputs.claim_folder`).
HF_WHISPER_KIND = "whisper hf folder"
#: What it holds (:func:`cnnrnn.models.whisper_convert.write_hf_folder`).
HF_WHISPER_FILES = frozenset({"config.json", "model.safetensors"})


def _is_hf_whisper_folder(folder) -> bool:
    """A ``--hf-out`` folder written before folder markers existed holds exactly its two files (a downloaded model
    folder, with a tokenizer and the rest, is not one)."""
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")} == HF_WHISPER_FILES


def add_commands(sub) -> None:
    """Add this module's subcommands to the ``cnnrnn`` parser's subparsers ``sub``."""
    import inspect

    from ..corpora import READERS
    from ..dcnn.filelists import FOLDS_BY, prepare_filelists
    from ..models.yamnet_convert import agreement_on_files

    default = {k: v.default for k, v in inspect.signature(prepare_filelists).parameters.items()}

    raw = argparse.RawDescriptionHelpFormatter
    p = _tree_parser(sub, "resample", _resample, "resample every audio file of a folder tree (original resample.py)",
                     "Resample every audio file under SRC_DIR to SR Hz (librosa soxr_hq, mono) and write it\n"
                     "as a 16-bit PCM wav at the same relative path under DST_DIR (a separate folder).\n"
                     "A rerun keeps outputs that are up to date; unreadable or empty files are skipped and\n"
                     "counted.\n\nexample: cnnrnn resample dataset/jtes48k dataset/jtes 16000")
    p.add_argument("sr", type=int, help="target sample rate in Hz, e.g. 16000")
    _tree_parser(sub, "amp-normalize", _amp_normalize,
                 "peak-normalise every audio file of a folder tree (original amp_normalize.py)",
                 "Scale every audio file under SRC_DIR so its peak absolute amplitude is 1\n"
                 "(librosa.util.normalize) and write it as a 16-bit PCM wav at the same relative path\n"
                 "under DST_DIR (a separate folder). A silent file is copied as is and reported.\n"
                 "A rerun keeps outputs that are up to date.\n\n"
                 "example: cnnrnn amp-normalize dataset/esd16k dataset/esd")

    p = sub.add_parser("hparams", help="change a hyper-parameter in JSON config files (hparams_changer.py)",
                       formatter_class=raw,
                       description="Command mode: cnnrnn hparams -p CONFIG.json -y KEY -v VALUE\n"
                                   "  KEY is a key of any section, or section.key when several sections hold it;\n"
                                   "  VALUE takes the type of the value it replaces;\n"
                                   "  an unknown key needs --add and section.key.\n"
                                   "Dialogue mode: cnnrnn hparams [-p ...] asks for the file, key and value.\n"
                                   "Files are rewritten atomically, keeping key order.\n\n"
                                   "example: cnnrnn hparams -p cnnrnn/configs/dcnn -y train.batch_size -v 64")
    p.add_argument("-p", "--path", action="append", metavar="PATH",
                   help="config file, or folder of *.json; repeatable (dialogue default: the package's "
                        "DCNN configs, cnnrnn/configs/dcnn/*.json)")
    p.add_argument("-y", "--hyparam", metavar="HYPARAM", help="key or section.key")
    p.add_argument("-v", "--value", metavar="VALUE", help="new value (JSON for lists, dicts and null)")
    p.add_argument("--add", "--yes", dest="add", action="store_true",
                   help="confirm adding a key that does not exist yet (give section.key)")
    p.set_defaults(handler=_hparams)

    p = sub.add_parser("filelists", help="k-fold and LOSO filelists of a corpus (wavpath|speaker|text|emotion|lang)",
                       formatter_class=raw,
                       description="Read a corpus and write OUT/labels.json, OUT/kfold/fold{k}_{train,test}.txt,\n"
                                   "OUT/loso/{speaker}_{train,test}.txt and OUT/prepare_report.json.\n"
                                   "Lines: wavpath|speaker_id|text|emotion_id|lang_id (absolute wav paths).\n"
                                   "Emotion ids follow the corpus's fixed label order (esd: neutral happy sad\n"
                                   "angry; jtes: neu joy sad ang) unless --labels is given.\n\n"
                                   "example: cnnrnn filelists --corpus esd --root dataset/esd --out filelists/esd")
    p.add_argument("--corpus", required=True, choices=sorted(READERS), help="corpus layout")
    p.add_argument("--root", required=True, help="corpus folder")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder: new, empty, or filelists already (a folder of other files is refused)")
    p.add_argument("--folds", "--n-folds", dest="folds", type=int,
                   help=f"number of k-fold folds (default {default['folds']})")
    p.add_argument("--folds-by", choices=FOLDS_BY,
                   help=f"speaker-disjoint or only stratified folds (default {default['folds_by']}; auto: by "
                        "speaker when there are at least as many speakers as folds)")
    p.add_argument("--no-loso", action="store_true", help="skip the leave-one-speaker-out filelists")
    p.add_argument("--seed", type=int, help=f"fold shuffling seed (default {default['seed']})")
    p.add_argument("--labels", help="comma-separated label names in id order (a subset leaves the rest out)")
    p.add_argument("--lang-id", type=int, help=f"lang_id field of every line (default {default['lang_id']})")
    p.set_defaults(handler=_filelists)

    p = sub.add_parser("yamnet-convert", help="convert YAMNet's TFLite file into Keras weights (.weights.h5)",
                       formatter_class=raw,
                       description="Read a local yamnet.tflite (AudioSet-pretrained MobileNetV1, int8 weights),\n"
                                   "check that it is that model, dequantise its weights (batch norm already\n"
                                   "folded) and write them for cnnrnn.models.yamnet.build_yamnet as a Keras\n"
                                   ".weights.h5 (atomically). Then print how well the Keras model's 1024-d\n"
                                   "embeddings agree with the plain TFLite interpreter's on real speech (the\n"
                                   "bundled sample unless --check-audio), with and without emulating the\n"
                                   "interpreter's int8 activation rounding. Nothing is downloaded.\n\n"
                                   "example: cnnrnn yamnet-convert --tflite ../shared/data/pretrained/yamnet/"
                                   "yamnet.tflite \\\n           --out weights/yamnet.weights.h5")
    p.add_argument("--tflite", required=True, metavar="PATH", help="the YAMNet .tflite file")
    p.add_argument("--out", required=True, metavar="PATH", help="output file, NAME.weights.h5")
    p.add_argument("--check-audio", metavar="PATH", action="append",
                   help="audio file or folder for the agreement check; repeatable (default: the bundled sample)")
    clips = inspect.signature(agreement_on_files).parameters["clips"].default
    p.add_argument("--check-clips", type=int, metavar="N",
                   help=f"clips used by the check, spread over the files (default {clips}; 0 skips the check)")
    p.set_defaults(handler=_yamnet_convert)

    p = sub.add_parser("whisper-convert", help="convert a local Whisper model's encoder into Keras weights",
                       formatter_class=raw,
                       description="Read a local Whisper model, either the CTranslate2 model.bin of Systran's\n"
                                   "faster-whisper-* (tiny, base, small, ...; a two-part model.bin concatenated) or an\n"
                                   "openai/whisper-* folder (config.json + model.safetensors), check every tensor's\n"
                                   "shape, and write the encoder (stem, every transformer block, final layer norm)\n"
                                   "as Keras weights for cnnrnn.models.whisper (--out NAME.weights.h5, with NAME.json\n"
                                   "holding its sizes) and/or as an HF-format folder that transformers'\n"
                                   "TFWhisperEncoder loads (--hf-out DIR, for the hf family). Then, for a --ct2\n"
                                   "source with ctranslate2 installed, print the largest difference between the\n"
                                   "Keras encoder and ctranslate2's Whisper.encode on real speech (the bundled\n"
                                   "sample unless --check-audio). Nothing is downloaded.\n\n"
                                   "example: cnnrnn whisper-convert --ct2 ../shared/data/pretrained/whisper-tiny.en/"
                                   "model.bin \\\n           --out weights/whisper-tiny.en.weights.h5")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ct2", metavar="PATH", help="a CTranslate2 Whisper model.bin (or its folder)")
    src.add_argument("--hf", metavar="DIR", help="a Hugging Face openai/whisper-* folder")
    p.add_argument("--out", metavar="PATH", help="output Keras weights, NAME.weights.h5 (NAME.json beside it)")
    p.add_argument("--hf-out", metavar="DIR", help="also write an HF-format folder for the hf family")
    p.add_argument("--blocks", type=int, metavar="N",
                   help="keep the stem and the first N transformer blocks only (a smaller file for models that "
                        "read a middle block; default: all, with the final layer norm)")
    p.add_argument("--float16", action="store_true", help="store the Keras weights as float16 (half the size)")
    p.add_argument("--check-audio", metavar="PATH", action="append",
                   help="audio file or folder for the parity check; repeatable (default: the bundled sample)")
    p.add_argument("--check-clips", type=int, metavar="N", default=3,
                   help="clips used by the parity check (default 3; 0 skips it)")
    p.add_argument("--check-seconds", type=float, metavar="S", default=30.0,
                   help="clip length of the parity check, padded as Whisper does (default 30)")
    p.set_defaults(handler=_whisper_convert)


def _tree_parser(sub, name: str, handler, help_text: str, description: str) -> argparse.ArgumentParser:
    """A folder-to-folder audio tool's parser: SRC_DIR DST_DIR [-s]."""
    p = sub.add_parser(name, help=help_text, description=description,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src_dir", help="source folder (searched recursively)")
    p.add_argument("dst_dir", help="output folder (created; not SRC_DIR nor inside it): new, empty, or this tool's "
                                   "output, where a rerun resumes (a folder of other files is refused)")
    p.add_argument("-s", "--silent", action="store_true", help="no progress bar (as cnnrnn -q)")
    p.set_defaults(handler=handler)
    return p


def _resample(args, progress: bool) -> int:
    from ..audio_tools import format_summary, resample_tree

    print(format_summary(resample_tree(args.src_dir, args.dst_dir, args.sr, progress and not args.silent)))
    return 0


def _amp_normalize(args, progress: bool) -> int:
    from ..audio_tools import amp_normalize_tree, format_summary

    print(format_summary(amp_normalize_tree(args.src_dir, args.dst_dir, progress and not args.silent)))
    return 0


def _hparams(args, progress: bool) -> int:
    from .. import hparams

    if args.hyparam is None and args.value is None:
        default = sorted(hparams.DEFAULT_CONFIG_DIR.glob("*.json"))
        hparams.dialogue(args.path or default)
        return 0
    if args.hyparam is None or args.value is None:
        raise hparams.HparamError("give both -y KEY and -v VALUE (or neither, for the dialogue)")
    if not args.path:
        raise hparams.HparamError("give the config file(s) to change with -p PATH")
    for c in hparams.set_hparam(args.path, args.hyparam, args.value, add=args.add):
        where = f"{c['section']}.{c['key']}" if c["section"] else c["key"]
        print(f"{c['file']}: {where}: {json.dumps(c['old'])} -> {json.dumps(c['new'])}"
              + (" (added)" if c["added"] else ""))
    return 0


def _filelists(args, progress: bool) -> int:
    """``filelists``: ``--out`` is claimed by :func:`cnnrnn.dcnn.filelists.prepare_filelists` (new, empty or
    filelists already; a folder of other files is refused: exit 2, nothing written)."""
    from ..dcnn.filelists import prepare_filelists

    labels = [x.strip() for x in args.labels.split(",") if x.strip()] if args.labels else None
    given = {"folds": args.folds, "seed": args.seed, "lang_id": args.lang_id, "folds_by": args.folds_by}
    report = prepare_filelists(args.corpus, args.root, args.out, loso=not args.no_loso, labels=labels,
                               **{k: v for k, v in given.items() if v is not None})  # defaults: the function's
    print(json.dumps({"labels": report["labels"], "label_counts": report["label_counts"],
                      "entries": report["n_entries"], "speakers": report["n_speakers"],
                      "folds_by_speaker": report["kfold"]["by_speaker"], "loso_pairs": len(report["loso"]),
                      "corpus_skipped": {k: len(v) for k, v in report["corpus"]["skipped"].items()},
                      "skipped": {k: len(v) for k, v in report["skipped"].items()},
                      "report": f"{args.out}/prepare_report.json"}, indent=2, ensure_ascii=False))
    return 0


def _whisper_convert(args, progress: bool) -> int:
    from pathlib import Path

    from ..audio import list_audio, load_audio
    from ..models import whisper_convert
    from ..models.yamnet_convert import SAMPLE_WAVS

    if args.out is None and args.hf_out is None:
        raise ValueError("whisper-convert writes nothing without --out NAME.weights.h5 and/or --hf-out DIR")
    for target in (args.out, args.hf_out):
        if target is not None:
            ensure_writable_dir(Path(target).parent)
    if args.hf_out is not None:  # its two files are rewritten: only in a new or empty folder, or one it wrote
        from ..outputs import claim_folder

        claim_folder(args.hf_out, HF_WHISPER_KIND, recognise=_is_hf_whisper_folder)
    result = whisper_convert.convert(ct2=args.ct2, hf=args.hf, out=args.out, hf_out=args.hf_out,
                                     blocks=args.blocks, float16=args.float16)
    s = result["sizes"]
    print(f"read Whisper {s.name}: {s.n_layers} blocks, width {s.width}, {s.n_heads} heads, {s.n_mels} mels")
    for key in ("out", "hf_out"):
        if result[key] is not None:
            print(f"wrote {result[key]}")
    if args.ct2 is None or args.out is None or args.check_clips <= 0:
        return 0
    if args.blocks is not None and args.blocks < s.n_layers:
        print(f"parity check skipped: the file keeps blocks 0..{args.blocks}, ctranslate2 gives the last layer only")
        return 0
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        print("parity check skipped: ctranslate2 is not installed (pip install ctranslate2)")
        return 0
    files = []
    for item in map(Path, args.check_audio or [SAMPLE_WAVS]):
        files += list_audio(item) if item.is_dir() else [item]
    files = sorted(files)[: args.check_clips]
    try:
        parity = whisper_convert.parity_ct2(args.ct2, result["out"], [load_audio(f, 16000)[0] for f in files],
                                            seconds=args.check_seconds)
    except (RuntimeError, IndexError) as exc:  # ctranslate2's own errors, e.g. a file without its decoder
        print(f"parity check skipped: ctranslate2 cannot run {args.ct2} ({str(exc).splitlines()[0]})")
        return 0
    verdict = "ok" if parity["max_abs_diff"] <= 1e-3 else "TOO LARGE (tolerance 1e-3)"
    print(f"parity with {parity['reference']} Whisper.encode (final layer) on {len(files)} clips of "
          f"{args.check_seconds:g} s: max abs {parity['max_abs_diff']:.3g}, mean abs {parity['mean_abs_diff']:.3g}: "
          f"{verdict}")
    return 0 if parity["max_abs_diff"] <= 1e-3 else 2


def _yamnet_convert(args, progress: bool) -> int:
    from pathlib import Path

    from ..models import yamnet_convert

    ensure_writable_dir(Path(args.out).parent)
    out = yamnet_convert.convert(args.tflite, args.out)
    print(f"wrote {out}")
    if args.check_clips is not None and args.check_clips <= 0:
        return 0
    given = {"clips": args.check_clips} if args.check_clips is not None else {}  # default: the function's
    result = yamnet_convert.agreement_on_files(args.tflite, args.check_audio or yamnet_convert.SAMPLE_WAVS, out,
                                               **given)
    print(yamnet_convert.format_agreement(result))
    return 0
