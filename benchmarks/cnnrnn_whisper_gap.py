"""Where the CNNRNN Whisper recipe loses to the linear probe: scikit-learn's logistic regression (C 0.1) on the mean +
std pooled block-2 features of the CNNRNN image path (Whisper's log-mel drawn as a 2 s gray image, decoded), on the
8 headline speakers of emodb-535, leave-one-speaker-out, four ways:

* ``lognorm+global``: the log-mel speaker-normalised as ``best`` does, the pooled features standardised globally
  (the CNNRNN ``best`` recipe with a solver instead of Adam);
* ``lognorm+featspk``: the same, the pooled features z-scored per speaker instead;
* ``raw+global`` / ``raw+featspk``: the raw log-mel, then the same two.

Speaker statistics come from each speaker's own audio (transductive, as every speaker-normalised row of the
benchmark); nothing is chosen. Writes ``results/cnnrnn_whisper_gap.json``. Run from the repository root::

    nice -n 10 python benchmarks/cnnrnn_whisper_gap.py
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save_result  # noqa: E402
from emodb_loso import DEFAULT_DATA, HEADLINE_SPEAKERS, REGISTRY, _cnnrnn_config, cnnrnn_prepare  # noqa: E402


def main() -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.preprocessing import StandardScaler

    from cnnrnn.features import WHISPER_IMAGE_RANGE, image_of_log_mel
    from cnnrnn.models.whisper import pretrained_whisper
    from cnnrnn.models.yamnet import ImageToLogMel
    from cnnrnn.normalize import fit

    started, load = time.process_time(), os.getloadavg()[0]
    entry = REGISTRY["cnnrnn_whisper_ms_l2"]
    ctx = {"data": DEFAULT_DATA}
    cnnrnn_prepare(entry, ctx)
    d, cfg = ctx["cnnrnn"], _cnnrnn_config(entry, ctx)
    spk, y = d["speakers"], d["y"]
    encoder, decode = pretrained_whisper("whisper-tiny.en", block=2), ImageToLogMel(WHISPER_IMAGE_RANGE)

    def pooled(images):
        out = []
        for i in range(0, len(images), 32):
            f = np.asarray(encoder(np.asarray(decode(images[i:i + 32].astype("float32")))[..., 0]))
            out.append(np.concatenate([f.mean(1), f.std(1)], 1))
        return np.concatenate(out)

    def per_speaker(features):
        out = features.copy()
        for s in set(spk):
            k = spk == s
            out[k] = (out[k] - out[k].mean(0)) / (out[k].std(0) + 1e-8)
        return out

    raw = pooled(np.stack([image_of_log_mel(m, cfg.spectrogram, mode="none") for m in d["mels"]]))
    folds = {}
    for speaker in HEADLINE_SPEAKERS:
        stats = fit([m.T for m in d["mels"]], list(spk), reference=list(spk != speaker))
        lognorm = pooled(np.stack([image_of_log_mel(m, cfg.spectrogram, s, stats) for m, s in zip(d["mels"], spk)]))
        train, test = spk != speaker, spk == speaker
        folds[speaker] = {}
        for name, f in (("lognorm+global", lognorm), ("lognorm+featspk", per_speaker(lognorm)),
                        ("raw+global", raw), ("raw+featspk", per_speaker(raw))):
            scaler = StandardScaler().fit(f[train])
            clf = LogisticRegression(C=0.1, max_iter=3000).fit(scaler.transform(f[train]), y[train])
            folds[speaker][name] = round(float(balanced_accuracy_score(y[test], clf.predict(scaler.transform(f[test])))), 4)
        print(speaker, folds[speaker], flush=True)
    mean = {k: round(float(np.mean([f[k] for f in folds.values()])), 4) for k in next(iter(folds.values()))}
    save_result({"benchmark": "cnnrnn_whisper_gap", "folds": folds, "mean_ua_headline_8": mean,
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
                 "command": " ".join(["python"] + sys.argv), "cpu_seconds": round(time.process_time() - started, 1),
                 "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)},
                REPO / "benchmarks" / "results" / "cnnrnn_whisper_gap.json")
    print(mean)
    return 0


if __name__ == "__main__":
    sys.exit(main())
