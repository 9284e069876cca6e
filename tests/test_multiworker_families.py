"""Multi-worker training of the DCNN-BLSTMwA family (``cnnrnn dcnn finetune`` and ``train``) and of the baselines
(``cnnrnn baselines train``): two worker processes on 127.0.0.1 per family, all started together, each family's
tiniest preset on the bundled sample. The chief alone writes the run, the other worker leaves nothing behind, and
both print the same metrics; the baseline's weights are compared with a two-replica ``MirroredStrategy`` run on one
machine (two logical CPUs). Each command's bad cluster flags are one clear line, exit 2, nothing written."""
import json
import os
import re
import time

import numpy as np
import pytest
from test_multiworker import finish, free_ports, h5_arrays, start

from cnnrnn import cli

#: The largest difference allowed between the multi-worker and the mirrored baseline's weights (any array).
#: Measured on a 2-core CPU: see test_baseline_equals_two_mirrored_replicas.
TOLERANCE = 1e-5
DCNN_STEPS = ("finetune", "train")

#: One worker: the commands given as JSON (``[[name, argv], ...]``) one after the other in one process (one
#: TensorFlow start; the multi-worker strategy is made once per process and serves them all), each with the cluster
#: flags that follow; each command's printed summary after a line ``== name ==``.
WORKER = """
import json, sys
from cnnrnn import cli
for name, argv in json.loads(sys.argv[1]):
    print(f"== {name} ==", flush=True)
    rc = cli.main(["-q", *argv, *sys.argv[2:]])
    if rc:
        sys.exit(rc)
"""

#: The baseline on one machine, two replicas (two logical CPUs), as the two workers are.
MIRRORED = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from cnnrnn import cli
sys.exit(cli.main(["-q", "baselines", *sys.argv[1:]]))
"""


def _filelists(root, sample_dir):
    """Filelists of 16 real 2 s clips of the sample (10 train, 6 test), three labels."""
    from cnnrnn.dcnn.filelists import FilelistEntry, write_filelist

    wavs = sorted((sample_dir / "wav").rglob("*.wav"))[:16]
    entries = [FilelistEntry(str(w), w.stem.split("_")[2], "", i % 3) for i, w in enumerate(wavs)]
    write_filelist(root / "train.txt", entries[:10])
    write_filelist(root / "test.txt", entries[10:])
    (root / "labels.json").write_text(json.dumps({"labels": ["a", "b", "c"]}))
    return ["--filelist-train", str(root / "train.txt"), "--filelist-test", str(root / "test.txt"),
            "--labels", str(root / "labels.json")]


def _cluster(workers, index, timeout=60):
    return ["--distribute", "multi-worker", "--workers", workers, "--worker-index", str(index), "--timeout",
            str(timeout)]


def _start(args, tmpdir):
    """:func:`test_multiworker.start` with ``TMPDIR`` set to ``tmpdir`` (where a worker's scratch folders go)."""
    tmpdir.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TMPDIR", str(tmpdir))
        return start(args)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sample_dir):
    """Two workers, each running the DCNN's two steps then the baseline, beside the mirrored baseline, all at once:
    ``{"dcnn": logs folder, "baseline": run folder, "mirrored": run folder, "printed": [{command: summary} of each
    worker, chief first], "seconds"}``."""
    root = tmp_path_factory.mktemp("multiworker_families")
    lists = _filelists(root, sample_dir)
    logs, baseline, mirrored = root / "logs", root / "baseline", root / "mirrored"
    corpus = ["train", "--model", "ann", "--corpus", "kemdy20", "--root", str(sample_dir), "--config", "tiny_ann"]
    commands = [[step, ["dcnn", step, "--config", f"tiny_{step}", *lists, "--out", str(logs)]] for step in DCNN_STEPS]
    commands.append(["baseline", ["baselines", *corpus, "--out", str(baseline)]])
    workers = free_ports(2)
    started = time.perf_counter()
    procs = [_start(["-c", WORKER, json.dumps(commands), *_cluster(workers, i)], root / f"tmp{i}") for i in (0, 1)]
    procs.append(start(["-c", MIRRORED, *corpus, "--out", str(mirrored)]))
    results = [finish(p, timeout=300) for p in procs]
    seconds = time.perf_counter() - started
    for rc, _, err in results:
        assert rc == 0, err[-3000:]
    return {"dcnn": logs, "baseline": baseline, "mirrored": mirrored, "seconds": seconds, "root": root,
            "printed": [_printed(out) for _, out, _ in results[:2]]}


def _printed(stdout):
    """``{command: printed summary}`` of a worker."""
    parts = stdout.split("== ")[1:]
    return {p.split(" ==", 1)[0]: json.loads(p.split("==\n", 1)[1]) for p in parts}


def _temporaries(folder):
    """Files a killed or unfinished write leaves (``.name.XXXX.tmp``; the lock files stay, as on one machine)."""
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


def test_dcnn_two_workers_chief_writes_both_steps(runs):
    logs = runs["dcnn"]
    assert sorted(p.name for p in logs.iterdir()) == ["tiny_finetune", "tiny_train"]  # one set of files
    for name in ("dcnn.h5", "dcnn.json", "run.json", "log_finetune.out", "history_finetune.csv",
                 "metrics_finetune.json", "predictions_finetune.csv", "confusion_finetune_segments.png",
                 "confusion_finetune_utterances.png"):
        assert (logs / "tiny_finetune" / name).is_file(), name
    for name in ("blstm_attention.h5", "blstm_attention.json", "run.json", "log_train.out", "history_train.csv",
                 "metrics_train.json", "predictions_train.csv", "confusion_train.png"):
        assert (logs / "tiny_train" / name).is_file(), name
    assert not _temporaries(logs)
    chief, other = ({k: v for k, v in out.items() if k in DCNN_STEPS} for out in runs["printed"])
    assert chief == other  # the same metrics, and the same run folders and checkpoints named
    assert chief["finetune"]["metrics"]["utterances"]["n"] == 6 and chief["train"]["metrics"]["utterances"]["n"] == 6
    metrics = json.loads((logs / "tiny_train" / "metrics_train.json").read_text())
    assert metrics["utterances"]["ua"] == pytest.approx(chief["train"]["metrics"]["utterances"]["ua"], abs=1e-4)
    history = (logs / "tiny_finetune" / "history_finetune.csv").read_text().splitlines()
    assert len(history) == 2  # one epoch
    # the logs are appended to: one worker wrote them (the other, in its scratch folder)
    assert (logs / "tiny_finetune" / "log_finetune.out").read_text().count("step 1 (fine-tune DCNN)") == 1
    assert (logs / "tiny_train" / "log_train.out").read_text().count("step 2 (BLSTM + attention)") == 1


def test_baseline_two_workers_chief_writes(runs):
    run = runs["baseline"]
    for name in ("run.json", "model.h5", "baseline_config.json", "labels.json", "split.json", "history.csv",
                 "curves.png", "metrics.json", "confusion_matrix.png", "predictions.csv"):
        assert (run / name).is_file(), name
    assert len(list((run / "cache").glob("*.npy"))) == 1
    assert not _temporaries(run)
    chief, other = (out["baseline"] for out in runs["printed"])
    keys = ("n", "n_train", "n_val", "accuracy", "ua", "f1_macro")
    assert {k: chief[k] for k in keys} == {k: other[k] for k in keys}
    assert json.loads((run / "metrics.json").read_text())["ua"] == chief["ua"]


def _weights(path):
    """The arrays of a checkpoint by name, the optimizer's name (``adam``, ``adam_2``: how many a process made)
    left out."""
    return {re.sub(r"^optimizer_weights/[^/]+/", "optimizer_weights/", k): v for k, v in h5_arrays(path).items()}


def test_baseline_equals_two_mirrored_replicas(runs):
    a, b = _weights(runs["baseline"] / "model.h5"), _weights(runs["mirrored"] / "model.h5")
    assert a.keys() == b.keys() and len([k for k in a if k.startswith("model_weights/")]) == 6
    worst = max(float(np.max(np.abs(a[n].astype(np.float64) - b[n]))) for n in a
                if a[n].size and np.issubdtype(a[n].dtype, np.number))
    print("baseline multi-worker vs mirrored: largest weight difference", worst, "in", runs["seconds"], "s")
    assert worst <= TOLERANCE
    mirrored = json.loads((runs["mirrored"] / "metrics.json").read_text())
    assert json.loads((runs["baseline"] / "metrics.json").read_text())["n"] == mirrored["n"]


BAD = [(["--workers", "127.0.0.1:1,127.0.0.1:2", "--worker-index", "0"], "need --distribute multi-worker"),
       (["--distribute", "multi-worker"], "needs the cluster"),
       (["--distribute", "multi-worker", "--workers", "127.0.0.1:1,127.0.0.1:1", "--worker-index", "0"], "twice"),
       (["--distribute", "multi-worker", "--timeout", "-1", "--workers", "127.0.0.1:1", "--worker-index", "0"],
        "--timeout must be > 0")]


@pytest.mark.parametrize("command", ["dcnn finetune", "dcnn train", "baselines train"])
@pytest.mark.parametrize("flags, message", BAD, ids=["no-distribute", "no-cluster", "twice", "timeout"])
def test_bad_cluster_flags_are_one_line_before_any_work(tmp_path, caplog, monkeypatch, command, flags, message):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    out = tmp_path / "out"
    if command.startswith("dcnn"):
        argv = ["dcnn", command.split()[1], "--config", f"tiny_{command.split()[1]}", "--out", str(out)]
    else:
        argv = ["baselines", "train", "--model", "ann", "--corpus", "fsdd", "--root", str(tmp_path), "--out", str(out)]
    assert cli.main(["-q", *argv, *flags]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and message in errors[0] and "\n" not in errors[0]
    assert not out.exists() and "TF_CONFIG" not in os.environ


def test_no_scratch_folder_is_left(runs):
    for i in (0, 1):  # each worker's TMPDIR: the other worker's scratch folders are gone
        assert [p.name for p in (runs["root"] / f"tmp{i}").iterdir() if p.name.startswith("cnnrnn-worker-")] == []


def test_a_worker_whose_peers_never_join_ends_with_a_clear_error(tmp_path, sample_dir):
    out = tmp_path / "logs"
    started = time.perf_counter()
    rc, _, err = finish(_start(["-m", "cnnrnn", "-q", "dcnn", "finetune", "--config", "tiny_finetune",
                                *_filelists(tmp_path, sample_dir), "--out", str(out),
                                *_cluster(free_ports(2), 1, timeout=2)], tmp_path / "tmp"), timeout=60)
    seconds = time.perf_counter() - started
    assert rc != 0 and "timed out after 2 s waiting for all 2 workers of the cluster to join" in err
    assert seconds < 2 + 20
    assert not out.exists() and not list((tmp_path / "tmp").iterdir())  # a worker writes nothing, not even scratch
