"""Every fold of a filelist folder, end to end: fine-tune, train and score each, then one summary.

``cnnrnn filelists`` (:func:`cnnrnn.dcnn.filelists.prepare_filelists`) writes a corpus's folds as
``<filelists>/kfold/fold{k}_{train,test}.txt`` (k from 1) and ``<filelists>/loso/{speaker}_{train,test}.txt``
beside ``labels.json``, as the DCNN-BLSTMWA code's ``011_prep_mydata_[dname].py`` did; that code then ran its
two training scripts once per list by hand. :func:`run_folds` runs both steps (:func:`cnnrnn.dcnn.train.finetune`,
:func:`cnnrnn.dcnn.train.train`) on every fold of one scheme and writes, under ``out_dir``:

* ``<fold>/finetune/`` and ``<fold>/train/``: each step's run folder (checkpoint, ``run.json``, metrics,
  predictions, confusion PNGs), as ``cnnrnn dcnn finetune`` / ``train`` write them;
* ``summary.json``: per fold the test utterances' UA, WA and macro F1 of step 2 (and step 1's utterance UA),
  their mean ± standard deviation over the folds (:func:`cnnrnn.evaluation.summarise_folds`, population std),
  and the pooled scores of every fold's predictions together;
* ``summary.md`` and ``summary.csv``: the same as a table, one row per fold, then the mean and std rows.

A rerun resumes: a step whose run folder holds a ``run.json`` with the same config, the same input fingerprint
(:func:`cnnrnn.dcnn.train.step_inputs`: the filelists' rows, every wav's content, the labels and, for step 2, the
DCNN) and its metrics file is not trained again (a fold cut short restarts at the step it lost; a fold whose audio,
filelists or labels changed is trained again). Each file's features are computed once for all folds (the ``cache``
of :func:`cnnrnn.dcnn.data.load_features`), and only when some fold still has to train.

``out_dir`` is claimed first (kind :data:`FOLDS_KIND`: a new or empty folder, or a ``run-folds`` output) and
written under its ``run-folds`` lock: a second ``run-folds`` into it is refused while the first runs.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..artifacts import LABELS_FILE, atomic_write_bytes, load_json, load_labels, save_json
from ..config import override
from ..evaluation import classification_metrics, summarise_folds
from ..runs import MANIFEST_FILE, ManifestError, read_manifest
from .config import DCNN_FILE, FAMILY, DcnnConfig, read_norm_stats

log = logging.getLogger("cnnrnn.dcnn")

#: The fold schemes of :func:`cnnrnn.dcnn.filelists.prepare_filelists`: its sub-folders of filelists.
SCHEMES = ("kfold", "loso")
#: The step run folders inside each fold's folder.
STEPS = ("finetune", "train")
#: The metrics summarised per fold.
KEYS = ("ua", "wa", "f1_macro")
SUMMARY_JSON, SUMMARY_MD, SUMMARY_CSV = "summary.json", "summary.md", "summary.csv"
#: The kind of folder ``run-folds`` writes (:func:`cnnrnn.outputs.claim_folder`).
FOLDS_KIND = "dcnn folds"


def is_folds_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a ``run-folds`` output written before folder markers existed: its ``summary.json``,
    or a fold folder with a step's run folder (``<fold>/finetune/``, ``<fold>/train/``)."""
    from .train import is_run_folder

    if (folder / SUMMARY_JSON).is_file():
        return True
    try:
        return any(is_run_folder(fold / step) for fold in folder.iterdir() if fold.is_dir() for step in STEPS)
    except OSError:
        return False


@dataclass(frozen=True)
class FoldLists:
    """One fold's filelists: ``name`` (``fold1``, or the held-out speaker for LOSO), ``train`` and ``test``."""

    name: str
    train: Path
    test: Path


def fold_filelists(filelists: str | Path, scheme: str = "kfold") -> list[FoldLists]:
    """The folds a filelist folder holds for ``scheme``: ``kfold/fold{k}_train.txt`` + ``fold{k}_test.txt``
    in the order of ``k``, or ``loso/{speaker}_train.txt`` + ``{speaker}_test.txt`` sorted by speaker.

    Raises:
        ValueError: unknown scheme; a test list without its train list (or the reverse).
        FileNotFoundError: no ``<filelists>/<scheme>/`` folder, or no fold in it.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    folder = Path(filelists) / scheme
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist: write the filelists with `cnnrnn filelists --corpus C "
                                f"--root DIR --out {filelists}`")
    names = {part: {p.name[: -len(f"_{part}.txt")] for p in folder.glob(f"*_{part}.txt")} for part in ("train", "test")}
    unpaired = sorted(names["train"] ^ names["test"])
    if unpaired:
        raise ValueError(f"{folder}: fold(s) {unpaired} lack their train or test list")
    if scheme == "kfold":
        bad = sorted(n for n in names["test"] if not re.fullmatch(r"fold\d+", n))
        if bad:
            raise ValueError(f"{folder}: k-fold lists are named fold<k>_train.txt / fold<k>_test.txt, not {bad}")
        order = sorted(names["test"], key=lambda n: int(n[4:]))
    else:
        order = sorted(names["test"])
    if not order:
        raise FileNotFoundError(f"{folder} holds no <fold>_train.txt / <fold>_test.txt pair")
    return [FoldLists(n, folder / f"{n}_train.txt", folder / f"{n}_test.txt") for n in order]


def fold_configs(finetune_cfg: DcnnConfig, train_cfg: DcnnConfig, lists: FoldLists, labels_file: str | Path,
                 out_dir: str | Path) -> tuple[DcnnConfig, DcnnConfig]:
    """The two steps' configs of one fold: its filelists and labels, run folders ``<out_dir>/<fold>/finetune``
    and ``<out_dir>/<fold>/train``, and step 2 reading step 1's DCNN."""
    common = {"data.filelist_train": str(lists.train), "data.filelist_test": str(lists.test),
              "data.labels_file": str(labels_file), "train.log_root": str(Path(out_dir) / lists.name)}
    return (override(finetune_cfg, {**common, "train.name": STEPS[0]}),
            override(train_cfg, {**common, "train.name": STEPS[1], "train.finetune_name": STEPS[0]}))


def _plain(value: Any) -> Any:
    """A value as JSON gives it back (tuples → lists), to compare configs with recorded ones."""
    return json.loads(json.dumps(value, default=str))


def finished_step(cfg: DcnnConfig, step: str, inputs: dict | None = None) -> dict | None:
    """The metrics of a step already run with exactly ``cfg`` (its run folder holds a ``run.json`` of this step
    whose config equals ``cfg`` and its ``metrics_<step>.json``) and, when ``inputs`` is given
    (:func:`cnnrnn.dcnn.train.step_inputs`), on inputs of that fingerprint; else ``None``."""
    run_dir = cfg.run_dir
    metrics = run_dir / f"metrics_{step}.json"
    if not (run_dir / MANIFEST_FILE).is_file() or not metrics.is_file():
        return None
    try:
        manifest = read_manifest(run_dir, families=[FAMILY])
    except (ManifestError, ValueError, OSError) as exc:
        log.warning("%s: unreadable run.json (%s): the step runs again", run_dir, exc)
        return None
    if manifest.extra.get("step") != step or _plain(manifest.config) != _plain(cfg.to_dict()):
        log.info("%s: another config than this one: the step runs again", run_dir)
        return None
    if inputs is not None and (manifest.inputs.get(step) or {}).get("sha1") != inputs["sha1"]:
        log.warning("%s: made from other audio, filelists, labels or DCNN than these (or before input fingerprints "
                    "were recorded): the step runs again", run_dir)
        return None
    return load_json(metrics)


def _release_models() -> None:
    """Free the fold's models before the next fold builds its own (Keras' global state and memory)."""
    import keras

    keras.backend.clear_session()


def _fold_row(name: str, lists: FoldLists, step1: dict, step2: dict, status: str) -> dict:
    m = step2["utterances"]
    return {"fold": name, "n": int(m["n"]), **{k: float(m[k]) for k in KEYS},
            "finetune_ua": float(step1["utterances"]["ua"]), "status": status,
            "filelist_test": str(lists.test)}


def _pooled(out_dir: Path, names: Sequence[str], labels: Sequence[str]) -> dict:
    """UA, WA, macro F1 of every fold's step-2 test predictions together (``predictions_train.csv``)."""
    import pandas as pd

    frames = [pd.read_csv(out_dir / n / STEPS[1] / "predictions_train.csv", dtype={"id": str}) for n in names]
    df = pd.concat(frames, ignore_index=True)
    index = {lab: i for i, lab in enumerate(labels)}
    m = classification_metrics([index[t] for t in df["true"]], [index[p] for p in df["predicted"]], len(labels))
    return {"n": int(len(df)), **{k: float(m[k]) for k in KEYS}}


def _tables(rows: Sequence[dict], summary: dict) -> tuple[str, str]:
    """The per-fold table as markdown and CSV (fold rows, then ``mean`` and ``std``)."""
    head = ["fold", "n", "UA", "WA", "F1 (macro)", "step-1 UA", "status"]
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    csv = ["fold,n,ua,wa,f1_macro,finetune_ua,status"]
    for r in rows:
        md.append(f"| {r['fold']} | {r['n']} | {r['ua']:.4f} | {r['wa']:.4f} | {r['f1_macro']:.4f} | "
                  f"{r['finetune_ua']:.4f} | {r['status']} |")
        csv.append(f"{r['fold']},{r['n']},{r['ua']:.6f},{r['wa']:.6f},{r['f1_macro']:.6f},{r['finetune_ua']:.6f},"
                   f"{r['status']}")
    s = summary
    md.append("| **mean ± std** | " + str(sum(r["n"] for r in rows)) + " | "
              + " | ".join(f"{s[k]['mean']:.4f} ± {s[k]['std']:.4f}" for k in (*KEYS, "finetune_ua")) + " | |")
    for stat in ("mean", "std"):
        csv.append(f"{stat},," + ",".join(f"{s[k][stat]:.6f}" for k in (*KEYS, "finetune_ua")) + ",")
    return "\n".join(md) + "\n", "\n".join(csv) + "\n"


def run_folds(filelists: str | Path, out_dir: str | Path, finetune_cfg: DcnnConfig, train_cfg: DcnnConfig, *,
              scheme: str = "kfold", folds: Sequence[str] | None = None, progress: bool = True,
              verbose: int = 0) -> dict:
    """Fine-tune, train and score every fold of ``<filelists>/<scheme>/``, then write the summary.

    Args:
        filelists: the folder ``cnnrnn filelists`` wrote (``labels.json``, ``kfold/``, ``loso/``).
        out_dir: output folder: ``<fold>/finetune/``, ``<fold>/train/``, ``summary.json``/``.md``/``.csv``.
        finetune_cfg, train_cfg: the two steps' configs (e.g. the presets ``<name>_finetune`` and
            ``<name>_train``); their filelists, labels file and run folders are set per fold
            (:func:`fold_configs`).
        scheme: ``kfold`` or ``loso``.
        folds: only these folds (names as :func:`fold_filelists` gives them: ``fold1``, or a speaker id).
        progress: a progress bar over the folds (and the feature bars). verbose: Keras ``fit`` verbosity.

    Returns:
        The summary written to ``summary.json``: ``{"scheme", "filelists", "labels", "folds": [{"fold", "n",
        "ua", "wa", "f1_macro", "finetune_ua", "status" (``trained`` | ``resumed`` | ``step 2 trained``),
        "filelist_test"}], "summary": {key: {"mean", "std"}}, "pooled": {"n", "ua", "wa", "f1_macro"},
        "files": {...}}``.

    Raises:
        FileNotFoundError: no filelists or no ``labels.json``.
        ValueError: unknown scheme or fold names; the steps' feature settings differ; bad filelists (as
            :func:`cnnrnn.dcnn.train.finetune`).
        cnnrnn.outputs.OutputFolderError: ``out_dir`` holds other files or is another command's (nothing was
            written).
        cnnrnn.outputs.FolderInUseError: another ``run-folds`` writes ``out_dir``, or ``cnnrnn filelists`` writes
            ``filelists``.
    """
    from ..outputs import check_not_locked, claim_folder, writing_stage
    from .filelists import FILELISTS_STAGE

    filelists = Path(filelists)
    check_not_locked(filelists, FILELISTS_STAGE, f"run the folds of {filelists}")
    out = claim_folder(out_dir, FOLDS_KIND, recognise=is_folds_folder)
    with writing_stage(out, "run-folds", [(out, [SUMMARY_JSON, SUMMARY_MD, SUMMARY_CSV])]):
        return _run_folds(filelists, out, finetune_cfg, train_cfg, scheme, folds, progress, verbose)


def _run_folds(filelists: Path, out: Path, finetune_cfg: DcnnConfig, train_cfg: DcnnConfig, scheme: str,
               folds: Sequence[str] | None, progress: bool, verbose: int) -> dict:
    from tqdm import tqdm

    from .data import load_features, normalization_stats
    from .train import finetune, step_inputs, train

    labels_file = filelists / LABELS_FILE
    if not labels_file.is_file():
        raise FileNotFoundError(f"{labels_file} does not exist: the filelist folder of `cnnrnn filelists` has one")
    labels = load_labels(labels_file)
    every = fold_filelists(filelists, scheme)
    chosen = every
    if folds:
        known = {f.name: f for f in every}
        unknown = [n for n in folds if n not in known]
        if unknown:
            raise ValueError(f"unknown fold(s) {unknown}; {scheme} folds here: {sorted(known)}")
        chosen = [known[n] for n in dict.fromkeys(folds)]
    features = finetune_cfg.data.features()
    if features.settings() != train_cfg.data.features().settings():
        raise ValueError("the two steps' configs have different feature settings (data section); step 2 reads "
                         "the fine-tuned DCNN's features")
    cache: dict = {}
    digests: dict = {}  # each wav's content fingerprint, hashed once for all folds
    rows = []
    bar = tqdm(chosen, desc=f"{scheme} folds", unit="fold", disable=not progress)
    for lists in bar:
        bar.set_postfix_str(lists.name)
        cfg1, cfg2 = fold_configs(finetune_cfg, train_cfg, lists, labels_file, out)
        dcnn = cfg1.run_dir / DCNN_FILE
        inputs1 = step_inputs(cfg1, labels, digests=digests)
        step1 = finished_step(cfg1, STEPS[0], inputs1)
        step2 = None if step1 is None else finished_step(cfg2, STEPS[1], step_inputs(cfg2, labels, dcnn, digests))
        if step1 is not None and step2 is not None:
            log.info("%s: done before, not retrained", lists.name)
            rows.append(_fold_row(lists.name, lists, step1, step2, "resumed"))
            continue
        sets = {part: load_features(getattr(lists, part), labels, features, cfg1.data.root, progress, cache=cache)
                for part in ("train", "test")}
        if step1 is None:
            stats = normalization_stats(sets["train"], [sets["test"]], features)
            segmented = {part: s.segmented(features, stats) for part, s in sets.items()}
            step1 = finetune(cfg1, progress=progress, verbose=verbose, sets=segmented, stats=stats,
                             inputs=inputs1)["metrics"]
            status = "trained"
        else:
            stats = read_norm_stats(dcnn)
            segmented = {part: s.segmented(features, stats) for part, s in sets.items()}
            status = "step 2 trained"
        step2 = train(cfg2, progress=progress, verbose=verbose, sets=segmented,
                      inputs=step_inputs(cfg2, labels, dcnn, digests))["metrics"]
        _release_models()
        row = _fold_row(lists.name, lists, step1, step2, status)
        log.info("%s: UA %.4f WA %.4f F1-macro %.4f (n %d)", lists.name, row["ua"], row["wa"], row["f1_macro"],
                 row["n"])
        rows.append(row)
    summary = summarise_folds(rows, (*KEYS, "finetune_ua"))
    result = {"scheme": scheme, "filelists": str(filelists), "labels": labels, "folds": rows, "summary": summary,
              "std": "population (ddof 0) over the folds",
              "pooled": _pooled(out, [r["fold"] for r in rows], labels),
              "configs": {"finetune": finetune_cfg.to_dict(), "train": train_cfg.to_dict()},
              "files": {name: str(out / name) for name in (SUMMARY_JSON, SUMMARY_MD, SUMMARY_CSV)}}
    md, csv = _tables(rows, summary)
    title = f"# DCNN-BLSTMwA, {scheme} folds of {filelists}\n\n"
    pooled = result["pooled"]
    atomic_write_bytes(out / SUMMARY_MD, (title + md + f"\npooled over the folds (n {pooled['n']}): UA "
                                          f"{pooled['ua']:.4f}, WA {pooled['wa']:.4f}, F1 (macro) "
                                          f"{pooled['f1_macro']:.4f}\n").encode("utf-8"))
    atomic_write_bytes(out / SUMMARY_CSV, csv.encode("utf-8"))
    save_json(result, out / SUMMARY_JSON)
    return result
