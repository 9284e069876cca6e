"""Issue 12, hostile corpus input (cases 1, 3, 4, 14): unsafe and repeated ids, KEMDy headers checked by name,
CSV encodings. Every case goes through ``cnnrnn.cli.main`` in-process, on real audio from the bundled sample,
and checks the exit code, the message and that nothing is written outside ``--out``."""
import csv
import json
import logging
import shutil
from pathlib import Path

import pytest

from cnnrnn import cli

N_ROWS = 6  # annotated segments of Session01 copied into each small corpus


@pytest.fixture(scope="module")
def session01(sample_dir):
    """The two header rows and the first N_ROWS data rows of the sample's Sess01_eval.csv, whose audio exists."""
    with open(sample_dir / "annotation" / "Sess01_eval.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    wav_dir = sample_dir / "wav" / "Session01"
    data = [r for r in rows[2:] if (wav_dir / f"{r[3]}.wav").is_file()][:N_ROWS]
    assert len(data) == N_ROWS
    return rows[:2], data, wav_dir


def make_kemdy20(root: Path, session01, rows=None, encoding="utf-8") -> Path:
    """A KEMDy20 folder at ``root`` with Session01's audio and the given annotation rows (default: all)."""
    header, data, wav_dir = session01
    (root / "annotation").mkdir(parents=True)
    (root / "wav" / "Session01").mkdir(parents=True)
    for r in data:
        for ext in (".wav", ".txt"):
            shutil.copy(wav_dir / f"{r[3]}{ext}", root / "wav" / "Session01")
    rows = header + data if rows is None else rows
    with open(root / "annotation" / "Sess01_eval.csv", "w", newline="", encoding=encoding) as fh:
        csv.writer(fh).writerows(rows)
    return root


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def written_outside(tmp_path: Path, before: set[Path], *outs: Path) -> list[str]:
    """Paths under ``tmp_path`` that appeared since ``before`` and are not inside one of ``outs``."""
    return sorted(str(p) for p in files_under(tmp_path) - before
                  if not any(p == o or o in p.parents for o in outs))


def nothing_in(*folders: Path) -> bool:
    """True when none of ``folders`` holds a file (a failed command may have made its empty ``--out``)."""
    return not any(p.is_file() for f in folders if f.exists() for p in f.rglob("*"))


def run(*argv) -> int:
    return cli.main(["-q", *map(str, argv)])


def test_case1_unsafe_segment_ids_are_counted_skips(tmp_path, session01, caplog):
    caplog.set_level(logging.WARNING)
    header, data, wav_dir = session01
    evil = list(data[0]); evil[0], evil[3] = "90", "../../../evil"
    nul = list(data[1]); nul[0], nul[3] = "91", "Sess01_x\x00y"
    ctl = list(data[2]); ctl[0], ctl[3] = "92", "Sess01_x\ny"
    dots = list(data[3]); dots[0], dots[3] = "93", ".."
    root = make_kemdy20(tmp_path / "corpus", session01, header + data + [evil, nul, ctl, dots])
    # the old reader found this file through the id '../../../evil' and wrote a PNG outside --out
    shutil.copy(wav_dir / f"{data[0][3]}.wav", tmp_path / "evil.wav")
    out = tmp_path / "out"
    before = files_under(tmp_path)

    assert run("split", "--corpus", "kemdy20", "--root", root, "--out", out) == 0
    corpus = json.loads((out / "split_report.json").read_text())["corpus"]
    unsafe = corpus["skipped"]["unsafe_id"]
    assert len(unsafe) == 4 and corpus["n_kept"] == N_ROWS
    assert "Sess01_eval.csv line" in unsafe[0] and "'../../../evil' has a path separator '/'" in unsafe[0]
    assert any("'\\x00'" in s for s in unsafe) and any("'\\n'" in s for s in unsafe)
    assert "unsafe_id" in caplog.text
    assert run("spectrograms", "--out", out, "--workers", "1") == 0
    assert len(list((out / "spectrograms").glob("*.png"))) == N_ROWS

    # defence in depth: an unsafe id smuggled into the split files is refused by the spectrogram writer
    records = json.loads((out / "train_audio.json").read_text())
    records.append(dict(records[0], id="../../escaped"))
    (out / "train_audio.json").write_text(json.dumps(records))
    assert run("spectrograms", "--out", out, "--workers", "1") == 0
    report = (out / "spectrogram_report.json").read_text()
    assert "unsafe_id" in report and "refusing to write" in report

    # kemdy-weighted: segment_id cells of new_data.csv
    table = tmp_path / "labels" / "new_data.csv"
    assert run("kemdy-labels", "--corpus", "kemdy20", "--root", root, "-o", table) == 0
    with open(table, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rows[0]["segment_id"], rows[1]["segment_id"] = "../../weighted", "a\tb"
    with open(table, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out_w = tmp_path / "out_w"
    assert run("split", "--corpus", "kemdy-weighted", "--root", table, "--out", out_w) == 0
    assert len(json.loads((out_w / "split_report.json").read_text())["corpus"]["skipped"]["unsafe_id"]) == 2

    # a manifest whose file name holds a control character, and an UrbanSound8K ID with '..'
    (tmp_path / "m").mkdir()
    shutil.copy(wav_dir / f"{data[0][3]}.wav", tmp_path / "m" / "bad\rname.wav")
    shutil.copy(wav_dir / f"{data[1][3]}.wav", tmp_path / "m" / "good.wav")
    shutil.copy(wav_dir / f"{data[2][3]}.wav", tmp_path / "m" / "fine.wav")
    (tmp_path / "m" / "list.csv").write_text('path,label\n"bad\rname.wav",sad\ngood.wav,happy\nfine.wav,sad\n')
    out_m = tmp_path / "out_m"
    assert run("split", "--corpus", "manifest", "--root", tmp_path / "m" / "list.csv", "--out", out_m) == 0
    assert "bad\\rname" in json.dumps(json.loads((out_m / "split_report.json").read_text())["corpus"]["skipped"])
    us = tmp_path / "us"
    (us / "Train").mkdir(parents=True)
    for i, r in enumerate(data[:3]):
        shutil.copy(wav_dir / f"{r[3]}.wav", us / "Train" / f"{i}.wav")
    (us / "train.csv").write_text("ID,Class\n0,siren\n1,dog_bark\n2,siren\n../us/Train/0,siren\n")
    out_u = tmp_path / "out_u"
    assert run("split", "--corpus", "urbansound8k", "--root", us, "--out", out_u) == 0
    assert "unsafe_id" in json.loads((out_u / "split_report.json").read_text())["corpus"]["skipped"]

    assert written_outside(tmp_path, before, out, out_w, out_m, out_u, table.parent, tmp_path / "m", us) == []
    # where the old code wrote: out/spectrograms/../../../evil.png and out/spectrograms/../../escaped.png
    assert not (tmp_path.parent / "evil.png").exists() and not (tmp_path / "escaped.png").exists()


def test_case3_duplicate_ids(tmp_path, session01, caplog):
    caplog.set_level(logging.WARNING)
    header, data, wav_dir = session01
    # manifest: d1/a.wav, a_4.wav, d2/a.wav — the third used to get the id a_4 too
    m = tmp_path / "m"
    for rel, r in (("d1/a.wav", data[0]), ("a_4.wav", data[1]), ("d2/a.wav", data[2]), ("b.wav", data[3])):
        (m / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(wav_dir / f"{r[3]}.wav", m / rel)
    (m / "list.csv").write_text("path,label\nd1/a.wav,sad\na_4.wav,happy\nd2/a.wav,angry\nb.wav,sad\n"
                                "b.wav,sad\n")  # the last line repeats the one before: a counted skip
    out = tmp_path / "out"
    before = files_under(tmp_path)
    assert run("split", "--corpus", "manifest", "--root", m / "list.csv", "--out", out) == 0
    recs = [r for part in ("train", "test") for r in json.loads((out / f"{part}_audio.json").read_text())]
    assert sorted(r["id"] for r in recs) == ["a", "a_4", "a_4_2", "b"]
    assert len({r["audio_path"] for r in recs}) == 4
    corpus = json.loads((out / "split_report.json").read_text())["corpus"]
    assert corpus["skipped"]["duplicate_row"] == ["list.csv line 6 (b.wav) (repeats list.csv line 5 (b.wav))"]
    assert corpus["fixed"] == {"renamed_duplicate_id": 1}
    assert run("spectrograms", "--out", out, "--workers", "1") == 0
    assert len(list((out / "spectrograms").glob("*.png"))) == 4  # none overwritten
    # the same audio file under two labels: an error naming both lines
    (m / "clash.csv").write_text("path,label\nd1/a.wav,sad\nb.wav,sad\nd1/a.wav,happy\n")
    assert run("split", "--corpus", "manifest", "--root", m / "clash.csv", "--out", tmp_path / "o2") == 2
    assert "id 'a' is annotated twice, differently, in clash.csv line 2 (d1/a.wav) and clash.csv line 4" in caplog.text

    # KEMDy20: a repeated identical row (its running number aside) is a counted skip, also when the
    # SessNN_ prefix fix makes the repeat; a repeat with another label is an error naming both rows
    again = list(data[1]); again[0] = "77"
    prefixed = list(data[2]); prefixed[0], prefixed[3] = "78", data[2][3].replace("Sess01_", "Sess12_")
    root = make_kemdy20(tmp_path / "k1", session01, header + data + [again, prefixed])
    out_k = tmp_path / "out_k"
    assert run("split", "--corpus", "kemdy20", "--root", root, "--out", out_k) == 0
    corpus = json.loads((out_k / "split_report.json").read_text())["corpus"]
    assert corpus["n_kept"] == N_ROWS and len(corpus["skipped"]["duplicate_row"]) == 2
    assert corpus["skipped"]["duplicate_row"][0] == "Sess01_eval.csv line 9 (repeats Sess01_eval.csv line 4)"
    other = list(data[1]); other[4] = "angry" if data[1][4] != "angry" else "sad"
    root = make_kemdy20(tmp_path / "k2", session01, header + data + [other])
    caplog.clear()
    assert run("split", "--corpus", "kemdy20", "--root", root, "--out", tmp_path / "o3") == 2
    assert (f"kemdy20: id '{data[1][3]}' is annotated twice, differently, in Sess01_eval.csv line 4 and "
            f"Sess01_eval.csv line 9 (they differ in Total Evaluation Emotion: '{data[1][4]}' vs '{other[4]}')"
            in caplog.text)
    assert run("kemdy-labels", "--corpus", "kemdy20", "--root", root, "-o", tmp_path / "o4" / "nd.csv") == 2
    failed = [tmp_path / "o2", tmp_path / "o3", tmp_path / "o4"]
    assert nothing_in(*failed)
    assert written_outside(tmp_path, before, out, out_k, tmp_path / "k1", tmp_path / "k2", m, *failed) == []


def test_case4_kemdy_header_checked_by_name(tmp_path, session01, caplog):
    header, data, _ = session01
    before = files_under(tmp_path)
    no_total = [r[:4] + r[7:] for r in header + data]  # Eval01F's emotion now sits where Total Evaluation was
    root = make_kemdy20(tmp_path / "a", session01, no_total)
    assert run("split", "--corpus", "kemdy20", "--root", root, "--out", tmp_path / "out_a") == 2
    assert (f"{root / 'annotation' / 'Sess01_eval.csv'}: no 'Total Evaluation' column in the first header row"
            in caplog.text)
    assert run("kemdy-labels", "--corpus", "kemdy20", "--root", root, "-o", tmp_path / "out_a" / "nd.csv") == 2

    caplog.clear()
    root = make_kemdy20(tmp_path / "b", session01, data)  # both header rows missing
    assert run("split", "--corpus", "kemdy20", "--root", root, "--out", tmp_path / "out_b") == 2
    assert f"{root / 'annotation' / 'Sess01_eval.csv'}: no 'Segment ID' column in the first header row" in caplog.text

    caplog.clear()
    root = make_kemdy20(tmp_path / "c", session01, header[:1] + data)  # the second header row missing
    assert run("split", "--corpus", "kemdy20", "--root", root, "--out", tmp_path / "out_c") == 2
    assert "the second header row has" in caplog.text and "expected ['Emotion', 'Valence', 'Arousal']" in caplog.text

    moved = [r[:3] + r[4:7] + r[3:4] + r[7:] for r in header + data]  # columns found by name, wherever they are
    root = make_kemdy20(tmp_path / "d", session01, moved)
    assert run("split", "--corpus", "kemdy20", "--root", root, "--out", tmp_path / "out_d") == 0
    assert json.loads((tmp_path / "out_d" / "split_report.json").read_text())["corpus"]["n_kept"] == N_ROWS
    failed = [tmp_path / f"out_{x}" for x in "abc"]
    assert nothing_in(*failed)
    assert written_outside(tmp_path, before, *(tmp_path / x for x in "abcd"), tmp_path / "out_d", *failed) == []


def test_case14_csv_encodings(tmp_path, session01, caplog):
    header, data, wav_dir = session01
    before = files_under(tmp_path)
    korean = [["Numb(번호)"] + header[0][1:], header[1]] + data  # '번' is 0xb9 0xf8 in cp949
    reference = None
    for name, encoding in (("utf8", "utf-8"), ("cp949", "cp949"), ("utf16", "utf-16")):
        root = make_kemdy20(tmp_path / name, session01, korean, encoding)
        out = tmp_path / f"out_{name}"
        assert run("split", "--corpus", "kemdy20", "--root", root, "--out", out) == 0
        corpus = json.loads((out / "split_report.json").read_text())["corpus"]
        assert corpus["n_kept"] == N_ROWS
        ids = sorted(r["id"] for p in ("train", "test") for r in json.loads((out / f"{p}_audio.json").read_text()))
        reference = reference or ids
        assert ids == reference
        if encoding != "utf-8":
            assert corpus["fixed"] == {f"csv_encoding:{encoding}": 1}
    # neither UTF-8 nor cp949: an error naming the file
    bad = make_kemdy20(tmp_path / "bad", session01)
    path = bad / "annotation" / "Sess01_eval.csv"
    path.write_bytes(path.read_bytes().replace(b"Numb", b"N\xff\xfeb"))
    assert run("split", "--corpus", "kemdy20", "--root", bad, "--out", tmp_path / "out_bad") == 2
    assert f"{path}: not utf-8 or cp949 text (line 1: byte 0xff at offset 1 is not utf-8)" in caplog.text

    # a UTF-8 manifest saved as cp949 (Korean transcript), or as UTF-16 without a byte-order mark
    m = tmp_path / "m"
    m.mkdir()
    shutil.copy(wav_dir / f"{data[0][3]}.wav", m / "a.wav")
    shutil.copy(wav_dir / f"{data[1][3]}.wav", m / "b.wav")
    text = "path,label,text\na.wav,sad,번호\nb.wav,happy,x\n"
    (m / "cp949.csv").write_bytes(text.encode("cp949"))
    caplog.clear()
    assert run("split", "--corpus", "manifest", "--root", m / "cp949.csv", "--out", tmp_path / "out_m") == 2
    assert f"{m / 'cp949.csv'}: not utf-8 text (line 2: byte 0xb9 at offset 26 is not utf-8); save the file as UTF-8" in caplog.text
    (m / "utf16.csv").write_bytes(text.encode("utf-16-le"))
    assert run("split", "--corpus", "manifest", "--root", m / "utf16.csv", "--out", tmp_path / "out_m") == 2
    assert f"{m / 'utf16.csv'}: looks like UTF-16 or UTF-32 text without a byte-order mark" in caplog.text
    (m / "bom16.csv").write_bytes(text.encode("utf-16"))  # with its byte-order mark: read as UTF-16
    assert run("split", "--corpus", "manifest", "--root", m / "bom16.csv", "--out", tmp_path / "out_m16") == 0

    # new_data.csv (a KEMDy file) saved by a Korean Excel in cp949: read
    table = tmp_path / "nd" / "new_data.csv"
    assert run("kemdy-labels", "--corpus", "kemdy20", "--root", tmp_path / "utf8", "-o", table) == 0
    with open(table, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with open(table, "w", newline="", encoding="cp949") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([dict(r, text="안녕하세요") for r in rows])
    assert run("split", "--corpus", "kemdy-weighted", "--root", table, "--out", tmp_path / "out_nd") == 0
    assert nothing_in(tmp_path / "out_bad", tmp_path / "out_m")
    outs = [tmp_path / x for x in ("utf8", "cp949", "utf16", "bad", "m", "nd", "out_utf8", "out_cp949", "out_utf16",
                                   "out_m16", "out_nd", "out_bad", "out_m")]
    assert written_outside(tmp_path, before, *outs) == []
