"""Hostile cases 50-57 of issue 21 (item 6, "Is it speech?"): audio that is not speech given to the shipped model,
and inputs of a type ``cnnrnn predict`` cannot read.

Every case runs ``cnnrnn predict --model emodb`` (the CNNRNN model shipped in the package). The signals are
generated (16 kHz, 16-bit): white noise at full scale, a constant (DC), a pure tone, music without voice (chords of
harmonic tones whose notes change), a long noise recording (cut into windows); the speech is the bundled sample's
real EmoDB recordings. :func:`signal` makes them, for the tests too.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ._common import case, cli, errors, files, outside, sample_wavs, write_wav

SR = 16000
#: The chords of :func:`signal`'s music: A minor, F major, C major, G major (Hz, an octave below middle C up).
CHORDS = ((220.0, 261.63, 329.63), (174.61, 220.0, 261.63), (130.81, 164.81, 196.0), (196.0, 246.94, 293.66))


def signal(kind: str, seconds: float = 2.0, sr: int = SR):
    """A generated signal that is not speech, ``(samples,) float32`` in [-1, 1] at ``sr`` Hz: ``white`` (uniform
    white noise at full scale), ``dc`` (the constant 0.5), ``tone`` (a 440 Hz sine, peak 0.8) or ``music`` (a new
    chord of :data:`CHORDS` every 0.5 s, each note a harmonic tone of 6 partials at ``1 / h`` with a bass note an
    octave down, a 10 ms attack and an exponential decay; peak 0.8)."""
    import numpy as np

    n = int(seconds * sr)
    t = np.arange(n) / sr
    if kind == "white":
        return np.random.default_rng(0).uniform(-1, 1, n).astype(np.float32)
    if kind == "dc":
        return np.full(n, 0.5, np.float32)
    if kind == "tone":
        return (0.8 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    if kind == "music":
        note = int(0.5 * sr)
        y = np.zeros(n)
        for k, start in enumerate(range(0, n, note)):
            tt = t[: min(note, n - start)]
            env = np.minimum(tt / 0.01, 1.0) * np.exp(-tt * 4.0)
            chord = CHORDS[k % len(CHORDS)]
            for f in (*chord, chord[0] / 2):
                y[start: start + len(tt)] += env * sum(np.sin(2 * np.pi * f * h * tt) / h for h in range(1, 7))
        return (0.8 * y / np.abs(y).max()).astype(np.float32)
    raise ValueError(f"unknown signal {kind!r}")


def _predict(tmp: Path, inputs: Path, *extra):
    """``predict --model emodb --input INPUTS --out tmp/out [EXTRA]``: its outcome, predictions.csv (None unless
    it exited 0) and the files written under ``tmp`` outside ``tmp/out``."""
    import pandas as pd

    before, out = files(tmp), tmp / "out"
    outcome = cli("predict", "--model", "emodb", "--input", inputs, "--out", out, *extra)
    table = out / "predictions.csv"
    df = pd.read_csv(table) if outcome.code == 0 and table.is_file() else None
    return outcome, df, outside(before, tmp, out)


def _not_speech(tmp: Path, kind: str, anyway: bool = False) -> dict:
    """``kind`` (2 s) → ``no_speech`` with NaN probabilities, logged; with ``anyway`` also ``--classify-anyway``
    → an emotion."""
    wav = write_wav(tmp / f"{kind}.wav", signal(kind), SR)
    (code, stdout, logs), df, written = _predict(tmp, wav)
    if df is None:
        return {"observed": f"exit {code}; {errors(logs)}", "passed": False, "outside_writes": written}
    p = df[[c for c in df.columns if c.startswith("p_")]]
    ok = (code == 0 and df["predicted"].tolist() == ["no_speech"] and p.isna().all().all()
          and "hold no speech" in logs and '"no_speech"' in stdout)
    observed = f"exit 0; predicted {df['predicted'].tolist()}, probabilities NaN: {bool(p.isna().all().all())}"
    if anyway:
        (code2, _, logs2), df2, written2 = _predict(tmp, wav, "--classify-anyway")
        label = None if df2 is None else df2["predicted"].iloc[0]
        ok &= code2 == 0 and label not in (None, "no_speech")
        observed += f"; --classify-anyway: exit {code2}, predicted {label!r}"
        written += written2
    return {"observed": observed, "passed": bool(ok), "outside_writes": written}


@case(50, "White noise at full scale",
      "`predict --model emodb` on 2 s of uniform white noise (peak 1.0); again with `--classify-anyway`",
      "label `no_speech`, NaN probabilities, logged and listed; with `--classify-anyway` an emotion")
def case_50(tmp: Path) -> dict:
    """Full-scale white noise: no_speech by default (the issue saw happiness 0.77); --classify-anyway classifies."""
    return _not_speech(tmp, "white", anyway=True)


@case(51, "A constant (DC) signal",
      "`predict --model emodb` on 2 s of the constant 0.5",
      "label `no_speech`, NaN probabilities, logged and listed")
def case_51(tmp: Path) -> dict:
    """A DC file: no_speech (the issue saw fear)."""
    return _not_speech(tmp, "dc")


@case(52, "A pure tone",
      "`predict --model emodb` on 2 s of a 440 Hz sine (peak 0.8)",
      "label `no_speech`, NaN probabilities, logged and listed")
def case_52(tmp: Path) -> dict:
    """A pure tone: no_speech."""
    return _not_speech(tmp, "tone")


@case(53, "Music without voice",
      "`predict --model emodb` on 2 s of chords of harmonic tones, a new chord every 0.5 s",
      "label `no_speech`, NaN probabilities, logged and listed")
def case_53(tmp: Path) -> dict:
    """Harmonic music without a voice: no_speech."""
    return _not_speech(tmp, "music")


@case(54, "An .m4a file",
      "`predict --model emodb --input speech.m4a` (a format libsndfile does not decode)",
      "exit 2, one line naming the file, every audio type that loads (.wav .flac .ogg .mp3) and how to convert")
def case_54(tmp: Path) -> dict:
    """An .m4a input: one line listing the audio types that load and saying to convert with ffmpeg."""
    from cnnrnn.audio import AUDIO_EXTENSIONS

    m4a = tmp / "speech.m4a"
    shutil.copy(sample_wavs(1)[0], m4a)  # a wav named .m4a: refused by its type, before it is read
    (code, _, logs), _, written = _predict(tmp, m4a)
    lines = errors(logs)
    ok = (code == 2 and len(lines) == 1 and str(m4a) in lines[0] and "ffmpeg" in lines[0]
          and all(ext in lines[0] for ext in AUDIO_EXTENSIONS))
    return {"observed": f"exit {code}; {lines[0] if lines else 'no error line'}", "passed": bool(ok),
            "outside_writes": written}


@case(55, "A folder of unsupported files and a dangling link",
      "`predict --input` a folder holding an .m4a, a .txt and a symbolic link `b.wav` to a missing file",
      "exit 2, one line: what was found and skipped, counted per reason (unsupported type, dangling link)")
def case_55(tmp: Path) -> dict:
    """Nothing usable in a folder: one line counting what was skipped, per reason."""
    folder = tmp / "in"
    folder.mkdir()
    shutil.copy(sample_wavs(1)[0], folder / "a.m4a")
    (folder / "notes.txt").write_text("not audio\n", encoding="utf-8")
    os.symlink(tmp / "gone" / "b.wav", folder / "b.wav")
    (code, _, logs), _, written = _predict(tmp, folder)
    lines = errors(logs)
    line = lines[0] if lines else ""
    ok = (code == 2 and len(lines) == 1 and "2 file(s) of an unsupported type (.m4a 1, .txt 1)" in line
          and "1 dangling link" in line and "b.wav" in line)
    return {"observed": f"exit {code}; {line or 'no error line'}", "passed": bool(ok), "outside_writes": written}


@case(56, "A long noise recording",
      "`predict --model emodb` on 6 s of white noise (longer than the model's 2 s clip: cut into windows)",
      "every window `no_speech` in timeline.csv, drawn grey; the file's row `no_speech`")
def case_56(tmp: Path) -> dict:
    """A long recording without speech: every window no_speech, the file no_speech, the figure written."""
    import pandas as pd

    wav = write_wav(tmp / "noise.wav", signal("white", 6.0), SR)
    (code, _, logs), df, written = _predict(tmp, wav)
    timeline = tmp / "out" / "timeline.csv"
    if df is None or not timeline.is_file():
        return {"observed": f"exit {code}; {errors(logs)}", "passed": False, "outside_writes": written}
    labels = pd.read_csv(timeline)["label"].tolist()
    ok = (labels and set(labels) == {"no_speech"} and df["predicted"].tolist() == ["no_speech"]
          and (tmp / "out" / "timeline_noise.png").is_file())
    return {"observed": f"exit 0; {len(labels)} windows labelled {sorted(set(labels))}; file row "
                        f"{df['predicted'].tolist()}", "passed": bool(ok), "outside_writes": written}


@case(57, "Speech beside noise",
      "`predict --model emodb` on a folder of 2 real speech files (the sample's) and 2 s of white noise",
      "the speech gets emotions, the noise `no_speech`; the summary lists the noise under `no_speech`")
def case_57(tmp: Path) -> dict:
    """Speech keeps its emotions when noise sits beside it."""
    folder = tmp / "in"
    folder.mkdir()
    for w in sample_wavs(2):
        shutil.copy(w, folder / w.name)
    write_wav(folder / "noise.wav", signal("white"), SR)
    (code, stdout, logs), df, written = _predict(tmp, folder)
    if df is None:
        return {"observed": f"exit {code}; {errors(logs)}", "passed": False, "outside_writes": written}
    got = dict(zip(df["id"], df["predicted"]))
    speech = [v for k, v in got.items() if k != "noise"]
    ok = (got.get("noise") == "no_speech" and len(speech) == 2 and "no_speech" not in speech
          and "noise.wav" in stdout.split('"no_speech"')[-1])
    return {"observed": f"exit 0; {got}", "passed": bool(ok), "outside_writes": written}
