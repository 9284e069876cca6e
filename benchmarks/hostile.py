"""Hostile input (issue 12): every numbered case run through the ``cnnrnn`` CLI, each in a process of its own.

Each case (``benchmarks/hostile_cases``) prepares its hostile input in a fresh empty temporary folder, runs the
CLI on it (in-process ``cnnrnn.cli.main``; case 15 also kills a real ``python -m cnnrnn`` process), and checks
the exit code, the message and the files against what the issue asks for. Each case runs in a child process
(``python benchmarks/hostile.py --child N ...``, its own session) under a time limit, so a hang or a crash of
one case cannot stop the others and each case's TensorFlow state is its own; each child pays the TensorFlow
import (about 4-8 s).

A case that fails falls in one category, the first that applies:

* ``data_loss``: a file the case wrote as the user's was changed or deleted (the case lists it in ``data_loss``);
* ``hang``: it ran past ``--timeout`` (its whole process group is killed);
* ``traceback``: an exception escaped ``cnnrnn.cli.main`` or the case, or its process died;
* ``outside_write``: a file appeared in its folder outside the commands' ``--out`` and the inputs it wrote, or
  was left in its system temporary folder (``TMPDIR``, one per case) when it ended;
* ``silent``: any other wrong outcome (exit code, message, output files or their content).

Results go to ``benchmarks/results/hostile.json`` (paths relative to the case's temporary folder or the
repository) and a markdown table (case, input, expected, observed, pass) with the totals is printed. Run from
the repository root (a few minutes on a loaded 2-core machine)::

    python benchmarks/hostile.py                          # all cases, writes the JSON
    python benchmarks/hostile.py --cases 5 13 --timeout 60  # some cases; writes only with --out
    python benchmarks/hostile.py --table                  # the table of the saved JSON, nothing run
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import REPO, machine, save_result  # noqa: E402
from hostile_cases import CASES, Case  # noqa: E402

DEFAULT_OUT = REPO / "benchmarks" / "results" / "hostile.json"
DEFAULT_TIMEOUT = 120.0
CATEGORIES = ("data_loss", "silent", "traceback", "hang", "outside_write")
OBSERVED_WIDTH = 240  # characters of a case's observed outcome in the table (the JSON holds all of it)


def one_line(text: str, folder: Path) -> str:
    """``text`` on one line, with ``folder`` (the case's temporary folder) left out of the paths in it."""
    text = text.replace(f"{folder}{os.sep}", "").replace(str(folder), ".")
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def run_child(number: int, folder: Path, result_file: Path) -> None:
    """In the child: run case ``number`` in ``folder``; write its result (paths relative to ``folder``)."""
    started = time.perf_counter()
    try:
        result = CASES[number].run(folder)
    except BaseException as exc:  # noqa: BLE001 - a case's own exception is a traceback to count
        result = {"observed": f"traceback: {type(exc).__name__}: {exc}", "passed": False, "outside_writes": []}
    result = {"observed": one_line(str(result["observed"]), folder), "passed": bool(result["passed"]),
              "data_loss": sorted(os.path.relpath(p, folder) for p in result.get("data_loss", [])),
              "outside_writes": sorted(os.path.relpath(p, folder) for p in result["outside_writes"]),
              "case_seconds": round(time.perf_counter() - started, 1)}
    result_file.write_text(json.dumps(result), encoding="utf-8")


def category(result: dict) -> str | None:
    """The failure category of a case's result (module docstring); None if it passed."""
    if result.get("data_loss"):
        return "data_loss"
    if result.get("hang"):
        return "hang"
    if "traceback:" in result["observed"] or result.get("crashed"):
        return "traceback"
    if result["outside_writes"]:
        return "outside_write"
    return None if result["passed"] else "silent"


def run_case(case: Case, timeout: float) -> dict:
    """Run ``case`` in a child process in a fresh temporary folder, within ``timeout`` seconds."""
    root = Path(tempfile.mkdtemp(prefix=f"hostile_case{case.number}_"))
    folder, result_file, system_tmp = root / "case", root / "result.json", root / "system_tmp"
    folder.mkdir()
    system_tmp.mkdir()  # the case's system temporary folder (TMPDIR): it must be empty once the case ends
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TMPDIR=str(system_tmp))
    started = time.perf_counter()
    with open(root / "output.log", "w+", encoding="utf-8") as log:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", str(case.number),
                                 str(folder), str(result_file)], stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            proc.wait(timeout=timeout)
            hang = False
        except subprocess.TimeoutExpired:
            hang = True
        finally:
            try:  # the child's session: whatever it left running (pool workers, a killed case's processes)
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        log.seek(0)
        output = log.read()
    seconds = round(time.perf_counter() - started, 1)
    if result_file.is_file():
        result = json.loads(result_file.read_text(encoding="utf-8"))
    elif hang:
        result = {"observed": f"no result after {timeout:g} s (killed)", "passed": False, "outside_writes": [],
                  "hang": True}
    else:
        last = [line for line in output.splitlines() if line.strip()][-1:] or [f"exit {proc.returncode}"]
        result = {"observed": f"case process died (exit {proc.returncode}): {one_line(last[0], folder)}",
                  "passed": False, "outside_writes": [], "crashed": True}
    left_in_tmp = sorted(f"$TMPDIR/{p.relative_to(system_tmp)}" for p in system_tmp.rglob("*") if p.is_file())
    result["outside_writes"] = list(result["outside_writes"]) + left_in_tmp
    shutil.rmtree(root, ignore_errors=True)
    failure = category(result)
    return {"number": case.number, "title": case.title, "input": case.input, "expected": case.expected,
            "observed": result["observed"], "pass": failure is None, "seconds": seconds,
            "case_seconds": result.get("case_seconds"), "outside_writes": result["outside_writes"],
            "data_loss": result.get("data_loss", []),
            "failure": failure}


def totals(cases: list[dict]) -> dict:
    """How many cases passed, failed in each category, and the files written outside --out over all cases."""
    out = {"cases": len(cases), "passed": sum(c["pass"] for c in cases)}
    out.update({name: sum(c["failure"] == name for c in cases) for name in CATEGORIES})
    out["files_written_outside_out"] = sum(len(c["outside_writes"]) for c in cases)
    return out


def table(result: dict) -> str:
    """The markdown table of a result (case, input, expected, observed (cut to OBSERVED_WIDTH), pass) and a line
    of totals."""
    def cell(text: str, width: int = 1000) -> str:
        text = str(text) if len(str(text)) <= width else str(text)[:width - 1] + "…"
        return text.replace("|", "\\|")

    rows = ["| case | input | expected | observed | pass |", "|---|---|---|---|---|"]
    for c in result["cases"]:
        verdict = "yes" if c["pass"] else f"**no** ({c['failure']})"
        rows.append(f"| {c['number']}. {cell(c['title'])} | {cell(c['input'])} | {cell(c['expected'])} | "
                    f"{cell(c['observed'], OBSERVED_WIDTH)} | {verdict} |")
    t = result["totals"]
    rows.append("")
    rows.append(f"{t['passed']}/{t['cases']} pass: {t.get('data_loss', 0)} data loss, {t['silent']} silent, "
                f"{t['traceback']} tracebacks, "
                f"{t['hang']} hangs, {t['outside_write']} with writes outside --out "
                f"({t['files_written_outside_out']} files).")
    return "\n".join(rows)


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("cnnrnn", "numpy", "librosa", "soundfile", "tensorflow", "keras"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, nargs="+", choices=sorted(CASES), metavar="N",
                        help="case numbers to run (default: all)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds one case may take, TensorFlow import included (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--out", type=Path, help=f"result JSON (default {DEFAULT_OUT.relative_to(REPO)}; "
                                                 "with --cases, nothing is written unless --out is given)")
    parser.add_argument("--table", action="store_true", help="print the table of the saved JSON; run nothing")
    parser.add_argument("--child", nargs=3, metavar=("N", "FOLDER", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(int(args.child[0]), Path(args.child[1]), Path(args.child[2]))
        return None
    if args.table:
        result = json.loads((args.out or DEFAULT_OUT).read_text(encoding="utf-8"))
        print(table(result))
        return result

    numbers = args.cases or sorted(CASES)
    result = {"benchmark": "hostile", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join(["python", "benchmarks/hostile.py", *(argv if argv is not None else sys.argv[1:])]),
              "machine": machine(), "versions": versions(), "timeout_s": args.timeout,
              "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    started = time.perf_counter()
    cases = []
    for n in numbers:
        cases.append(run_case(CASES[n], args.timeout))
        c = cases[-1]
        print(f"case {n}: {'pass' if c['pass'] else 'FAIL (' + c['failure'] + ')'} in {c['seconds']} s",
              file=sys.stderr, flush=True)
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    result["totals"] = totals(cases)
    result["cases"] = cases
    out = args.out or (None if args.cases else DEFAULT_OUT)
    if out is not None:
        save_result(result, out)
    print(table(result))
    return result


if __name__ == "__main__":
    main()
