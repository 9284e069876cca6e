"""Build the model shipped inside the package: ``cnnrnn/pretrained/emodb/`` (``cnnrnn predict --model emodb``).

The recipe is a benchmark entry of :mod:`emodb_loso` (``--entry``, default the CNNRNN family's best): the same
preset, trained once on **all** ten speakers of ``emodb-535`` for a fixed number of epochs, the median of the
epochs that the entry's leave-one-speaker-out folds chose on their held-out *training* speaker (no test label
chose it). Speaker normalisation statistics of the ten EmoDB speakers (and the global ones, the fallback) are
stored beside the model. The model card (``MODEL_CARD.md``) takes its figures from the entry's committed LOSO
results, so the card states what the recipe scores on speakers it never heard.

The folder is a minimal CNNRNN run: ``run.json``, ``config.json``, ``labels.json``, ``models/<name>.h5``,
``spectrograms/normalization.json``, ``MODEL_CARD.md``. It is written to a temporary folder, then moved into
place. Run from the repository root (about 2 CPU minutes for the Whisper recipe)::

    nice -n 10 python benchmarks/build_shipped_model.py            # --entry cnnrnn_whisper_ms_l2 --epochs N

A Whisper-backed model holds the frozen encoder blocks it reads: they are stored as float16 (lossless, see
:func:`cnnrnn.artifacts.h5_float16`) so that the model stays under the 10 MB limit, with OpenAI's MIT notice
(``LICENSE``) beside it.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402
from emodb_loso import (DEFAULT_DATA, HEADLINE_SPEAKERS, MODEL_RESULTS, REGISTRY, SPEAKERS,  # noqa: E402
                        _cnnrnn_config, cnnrnn_prepare, now)

SHIPPED = REPO / "cnnrnn" / "pretrained"
MAX_BYTES = 10 * 1024 * 1024

CARD = """# `emodb`: the model shipped with cnnrnn

`cnnrnn predict --model emodb --input speech.wav` (or a folder; `--speaker NAME` when every file is one speaker).

| | |
|---|---|
| family, recipe | CNNRNN, benchmark entry `{entry}`: {description} |
| config | `config.json` here (preset `{preset}`{overrides}) |
| labels (code order) | {labels} |
| input | {sr} Hz mono audio, cut or padded to {duration} s; {n_mels}-band log-mel (n_fft {n_fft}, hop {hop_length}), image {image_size} |
| trained on | all of `emodb-535`: {n} utterances, {n_speakers} speakers ({speakers}), {epochs} epochs ({epoch_rule}) |
| size | {size_kb:.0f} KB{storage} |
| built | {date}, {machine}, `{command}`, {seconds:.0f} s wall |

## How well it recognises emotion

Leave-one-speaker-out on `emodb-535` (`benchmarks/emodb_loso.py`, the same recipe trained on 9 speakers and
scored on the 10th; nothing chosen on the scored speaker):

| | UA (balanced accuracy) | WA | F1-macro |
|---|---|---|---|
| 8 headline speakers (mean ± std over speakers) | {ua8} | {wa8} | {f18} |
| all 10 speakers | {ua10} | {wa10} | {f110} |
| the classical reference, openSMILE ComParE + linear SVM, 8 headline speakers | {ref} | | |

The shipped model itself saw all 10 speakers, so no held-out figure exists for it; the LOSO figures are those of
its recipe. Expect less on other corpora, languages, microphones and spontaneous speech: EmoDB is ten actors
reading ten German sentences in a quiet room.

## Speaker normalisation

The recipe normalises each log-mel band by the speaker's own mean and standard deviation. At prediction,
`--speaker NAME` groups the files of one speaker (or `--speaker-from folder`: one speaker per input folder) and
computes that speaker's statistics from them (their audio only, no labels); a file without a speaker gets the
training data's global statistics (what one clip of an unknown speaker gets), and `predictions.csv` says which each
file got (column `normalization`). The statistics of the ten EmoDB speakers are stored in
`spectrograms/normalization.json`. The same recipe, scored on each held-out speaker as an unknown speaker (global
statistics, no `--speaker`), over the 8 headline speakers: {unknown}. Trained and scored without speaker
normalisation at all: {nonorm}.
{whisper}
## Data terms

Trained on the Berlin Database of Emotional Speech (EmoDB, Burkhardt et al., Interspeech 2005), whose authors
allow its use for research. The weights are derived from it: use them for research only. This differs from the
package's MIT licence, which covers the code, not these weights.
"""


def _fmt(summary: dict | None, key: str) -> str:
    if not summary:
        return "–"
    partial = "" if summary["complete"] else f" (on the {summary['n_folds']} of them that were run)"
    return f"{summary['mean'][key]:.3f} ± {summary['std'][key]:.3f}{partial}"


WHISPER_NOTE = """
## The Whisper blocks inside

The model holds the encoder of OpenAI's Whisper tiny.en up to transformer block {block} (the convolutional stem, the
position table and blocks 1-{block}; frozen in training, so they equal the released weights), stored as float16 (the
released CTranslate2 weights are float16, so nothing is lost; Keras loads them into float32), the head in float32.
Whisper's weights are under the MIT License, copyright (c) 2022 OpenAI: the notice is in `LICENSE` beside this card.
"""


def _config_keeps_last(entry, ctx) -> bool:
    return _cnnrnn_config(entry, ctx).train.monitor == "last"


def _unknown_speaker(results: dict) -> str:
    """Mean ± std UA over the headline speakers of the folds' ``unknown_speaker`` scores (:func:`emodb_loso.cnnrnn_fold`)."""
    values = [f["unknown_speaker"]["ua"] for s, f in results["folds"].items()
              if s in HEADLINE_SPEAKERS and f.get("unknown_speaker")]
    if not values:
        return "–"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" + ("" if len(values) == len(HEADLINE_SPEAKERS) else
                                                              f" (on {len(values)} of them)")


def build(entry_name: str, data: Path, epochs: int | None, name: str = "emodb") -> Path:
    """Train the entry's recipe on all of ``data`` and write ``cnnrnn/pretrained/<name>/``. Returns the folder.

    Raises:
        SystemExit: the entry has no complete LOSO result to choose the epochs from and ``epochs`` is not given,
            or the model is larger than 10 MB.
    """
    from cnnrnn.artifacts import h5_float16, load_json, save_json
    from cnnrnn.cnnrnn.train import cross_validate, input_spec
    from cnnrnn.features import image_of_log_mel
    from cnnrnn.normalize import fit
    from cnnrnn.runs import write_manifest

    entry = REGISTRY[entry_name]
    results = load_json(MODEL_RESULTS / f"{entry_name}.json")
    chosen = [results["folds"][s]["best_epoch"] for s in SPEAKERS if s in results["folds"]]
    if epochs is None:
        if len(chosen) < len(SPEAKERS):
            raise SystemExit(f"{entry_name}: {len(chosen)}/{len(SPEAKERS)} LOSO folds done; give --epochs")
        epochs = int(round(statistics.median(chosen)))
    started = time.perf_counter()
    ctx = {"data": data}
    cnnrnn_prepare(entry, ctx)
    d = ctx["cnnrnn"]
    cfg = _cnnrnn_config(entry, ctx)
    cfg.train.epochs, cfg.train.monitor, cfg.train.selection = epochs, "last", "fold"
    cfg.train.checkpoint_name = f"{name}_cnnrnn.h5"
    speakers = list(d["speakers"])
    stats = fit([m.T for m in d["mels"]], speakers) if cfg.spectrogram.uses_stats else None
    images = np.stack([image_of_log_mel(m, cfg.spectrogram, s, stats) for m, s in zip(d["mels"], speakers)])
    everything = np.arange(len(images))
    with tempfile.TemporaryDirectory(dir=SHIPPED.parent) as tmp:
        work, out = Path(tmp) / "work", Path(tmp) / name
        # one "fold" that trains on everything; monitor "last" keeps the final epoch (its score is the training set's
        # and is not shipped)
        cross_validate(images, d["y"], d["labels"], work, cfg.train, groups=speakers, verbose=0,
                       folds=[(everything, everything)])
        (out / "models").mkdir(parents=True)
        shutil.copy2(work / "models" / cfg.train.checkpoint_name, out / "models" / cfg.train.checkpoint_name)
        whisper = cfg.train.backbone == "whisper"
        if whisper:  # the frozen encoder in float16 (lossless: Whisper's released weights are float16), the head exact
            h5_float16(out / "models" / cfg.train.checkpoint_name, min_size=65536)
            shutil.copy2(SHIPPED / "whisper-tiny.en" / "LICENSE", out / "LICENSE")
        size = (out / "models" / cfg.train.checkpoint_name).stat().st_size
        if size > MAX_BYTES:
            raise SystemExit(f"the model is {size / 1e6:.1f} MB, over the 10 MB limit")
        if whisper:  # the encoder is inside the checkpoint; the config names the package's copy, not this machine's
            cfg.train.weights = "whisper-tiny.en"
        cfg.save(out / "config.json")
        save_json(list(d["labels"]), out / "labels.json")
        if stats is not None:
            save_json(stats.to_dict(), out / "spectrograms" / "normalization.json")
        summary = results["summary"]
        reference = load_json(MODEL_RESULTS / "compare_linear.json")["summary"]["headline_8"]
        pair = load_json(MODEL_RESULTS / f"{entry.pair}.json")["summary"]["headline_8"] if entry.pair and (
            MODEL_RESULTS / f"{entry.pair}.json").is_file() else None
        spec = cfg.spectrogram
        command = " ".join([Path(sys.executable).name] + sys.argv)
        overrides = entry.options.get("overrides") or {}
        card = CARD.format(
            entry=entry_name, description=entry.description, preset=entry.options["preset"],
            overrides=f", overrides {overrides}" if overrides else "", labels=", ".join(d["labels"]),
            sr=spec.sr, duration=spec.duration, n_mels=spec.n_mels, n_fft=spec.n_fft, hop_length=spec.hop_length,
            image_size="×".join(map(str, spec.image_size)), n=len(images), n_speakers=len(set(speakers)),
            speakers=", ".join(sorted(set(speakers))), epochs=epochs, size_kb=size / 1024,
            epoch_rule=("the recipe's fixed epoch count: it keeps the last epoch, none is chosen"
                        if _config_keeps_last(entry, ctx) else
                        f"the median epoch chosen on held-out *training* speakers in the LOSO folds: {sorted(chosen)}"),
            date=now(), machine=machine().get("cpu", "CPU"), command=command,
            seconds=time.perf_counter() - started,
            ua8=_fmt(summary["headline_8"], "ua"), wa8=_fmt(summary["headline_8"], "wa"),
            f18=_fmt(summary["headline_8"], "f1_macro"), ua10=_fmt(summary["all_10"], "ua"),
            wa10=_fmt(summary["all_10"], "wa"), f110=_fmt(summary["all_10"], "f1_macro"),
            ref=_fmt(reference, "ua"), nonorm=_fmt(pair, "ua"), unknown=_unknown_speaker(results),
            storage=" (the Whisper encoder's weights as float16, the head float32)" if whisper else "",
            whisper=WHISPER_NOTE.format(block=cfg.train.whisper_block) if whisper else "")
        (out / "MODEL_CARD.md").write_text(card)
        write_manifest(out, "cnnrnn", cfg.to_dict(), d["labels"],
                       split={"scheme": "all", "folds": 1, "fold": None, "seed": cfg.train.seed,
                              "trained_on": f"all of emodb-535 ({len(images)} utterances, 10 speakers)"},
                       input_spec=input_spec(cfg), checkpoints=[out / "models" / cfg.train.checkpoint_name],
                       extra={"model_card": "MODEL_CARD.md", "recipe": entry_name, "epochs": epochs,
                              "loso_ua_headline_8": summary["headline_8"]["mean"]["ua"],
                              "loso_ua_all_10": summary["all_10"]["mean"]["ua"],
                              "built": now(), "headline_speakers": list(HEADLINE_SPEAKERS)})
        target = SHIPPED / name
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(out), str(target))
    print(f"wrote {target.relative_to(REPO)} ({size / 1024:.0f} KB model, {epochs} epochs)")
    return target


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entry", default="cnnrnn_whisper_ms_l2", choices=[n for n, e in REGISTRY.items()
                                                                  if e.family == "cnnrnn"],
                    help="the emodb_loso entry whose recipe is shipped (default: %(default)s)")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="emodb-535 folder (default: %(default)s)")
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs (default: the median epoch chosen in the entry's LOSO folds)")
    args = ap.parse_args(argv)
    build(args.entry, Path(args.data), args.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
