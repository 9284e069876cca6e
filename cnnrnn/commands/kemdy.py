"""``cnnrnn`` subcommands of the KEMDy label processing: ``kemdy-labels``."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..artifacts import ensure_writable_dir

DESCRIPTION = """\
Fix the KEMDy annotation typos, weight the raters and re-vote the emotion (a port of prepare_data.py).

- Session-prefix typos (Sess18_... in Sess17_eval.csv) are fixed; the spelling 'disqust' becomes 'disgust'.
- Each rater's weight is their accuracy against the majority label (a label chosen by more than half of
  the rater slots) over the segments that have one.
- emotion_weighted is the label with the highest summed rater weight; emotion_raw keeps Total Evaluation.

Writes OUT (columns segment_id, session, speaker, text, wav_path, emotion_raw, emotion_weighted, valence,
arousal) and a JSON report (weights, ties before/after, ignored votes, transcript problems, skips).
Train on the weighted labels with e.g.  cnnrnn split --corpus kemdy-weighted --root new_data.csv --out run/
"""


def add_commands(sub) -> None:
    """Add ``kemdy-labels`` to the ``cnnrnn`` parser's subparsers ``sub``."""
    p = sub.add_parser("kemdy-labels", help="KEMDy label fixes and rater-weighted emotion -> new_data.csv",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, choices=("kemdy20", "kemdy19"), help="corpus folder layout")
    p.add_argument("--root", required=True, metavar="DIR", help="corpus folder (holding annotation/ and wav/)")
    p.add_argument("-o", "--out", default="new_data.csv", metavar="CSV",
                   help="CSV to write (default: %(default)s)")
    p.add_argument("--report", default=None, metavar="JSON",
                   help="JSON report to write (default: OUT with _report.json in place of .csv)")
    p.set_defaults(handler=_kemdy_labels)


def _kemdy_labels(args, progress: bool) -> int:
    from ..corpora.kemdy_labels import process_labels, summary

    out = Path(args.out)
    report_json = args.report or out.with_name(f"{out.stem}_report.json")
    for folder in {out.parent, Path(report_json).parent}:
        ensure_writable_dir(folder)
    report = process_labels(args.corpus, args.root, out, report_json)
    print(summary(report))
    print(f"report: {report_json}")
    return 0
