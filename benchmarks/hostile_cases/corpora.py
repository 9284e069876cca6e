"""Hostile-input cases 1, 3, 4 and 14 of issue 12: the corpus readers (ids, annotation CSVs, encodings).

The corpora are small KEMDy20 folders built from the bundled sample's Session01 (real EmoDB audio) and
manifests of its wav files. No case trains a model; the slowest (case 1) renders a handful of spectrograms.
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from ._common import case, cli, error_text, files, outside, read_json, sample

N_ROWS = 5  # annotated Session01 segments copied into each small corpus


def _session01() -> tuple[list[list[str]], list[list[str]], Path]:
    """The two header rows, the first N_ROWS data rows with audio, and the audio folder of the sample's Session01."""
    with open(sample() / "annotation" / "Sess01_eval.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    wav_dir = sample() / "wav" / "Session01"
    data = [r for r in rows[2:] if (wav_dir / f"{r[3]}.wav").is_file()][:N_ROWS]
    return rows[:2], data, wav_dir


def _kemdy20(root: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    """A KEMDy20 folder with Session01's audio and ``rows`` as its Sess01_eval.csv."""
    _, data, wav_dir = _session01()
    (root / "annotation").mkdir(parents=True)
    (root / "wav" / "Session01").mkdir(parents=True)
    for r in data:
        for ext in (".wav", ".txt"):
            shutil.copy(wav_dir / f"{r[3]}{ext}", root / "wav" / "Session01")
    with open(root / "annotation" / "Sess01_eval.csv", "w", newline="", encoding=encoding) as fh:
        csv.writer(fh).writerows(rows)
    return root


def _skipped(out: Path, reason: str) -> list:
    """The ids ``split`` skipped for ``reason`` (its split_report.json)."""
    return read_json(out / "split_report.json", "corpus").get("skipped", {}).get(reason, [])


@case(1, "Segment id with `../`",
      "KEMDy `Segment ID` and `new_data.csv` `segment_id` holding `../../../evil`, a NUL, a newline",
      "counted skip (`unsafe_id`); the PNG writer refuses an unsafe id; nothing outside `--out`")
def case_1(tmp: Path) -> dict:
    """Segment ids with '../', NUL and a newline (KEMDy20 annotation and new_data.csv): counted skips, no PNG
    outside --out; an unsafe id put into train_audio.json by hand is refused by the spectrogram writer."""
    header, data, wav_dir = _session01()
    work = tmp / "work"
    bad = [list(data[0]), list(data[1]), list(data[2])]
    for row, (numb, seg) in zip(bad, (("90", "../../../evil"), ("91", "Sess01_x\x00y"), ("92", "Sess01_x\ny"))):
        row[0], row[3] = numb, seg
    root = _kemdy20(work / "corpus", header + data + bad)
    shutil.copy(wav_dir / f"{data[0][3]}.wav", work / "evil.wav")  # what '../../../evil' pointed the old reader to
    out = work / "out"
    before = files(tmp)
    observed, ok = [], True
    code, _, logs = cli("split", "--corpus", "kemdy20", "--root", root, "--out", out)
    unsafe = _skipped(out, "unsafe_id")
    observed.append(f"split exit {code}, {len(unsafe)} unsafe_id skip(s): {unsafe[:1]}")
    ok &= code == 0 and len(unsafe) == 3
    code, _, logs = cli("spectrograms", "--out", out, "--workers", "1")
    pngs = len(list((out / "spectrograms").glob("*.png")))
    observed.append(f"spectrograms exit {code}, {pngs} PNG(s) {error_text(logs)}")
    ok &= code == 0 and pngs == N_ROWS
    if (out / "train_audio.json").is_file():
        records = json.loads((out / "train_audio.json").read_text())
        records.append(dict(records[0], id="../../../escaped"))
        (out / "train_audio.json").write_text(json.dumps(records))
        code, _, logs = cli("spectrograms", "--out", out, "--workers", "1")
        report = (out / "spectrogram_report.json").read_text()
        observed.append(f"hand-edited id: exit {code}, writer refused: {'refusing to write' in report}")
        ok &= "unsafe_id" in report and not (tmp / "escaped.png").exists()
    table = work / "labels" / "new_data.csv"
    code, _, _ = cli("kemdy-labels", "--corpus", "kemdy20", "--root", root, "-o", table)
    if code == 0:
        with open(table, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        rows[0]["segment_id"] = "../../../weighted"
        with open(table, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        out_w = work / "out_w"
        code, _, _ = cli("split", "--corpus", "kemdy-weighted", "--root", table, "--out", out_w)
        code2, _, _ = cli("spectrograms", "--out", out_w, "--workers", "1")
        unsafe = _skipped(out_w, "unsafe_id")
        observed.append(f"kemdy-weighted: split exit {code}, spectrograms exit {code2}, unsafe_id {unsafe}")
        ok &= code == 0 and code2 == 0 and len(unsafe) == 1
    else:
        observed.append(f"kemdy-labels exit {code}")
        ok = False
    written = outside(before, tmp, out, work / "out_w", table.parent)
    ok &= not written and not (tmp / "evil.png").exists()
    return {"observed": "; ".join(observed), "passed": bool(ok), "outside_writes": written}


@case(3, "Duplicate ids",
      "manifest with `d1/a.wav`, `a_4.wav`, `d2/a.wav`; KEMDy CSV with a repeated `Segment ID` (same / other label)",
      "unique ids, one PNG each; identical repeated row a counted skip; disagreeing rows an error naming both lines")
def case_3(tmp: Path) -> dict:
    """Duplicate ids: a manifest with d1/a.wav, a_4.wav, d2/a.wav gets unique ids; a KEMDy CSV's repeated
    identical row is a counted skip; a repeated Segment ID whose rows disagree is an error naming both rows."""
    header, data, wav_dir = _session01()
    m = tmp / "m"
    for rel, r in (("d1/a.wav", data[0]), ("a_4.wav", data[1]), ("d2/a.wav", data[2]), ("b.wav", data[3])):
        (m / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(wav_dir / f"{r[3]}.wav", m / rel)
    (m / "list.csv").write_text("path,label\nd1/a.wav,sad\na_4.wav,happy\nd2/a.wav,angry\nb.wav,sad\n")
    again = list(data[1]); again[0] = "77"
    other = list(data[2]); other[0], other[4] = "78", "angry" if data[2][4] != "angry" else "sad"
    k1 = _kemdy20(tmp / "k1", header + data + [again])
    k2 = _kemdy20(tmp / "k2", header + data + [other])
    outs = [tmp / "out_m", tmp / "out_k1", tmp / "out_k2"]
    before = files(tmp)
    code, _, _ = cli("split", "--corpus", "manifest", "--root", m / "list.csv", "--out", outs[0])
    code_s, _, logs = cli("spectrograms", "--out", outs[0], "--workers", "1")
    ids = sorted(r["id"] for p in ("train", "test") if (outs[0] / f"{p}_audio.json").is_file()
                 for r in json.loads((outs[0] / f"{p}_audio.json").read_text()))
    pngs = len(list((outs[0] / "spectrograms").glob("*.png")))
    ok = code == 0 and code_s == 0 and len(set(ids)) == len(ids) == 4 and pngs == 4
    observed = [f"manifest: exit {code}/{code_s}, ids {ids}, {pngs} PNGs {error_text(logs)}".rstrip()]
    code, _, _ = cli("split", "--corpus", "kemdy20", "--root", k1, "--out", outs[1])
    dup = _skipped(outs[1], "duplicate_row")
    observed.append(f"KEMDy identical repeat: exit {code}, duplicate_row {dup}")
    ok &= code == 0 and len(dup) == 1
    code, _, logs = cli("split", "--corpus", "kemdy20", "--root", k2, "--out", outs[2])
    observed.append(f"KEMDy disagreeing repeat: exit {code}, {error_text(logs)}")
    ok &= code == 2 and "annotated twice, differently" in logs and "line 5" in logs and "line 8" in logs
    written = outside(before, tmp, *outs)
    return {"observed": "; ".join(observed), "passed": bool(ok and not written), "outside_writes": written}


@case(4, "KEMDy CSV without its label columns",
      "`Sess01_eval.csv` without the `Total Evaluation` columns; one without both header rows",
      "exit 2 naming the file and the missing column; no rater label read, no data row eaten as a header")
def case_4(tmp: Path) -> dict:
    """A KEMDy20 CSV without its Total Evaluation columns, and one without both header rows: a clear error
    naming the file and the missing column (no rater's label read instead, no data row eaten as a header)."""
    header, data, _ = _session01()
    no_total = _kemdy20(tmp / "no_total", [r[:4] + r[7:] for r in header + data])
    no_header = _kemdy20(tmp / "no_header", data)
    outs = [tmp / "out_a", tmp / "out_b"]
    before = files(tmp)
    observed, ok = [], True
    for root, out, column in ((no_total, outs[0], "'Total Evaluation'"), (no_header, outs[1], "'Segment ID'")):
        code, _, logs = cli("split", "--corpus", "kemdy20", "--root", root, "--out", out)
        observed.append(f"exit {code}: {error_text(logs)}")
        ok &= code == 2 and f"Sess01_eval.csv: no {column} column" in logs and not (out.exists() and files(out))
    written = outside(before, tmp, *outs)
    return {"observed": "; ".join(observed), "passed": bool(ok and not written), "outside_writes": written}


@case(14, "CSV not in UTF-8",
      "KEMDy annotation in cp949 and in UTF-16; a manifest in cp949",
      "KEMDy files read (cp949 tried, UTF-16 by its BOM); the manifest a one-line error naming the file")
def case_14(tmp: Path) -> dict:
    """CSV files in cp949 / UTF-16 where UTF-8 is expected: KEMDy annotation in cp949 (and UTF-16 with a
    byte-order mark) read; a cp949 manifest is a one-line error naming the file."""
    header, data, wav_dir = _session01()
    rows = [["Numb(번호)"] + header[0][1:], header[1]] + data
    cp949 = _kemdy20(tmp / "cp949", rows, "cp949")
    utf16 = _kemdy20(tmp / "utf16", rows, "utf-16")
    m = tmp / "m"
    m.mkdir()
    shutil.copy(wav_dir / f"{data[0][3]}.wav", m / "a.wav")
    (m / "list.csv").write_bytes("path,label,text\na.wav,sad,번호\n".encode("cp949"))
    outs = [tmp / "out_cp949", tmp / "out_utf16", tmp / "out_m"]
    before = files(tmp)
    observed, ok = [], True
    for root, out in ((cp949, outs[0]), (utf16, outs[1])):
        code, _, _ = cli("split", "--corpus", "kemdy20", "--root", root, "--out", out)
        report = read_json(out / "split_report.json", "corpus")
        observed.append(f"{root.name}: exit {code}, kept {report.get('n_kept')}, fixed {report.get('fixed')}")
        ok &= code == 0 and report.get("n_kept") == N_ROWS
    code, _, logs = cli("split", "--corpus", "manifest", "--root", m / "list.csv", "--out", outs[2])
    observed.append(f"cp949 manifest: exit {code}: {error_text(logs)}")
    ok &= code == 2 and str(m / "list.csv") in logs and "save the file as UTF-8" in logs
    written = outside(before, tmp, *outs)
    return {"observed": "; ".join(observed), "passed": bool(ok and not written), "outside_writes": written}
