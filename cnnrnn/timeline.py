"""Long recordings: a file longer than the model's clip is predicted window by window (:func:`predict_windows`),
with silence and sounds that are not speech marked, not classified; the windows' probabilities become
``timeline.csv``, one timeline figure per file and one row per file in ``predictions.csv``. The family's predictor
is passed in (:func:`cnnrnn.predict.predict` gives its dispatch to the families), so this module names no family.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .audio import SILENCE_TOP_DB

log = logging.getLogger("cnnrnn.predict")


#: The window predictions of long-recording prediction, written beside ``predictions.csv``: one row per window,
#: columns ``file``, ``start_s``, ``end_s`` (seconds), ``label``, ``confidence``, ``p_<label>`` per class,
#: ``voiced`` (the fraction of the window that is not silence).
TIMELINE_FILE = "timeline.csv"
#: The ``label`` of a window that is silence (not classified: NaN probabilities), and of one the family skipped.
SILENCE_LABEL = "silence"
SKIPPED_LABEL = "skipped"
#: A file at most this much longer than the model's clip (seconds) still counts as one clip.
CLIP_TOLERANCE_S = 1e-3


@dataclass
class WindowPlan:
    """What :func:`predict_windows` cuts.

    Attributes:
        files: the audio files. window_s, hop_s: window length and hop in seconds.
        explicit: the user gave ``window`` (every file is cut); else only files longer than ``clip_s`` are.
        clip_s: the model's clip length in seconds (``None``: it takes inputs of any length).
        sr: the rate in Hz the files are read at (the model's; ``None``: each file's own).
        spec: the run's input settings (for the spectrogram of the figure: ``n_mels``, ``n_fft``, ...).
    """

    files: list[Path]
    window_s: float
    hop_s: float
    explicit: bool
    clip_s: float | None
    sr: int | None
    spec: dict = field(default_factory=dict)


def audio_inputs(source: Any) -> list[Path] | None:
    """The audio files of ``source`` (a file, a folder searched recursively, or a list of them), or ``None``
    when any part of it is something else: an image, a pickle, a CSV, a filelist, a folder without audio, a
    missing path (the family then handles the input as it is)."""
    from .audio import AUDIO_EXTENSIONS, list_audio

    files: list[Path] = []
    for item in [source] if isinstance(source, (str, Path)) else list(source):
        if not isinstance(item, (str, Path)):
            return None
        path = Path(item)
        if path.is_dir() and list_audio(path):
            files += list_audio(path)
        elif path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS:
            files.append(path)
        else:
            return None
    return files or None






#: The timeline figure's spectrogram keeps at most this many frames (columns): a longer recording's frames are
#: pooled (the maximum of each group of neighbours), which a figure about 1,700 pixels wide cannot tell apart.
FIGURE_FRAMES = 4000


def _display_mel(y, sr: int, spec: dict):
    """``(db, hop_length, fmin, fmax)``: the log-mel of a whole recording for its timeline figure, with the run's
    mel settings where it records them (:class:`cnnrnn.features.LogMelConfig` defaults otherwise), its frames
    pooled to at most :data:`FIGURE_FRAMES` (``hop_length`` is then the pooled hop)."""
    import numpy as np

    from .features import LogMelConfig, log_mel

    keys = ("n_mels", "n_fft", "hop_length", "fmin", "top_db")
    values = {k: spec[k] for k in keys if isinstance(spec.get(k), (int, float)) and spec[k] is not None}
    fmax = spec.get("fmax") if isinstance(spec.get("fmax"), (int, float)) and spec["fmax"] <= sr / 2 else None
    cfg = LogMelConfig(sr=sr, fmax=fmax, **values)
    if cfg.fmin >= (fmax or sr / 2):
        cfg.fmin = 0.0
    db = log_mel(y, cfg)
    group = -(-db.shape[1] // FIGURE_FRAMES)
    if group > 1:
        pad = -db.shape[1] % group
        db = np.pad(db, ((0, 0), (0, pad)), mode="edge").reshape(db.shape[0], -1, group).max(axis=2)
    return db, cfg.hop_length * group, cfg.fmin, cfg.fmax


def _merged(values: Sequence) -> Any:
    """One value for a file from its windows' values of a column: the value when they agree, else the distinct
    values joined with ``+``."""
    distinct = list(dict.fromkeys(str(v) for v in values))
    return values[0] if len(distinct) == 1 else "+".join(sorted(distinct))


def predict_windows(plan: WindowPlan, paths: Sequence[Path], resolved: Sequence[tuple],
                    out_dir: str | Path | None, predictor: Callable[[Any], dict], *, progress: bool = True,
                    silence_db: float | None = SILENCE_TOP_DB, speech_check: bool = True,
                    figures: bool = True) -> dict:
    """Predict audio files window by window (long-recording prediction, the work of :func:`predict`).

    Each file is read once at the model's rate (:func:`cnnrnn.audio.load_audio`) and, when ``plan.explicit`` or
    it is longer than the model's clip, cut into windows of ``plan.window_s`` every ``plan.hop_s`` seconds
    (:func:`cnnrnn.audio.windows`; the last window reaches the file's end). Windows that are silence
    (:func:`cnnrnn.audio.voiced_fraction` below :data:`cnnrnn.audio.SILENCE_MIN_VOICED`, at ``silence_db``) are
    marked and not classified; so are, with ``speech_check``, the others that hold no speech
    (:func:`cnnrnn.speech.window_speech` and :func:`cnnrnn.speech.enough_speech`: label ``no_speech``). The rest
    go to the family's ``predict_run`` as :class:`cnnrnn.audio.Clip` waveforms in memory (ids
    ``<stem>@<start s>``), which reads each as it reads a file (padding a short last window as the model's
    training did). A file that fits in one clip is one clip, predicted as before (``no_speech`` when
    :func:`cnnrnn.speech.is_speech` says so).

    Writes, in the family's output folder:

    * ``timeline.csv`` (:data:`TIMELINE_FILE`): one row per window (label ``silence``, or ``no_speech``, and NaN
      probabilities for a window not classified, ``skipped`` for a window the family could not use; ``voiced``
      and ``speech``: the fractions of the window that are not silence and that are speech, NaN without the
      speech check);
    * with ``figures``, ``timeline_<stem>.png`` per cut file (:func:`cnnrnn.plots.plot_timeline`: its log-mel spectrogram above
      the label of each window, ``silence`` and ``no_speech`` grey, and the probabilities as stacked areas, on one
      time axis);
    * ``predictions.csv``: one row per file: for a cut file the mean of its classified windows' probabilities
      (``windows``: how many; ``silent_windows``, ``no_speech_windows``), the family's other columns merged (one
      value when the windows agree); a file none of whose windows holds speech (but not all silence): label
      ``no_speech``, NaN probabilities.

    Returns:
        as :func:`predict`, with ``"timeline"`` (the ``timeline.csv`` DataFrame), ``"windows"`` (the settings:
        ``window_s``, ``hop_s``, ``clip_s``, ``silence_db``, ``min_voiced``, ``speech_check``, ``min_speech_s``)
        and, with ``speech_check``, ``"no_speech"`` (the files labelled ``no_speech``).

    Raises:
        ValueError: nothing to classify (every file unusable, or every window silence).
        cnnrnn.speech.SpeechCheckError: the speech check cannot run (onnxruntime or its model file missing).
    """
    import numpy as np
    import pandas as pd
    from tqdm import tqdm

    from .artifacts import atomic_write_bytes
    from .audio import SILENCE_MIN_VOICED, AudioError, Clip, load_audio, voiced_fraction, windows
    from .plots import plot_timeline
    from .reports import write_report
    from .speech import MIN_SPEECH_S, NO_SPEECH, enough_speech, is_speech, no_speech_rows, window_speech

    records: list[dict] = []
    clips: list[Clip] = []
    spare: list[Clip] = []  # what holds no speech: classified only when nothing else is (to learn the table)
    skipped: dict[str, list[str]] = {}
    keys: set[str] = set()
    for path in tqdm(plan.files, desc="windows", unit="file", disable=not progress or len(plan.files) < 2):
        try:
            y, sr = load_audio(path, plan.sr)
        except AudioError as exc:
            skipped.setdefault(exc.reason, []).append(str(path))
            log.warning("skipped %s", exc)
            continue
        key, k = path.stem, 1
        while key in keys:  # two files of one name in different folders
            k += 1
            key = f"{path.stem}~{k}"
        keys.add(key)
        duration = len(y) / sr
        if not plan.explicit and duration <= plan.clip_s + CLIP_TOLERANCE_S:
            quiet = speech_check and not is_speech(y, sr)
            (spare if quiet else clips).append(Clip(key, path, y, sr))
            records.append({"path": path, "key": key, "cut": False, "no_speech": quiet})
            continue
        starts, frames = windows(y, sr, plan.window_s, plan.hop_s)
        voiced = (voiced_fraction(y, sr, starts, plan.window_s, silence_db) if silence_db is not None
                  else np.ones(len(starts)))
        silent = voiced < SILENCE_MIN_VOICED
        ends = np.minimum(starts + plan.window_s, duration)
        speech_s = window_speech(y, sr, starts, plan.window_s) if speech_check else np.full(len(starts), np.nan)
        quiet = ~silent & ~enough_speech(speech_s, ends - starts) if speech_check else np.zeros(len(starts), bool)
        ids = [f"{key}@{s:.3f}" for s in starts]
        for i in np.flatnonzero(~silent):
            clip = Clip(ids[i], path, frames[i][: len(y) - int(round(starts[i] * sr))], sr, starts[i])
            (spare if quiet[i] else clips).append(clip)
        records.append({"path": path, "key": key, "cut": True, "ids": ids, "starts": starts, "silent": silent,
                        "quiet": quiet, "ends": ends, "voiced": voiced,
                        "speech": np.minimum(speech_s / np.maximum(ends - starts, 1e-9), 1.0),
                        "duration": duration, "mel": _display_mel(y, sr, plan.spec), "sr": sr})
    if not clips and not spare:
        raise ValueError(f"nothing to classify in {len(plan.files)} file(s): "
                         + (f"skipped: {skipped}" if skipped else "") + (
                             ("; " if skipped else "") + "every window is silence" if records else ""))

    result = predictor(clips or spare)
    table = result["predictions"].drop_duplicates("id").set_index("id")
    labels = [str(c)[2:] for c in table.columns if str(c).startswith("p_")]
    pcols = [f"p_{lab}" for lab in labels]
    carried = [c for c in table.columns if c not in ("source", "true", "predicted", "predicted_index", "confidence")
               and not str(c).startswith("p_")]
    single = {r["key"]: str(r["path"]) for r in records if not r["cut"]}
    unheard = {c.id for c in spare}
    for reason, items in result["skipped"].items():
        skipped.setdefault(reason, []).extend(single.get(str(item), str(item)) for item in items
                                              if str(item) not in unheard)

    timeline, ids, sources, proba, no_speech = [], [], [], [], []
    columns: dict[str, list] = {c: [] for c in carried + ["windows", "silent_windows", "no_speech_windows"]}

    def add_row(rec: dict, p, rows: list, classified: int, silent: int, quiet: int) -> None:
        ids.append(rec["key"])
        sources.append(str(rec["path"]))
        proba.append(p)
        for c in carried:
            columns[c].append(_merged([r[c] for r in rows]) if rows else np.nan)
        columns["windows"].append(classified)
        columns["silent_windows"].append(silent)
        columns["no_speech_windows"].append(quiet)

    for rec in records:
        if not rec["cut"]:
            if rec["no_speech"]:
                no_speech.append(rec["key"])
                add_row(rec, np.full(len(labels), np.nan), [], 0, 0, 1)
            elif rec["key"] in table.index:
                row = table.loc[rec["key"]]
                add_row(rec, row[pcols].to_numpy(float), [row], 1, 0, 0)
            continue
        used, rows = [], []
        for i, window_id in enumerate(rec["ids"]):
            entry = {"file": str(rec["path"]), "start_s": round(float(rec["starts"][i]), 6),
                     "end_s": round(float(rec["ends"][i]), 6)}
            if not rec["silent"][i] and not rec["quiet"][i] and window_id in table.index:
                row = table.loc[window_id]
                p = row[pcols].to_numpy(float)
                entry.update(label=row["predicted"], confidence=float(row["confidence"]))
                used.append(p)
                rows.append(row)
            else:
                p = np.full(len(labels), np.nan)
                entry.update(label=SILENCE_LABEL if rec["silent"][i] else NO_SPEECH if rec["quiet"][i]
                             else SKIPPED_LABEL, confidence=np.nan)
            entry.update({c: v for c, v in zip(pcols, p)}, voiced=round(float(rec["voiced"][i]), 4),
                         speech=round(float(rec["speech"][i]), 4))
            timeline.append(entry)
        rec["classified"] = len(used)
        n_silent, n_quiet = int(rec["silent"].sum()), int(rec["quiet"].sum())
        if not used and n_quiet:  # no window holds speech: the file is no_speech
            no_speech.append(rec["key"])
            add_row(rec, np.full(len(labels), np.nan), [], 0, n_silent, n_quiet)
            continue
        if not used:  # the file is skipped, under its windows' reason(s) (which then list the file, not them)
            mine = set(rec["ids"])
            why = sorted({reason for reason, items in skipped.items() if mine & set(items)}) or [SILENCE_LABEL]
            skipped = {reason: [item for item in items if item not in mine] for reason, items in skipped.items()}
            skipped.setdefault("+".join(why), []).append(str(rec["path"]))
            continue
        add_row(rec, np.mean(used, axis=0), rows, len(used), n_silent, n_quiet)
    first = result["files"].get("predictions")
    out = Path(first).parent if first else Path(out_dir or "predictions")
    report = write_report(out, np.asarray(proba, np.float32).reshape(len(ids), len(labels)), labels, ids, None,
                          family=result["family"], sources=sources, columns=columns)
    predictions = report["predictions"]
    if no_speech:
        no_speech_rows(predictions, predictions["id"].isin(no_speech).to_numpy())
        atomic_write_bytes(Path(report["files"]["predictions"]), predictions.to_csv(index=False).encode("utf-8"))
    frame = pd.DataFrame(timeline, columns=["file", "start_s", "end_s", "label", "confidence", *pcols, "voiced",
                                            "speech"])
    frame[["confidence", *pcols]] = frame[["confidence", *pcols]].astype(np.float32)
    files = {**result["files"], **report["files"],
             "timeline": str(atomic_write_bytes(out / TIMELINE_FILE, frame.to_csv(index=False).encode("utf-8")))}
    cut = [r for r in records if r["cut"]]
    plots = []
    for rec in tqdm(cut if figures else [], desc="timeline figures", unit="file", disable=not progress or len(cut) < 2):
        db, hop_length, fmin, fmax = rec["mel"]
        plots.append(str(plot_timeline(frame, out / f"timeline_{rec['key']}.png", labels=labels, db=db,
                                       sr=rec["sr"], hop_length=hop_length, fmin=fmin, fmax=fmax,
                                       file=str(rec["path"]))))
    files["timeline_plots"] = plots
    notes = list(result.get("notes") or ())
    how = (f"of {plan.window_s:g} s every {plan.hop_s:g} s" +
           ("" if plan.explicit else " (--window, --hop change them)"))
    for rec in cut[:5]:
        why = ("" if plan.explicit or plan.clip_s is None else
               f"{rec['duration']:.1f} s is longer than the model's {plan.clip_s:g} s clip: ")
        n, k, q = len(rec["ids"]), rec.get("classified", 0), int(rec["quiet"].sum())
        row = (f"its row in predictions.csv is the mean of {k} window{'s' * (k != 1)}" if k else
               f"no window holds speech: its row in predictions.csv is {NO_SPEECH}" if q else
               "none of its windows was classified: no row in predictions.csv")
        quiet_note = f" and {q} without speech ({NO_SPEECH})" if q else ""
        notes.append(f"{rec['path'].name}: {why}predicted in {n} window{'s' * (n != 1)} {how}, "
                     f"{int(rec['silent'].sum())} of them silence{quiet_note}, marked and not classified; {row}; "
                     f"the windows are in {TIMELINE_FILE}")
    if len(cut) > 5:
        notes.append(f"... and {len(cut) - 5} more file(s) predicted in windows {how}")
    settings = {"window_s": plan.window_s, "hop_s": plan.hop_s, "clip_s": plan.clip_s, "silence_db": silence_db,
                "min_voiced": SILENCE_MIN_VOICED, "speech_check": speech_check,
                "min_speech_s": MIN_SPEECH_S if speech_check else None}
    skipped = {reason: items for reason, items in skipped.items() if items}
    out_result = {**result, "predictions": predictions, "metrics": None, "files": files, "skipped": skipped,
                  "notes": notes, "timeline": frame, "windows": settings}
    if speech_check:
        out_result["no_speech"] = [src for i, src in zip(ids, sources) if i in set(no_speech)]
        windows_quiet = int(sum(r["quiet"].sum() for r in cut))
        if out_result["no_speech"] or windows_quiet:
            log.warning("speech check: %d window(s) and %d file(s) hold no speech: labelled %s, no emotion given; "
                        "--classify-anyway classifies them", windows_quiet, len(out_result["no_speech"]), NO_SPEECH)
    return out_result
