"""Rebuild the bundled KEMDy20-layout sample from the project's shared real-speech folder.

Run from the repository root: ``python cnnrnn/sample/build_sample.py ../shared/data/kemdy20-layout``.
It keeps three sessions (Session03 has the tied annotations, Session17 the wrong ``Sess18_``
prefixes), the shortest recordings of each emotion, one tied annotation and one
annotated segment without audio, so the sample keeps the corpus's quirks while
staying under 8 MB. Not imported by the package.
"""
import csv
import shutil
import sys
from collections import defaultdict
from pathlib import Path

PER_EMOTION_PER_SESSION = 6
SESSIONS = ("01", "03", "17")


def main(src: Path, dst: Path) -> None:
    """Build the KEMDy20-layout sample in ``dst`` from the EmoDB files in ``src`` (annotation CSVs and wavs)."""
    (dst / "annotation").mkdir(parents=True, exist_ok=True)
    total = 0
    for sess in SESSIONS:
        with open(src / "annotation" / f"Sess{sess}_eval.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        header, data = rows[:2], rows[2:]
        wav_dir = src / "wav" / f"Session{sess}"
        by_emotion = defaultdict(list)
        keep, missing_kept = [], False
        for row in data:
            seg = "_".join([f"Sess{sess}"] + row[3].split("_")[1:])
            wav = wav_dir / f"{seg}.wav"
            if not wav.exists():
                if not missing_kept:
                    keep.append(row)
                    missing_kept = True
                continue
            if ";" in row[4]:
                keep.append(row)
                continue
            by_emotion[row[4]].append((wav.stat().st_size, row))
        for emotion, items in sorted(by_emotion.items()):
            keep += [row for _, row in sorted(items, key=lambda t: t[0])[:PER_EMOTION_PER_SESSION]]
        keep.sort(key=lambda r: int(r[0]))
        out_wav = dst / "wav" / f"Session{sess}"
        out_wav.mkdir(parents=True, exist_ok=True)
        for row in keep:
            seg = "_".join([f"Sess{sess}"] + row[3].split("_")[1:])
            for ext in (".wav", ".txt"):
                if (wav_dir / f"{seg}{ext}").exists():
                    shutil.copy2(wav_dir / f"{seg}{ext}", out_wav / f"{seg}{ext}")
                    total += (wav_dir / f"{seg}{ext}").stat().st_size
        with open(dst / "annotation" / f"Sess{sess}_eval.csv", "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh, lineterminator="\n").writerows(header + keep)
    print(f"sample: {total / 1e6:.2f} MB of audio and text")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).parent / "kemdy20")
