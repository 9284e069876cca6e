"""Multi-worker training (``--distribute multi-worker`` of ``cnnrnn train``, ``cnnrnn dcnn finetune|train`` and
``cnnrnn baselines train``): the cluster settings and their bad input (:mod:`cnnrnn.distribute`, pure Python), then
two worker processes on 127.0.0.1 on the bundled sample, each family's tiniest preset. CNNRNN: worker 1 is killed
when fold 2 starts, which must end the other with a clear error (never a hang); the same command restarted on both
resumes, and the checkpoints must equal a two-replica ``MirroredStrategy`` run on one machine (two logical CPUs).
The restarted workers then run the DCNN's two steps and the baseline in the same processes (one TensorFlow start
each): the chief alone writes, the other leaves nothing behind, both print the same metrics, and the DCNN's and the
baseline's weights equal the mirrored run's. A worker whose peer never joins ends with a clear error within the
timeout."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from cnnrnn import cli
from cnnrnn import distribute as D

TWO = ["127.0.0.1:2001", "127.0.0.1:2002"]


def cfg(workers, index=0, kind="worker"):
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": kind, "index": index}})


# --- cluster settings (pure Python) ---

def test_tf_config_is_read():
    c = D.parse_tf_config(cfg(TWO, 1))
    assert (c.cluster, c.task_type, c.index, c.n_workers, c.is_chief()) == ({"worker": TWO}, "worker", 1, 2, False)
    assert D.parse_tf_config(cfg(TWO, 0)).is_chief()
    chief = D.parse_tf_config(json.dumps({"cluster": {"chief": ["h:1"], "worker": ["h:2"]},
                                          "task": {"type": "worker", "index": 0}}))
    assert not chief.is_chief() and chief.n_workers == 2
    assert D.parse_tf_config(json.dumps({"cluster": {"chief": ["h:1"], "worker": ["h:2"]},
                                         "task": {"type": "chief", "index": 0}})).is_chief()
    assert json.loads(c.tf_config()) == json.loads(cfg(TWO, 1))


def test_flags_build_the_cluster_and_win_over_tf_config():
    c = D.resolve("127.0.0.1:2001, 127.0.0.1:2002", 1, environ={"TF_CONFIG": "not json"})
    assert (c.cluster["worker"], c.index) == (TWO, 1)
    assert D.resolve(environ={"TF_CONFIG": cfg(TWO, 0)}).index == 0
    assert D.resolve(environ={}) is None and D.is_chief(None) in (True, False)


@pytest.mark.parametrize("text, message", [
    ("{not json", "TF_CONFIG is not JSON"),
    ('{"cluster": {"worker": ["h:1"]}}', 'with "cluster" and "task"'),
    ('[1, 2]', 'with "cluster" and "task"'),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker"}}', 'needs "type" and "index"'),
    (cfg(["h:1", "h:1"]), "names h:1 twice"),
    (cfg(TWO, 2), "index 2 is outside the cluster: 2 worker task(s), indices 0..1"),
    (cfg(TWO, -1), "index -1 is outside the cluster"),
    (cfg(TWO, 0, "ps"), "task type 'ps' is not supported"),
    (cfg(TWO, 0, "evaluator"), "task type 'evaluator' is not supported"),
    (cfg(["h:1", "nohost"]), "'nohost' is not host:port"),
    (cfg(["h:1", "h:99999"]), "'h:99999' is not host:port"),
    (cfg(TWO, "x"), "task index 'x' is not an integer"),
    ('{"cluster": {"ps": ["h:1"], "worker": ["h:2"]}, "task": {"type": "worker", "index": 0}}', "'ps' is not"),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "names no worker"),
])
def test_bad_tf_config_is_one_clear_error(text, message):
    with pytest.raises(D.ClusterError, match=None) as err:
        D.resolve(environ={"TF_CONFIG": text})
    assert message in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("workers, index, message", [
    ("127.0.0.1:2001,127.0.0.1:2002", None, "go together"),
    (None, 0, "go together"),
    ("127.0.0.1:2001,127.0.0.1:2001", 0, "names 127.0.0.1:2001 twice"),
    ("127.0.0.1:2001,127.0.0.1:2002", 2, "outside the cluster"),
    ("127.0.0.1,127.0.0.1:2002", 0, "is not host:port"),
    (" , ", 0, "names no host:port"),
])
def test_bad_flags_are_one_clear_error(workers, index, message):
    with pytest.raises(D.ClusterError) as err:
        D.resolve(workers, index, environ={})
    assert message in str(err.value)


@pytest.mark.parametrize("argv, message", [
    (["--distribute", "multi-worker", "--workers", "127.0.0.1:1,127.0.0.1:1", "--worker-index", "0"], "twice"),
    (["--distribute", "multi-worker", "--workers", "127.0.0.1:1"], "go together"),
    (["--workers", "127.0.0.1:1", "--worker-index", "0"], "need --distribute multi-worker"),
    (["--distribute", "multi-worker", "--timeout", "0", "--workers", "127.0.0.1:1", "--worker-index", "0"],
     "--timeout must be > 0"),
])
def test_cli_refuses_bad_cluster_before_any_work(tmp_path, caplog, monkeypatch, argv, message):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cli.main(["-q", "train", "--out", str(tmp_path / "none")] + argv) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and message in errors[0] and "\n" not in errors[0]
    assert not (tmp_path / "none").exists()


def test_cli_refuses_bad_tf_config(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{oops")
    assert cli.main(["-q", "train", "--out", str(tmp_path), "--distribute", "multi-worker"]) == 2
    assert "TF_CONFIG is not JSON" in caplog.text


def test_watchdog_refuses_a_non_positive_timeout():
    with pytest.raises(ValueError):
        D.Watchdog(0)


# --- two processes ---

#: One process: the commands given as JSON (``[[name, argv], ...]``) one after the other (one TensorFlow start; the
#: multi-worker strategy is made once per process and serves them all), each with the flags that follow (the
#: cluster's), its printed summary after a line ``== name ==``. ``mirrored`` as the second argument: on one machine
#: with two logical CPUs (a two-replica ``MirroredStrategy``), as two workers are.
RUN = """
import json, sys
if sys.argv[2] == "mirrored":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from cnnrnn.training import get_strategy
    assert get_strategy().num_replicas_in_sync == 2  # MirroredStrategy over the two logical CPUs
from cnnrnn import cli
for name, argv in json.loads(sys.argv[1]):
    print(f"== {name} ==", flush=True)
    rc = cli.main(["-q", *argv, *sys.argv[3:]])
    if rc:
        sys.exit(rc)
"""
#: The largest difference allowed between a multi-worker and a mirrored checkpoint's weights (any array, moving
#: batch-norm statistics and the optimizer's state included): the run-to-run variation of the mirrored run, measured
#: as 0.0 (two mirrored runs on a 2-core CPU give bit-identical checkpoints), with room for float noise only.
#: Measured 2026-12-07: 6 runs x 2 CNNRNN folds, every array 0.0 apart (before Keras' throwaway first-batch iterator
#: was removed, 3 folds of 12 differed by up to 4e-4: cnnrnn.training._keras_distributed_fixes), and 0.0 for the
#: fold trained after a restart (4e-4 before each fold's dropout state was reset); both DCNN steps and the baseline
#: 0.0 (DCNN step 2 3e-2 while only the multi-worker run fed it a tf.data pipeline).
TOLERANCE = 1e-6
DCNN_STEPS = ("finetune", "train")


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ",".join(f"127.0.0.1:{p}" for p in ports)


def start(args, tmpdir=None):
    """``python args...`` with TensorFlow quiet, no ``TF_CONFIG``, and ``TMPDIR`` (where a worker's scratch folders
    go) set to ``tmpdir`` when given."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"} | {"TF_CPP_MIN_LOG_LEVEL": "2"}
    if tmpdir is not None:
        tmpdir.mkdir(exist_ok=True)
        env["TMPDIR"] = str(tmpdir)
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def cluster(workers, index, timeout=60):
    return ["--distribute", "multi-worker", "--workers", workers, "--worker-index", str(index), "--timeout",
            str(timeout)]


def worker(out, workers, index, timeout=30):
    return start(["-m", "cnnrnn", "-q", "train", "--out", str(out), "--config", "tiny",
                  *cluster(workers, index, timeout)])


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def printed(stdout):
    """``{command: printed summary}`` of a :data:`RUN` process."""
    parts = stdout.split("== ")[1:]
    return {p.split(" ==", 1)[0]: json.loads(p.split("==\n", 1)[1]) for p in parts}


def filelists(root, sample_dir):
    """DCNN filelists of 16 real 2 s clips of the sample (10 train, 6 test), three labels: the flags."""
    from cnnrnn.dcnn.filelists import FilelistEntry, write_filelist

    wavs = sorted((sample_dir / "wav").rglob("*.wav"))[:16]
    entries = [FilelistEntry(str(w), w.stem.split("_")[2], "", i % 3) for i, w in enumerate(wavs)]
    write_filelist(root / "train.txt", entries[:10])
    write_filelist(root / "test.txt", entries[10:])
    (root / "labels.json").write_text(json.dumps({"labels": ["a", "b", "c"]}))
    return ["--filelist-train", str(root / "train.txt"), "--filelist-test", str(root / "test.txt"),
            "--labels", str(root / "labels.json")]


@pytest.fixture(scope="module")
def packed(tmp_path_factory, sample_dir):
    """The bundled sample split, rendered and packed with the tiny config (no training)."""
    out = tmp_path_factory.mktemp("packed") / "run"
    for argv in (["split", "--corpus", "kemdy20", "--root", str(sample_dir)], ["spectrograms"], ["pack"]):
        assert cli.main(["-q", argv[0], "--out", str(out), "--config", "tiny", *argv[1:]]) == 0
    return out


@pytest.fixture(scope="module")
def trained(packed, tmp_path_factory, sample_dir):
    """Two CNNRNN workers beside a two-replica mirrored run; worker 1 is killed when fold 2 starts (fold 1 is
    trained and saved); then the same command is restarted on both workers, which finish the run and go on, in the
    same processes, with the DCNN's two steps and the baseline (the mirrored process: CNNRNN, then the baseline).

    Returns ``{"multi", "mirrored", "dcnn", "baseline", "mirrored_baseline": folders, "killed": (returncode,
    stderr, seconds from the kill to the chief's end), "fold1_mtime": fold1.json's mtime before the restart,
    "printed": [{command: summary}] of the restarted workers (chief first), "root"}``."""
    root = tmp_path_factory.mktemp("trained")
    multi, mirrored = root / "multi", root / "mirrored"
    shutil.copytree(packed, multi)
    shutil.copytree(packed, mirrored)
    corpus = ["train", "--model", "ann", "--corpus", "kemdy20", "--root", str(sample_dir), "--config", "tiny_ann"]
    lists = filelists(root, sample_dir)

    def dcnn(out):
        return [[step, ["dcnn", step, "--config", f"tiny_{step}", *lists, "--out", str(out)]] for step in DCNN_STEPS]

    reference = start(["-c", RUN, json.dumps([["cnnrnn", ["train", "--out", str(mirrored), "--config", "tiny"]],
                                               *dcnn(root / "mirrored_logs"),
                                               ["baseline", ["baselines", *corpus, "--out", str(root / "mb")]]]),
                       "mirrored"])
    workers = free_ports(2)
    other, chief = worker(multi, workers, 1, timeout=20), worker(multi, workers, 0, timeout=20)
    deadline = time.perf_counter() + 180
    while not (multi / "history" / "fold2.csv").exists():  # fold 1 is trained and saved, fold 2 is training
        assert time.perf_counter() < deadline and chief.poll() is None, "fold 2 never started: " + str(chief.poll())
        time.sleep(0.05)
    other.send_signal(signal.SIGKILL)
    killed = time.perf_counter()
    rc, _, err = finish(chief)
    killed = (rc, err, time.perf_counter() - killed)
    other.communicate()
    fold1_mtime = (multi / "folds" / "fold1.json").stat().st_mtime_ns
    commands = [["cnnrnn", ["train", "--out", str(multi), "--config", "tiny"]]]  # the same command again
    commands += dcnn(root / "logs")
    commands.append(["baseline", ["baselines", *corpus, "--out", str(root / "baseline")]])
    workers = free_ports(2)
    procs = [start(["-c", RUN, json.dumps(commands), "multi-worker", *cluster(workers, i)], root / f"tmp{i}")
             for i in (0, 1)]
    results = [finish(p) for p in procs + [reference]]
    for rc, _, err in results:
        assert rc == 0, err[-3000:]
    return {"multi": multi, "mirrored": mirrored, "dcnn": root / "logs", "mirrored_dcnn": root / "mirrored_logs",
            "baseline": root / "baseline", "mirrored_baseline": root / "mb", "killed": killed,
            "fold1_mtime": fold1_mtime, "root": root, "printed": [printed(out) for _, out, _ in results[:2]]}


def h5_arrays(path):
    """The arrays of an ``.h5`` file by name, the optimizer's name (``adam``, ``adam_2``: how many a process made)
    left out."""
    import h5py

    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return {re.sub(r"^optimizer_weights/[^/]+/", "optimizer_weights/", k): v for k, v in arrays.items()}


def largest_difference(a, b):
    """The largest absolute difference of any numeric array of two checkpoints (the same names asserted)."""
    a, b = h5_arrays(a), h5_arrays(b)
    assert a.keys() == b.keys() and len(a) > 5
    return max(float(np.max(np.abs(a[n].astype(np.float64) - b[n]))) for n in a
               if a[n].size and np.issubdtype(a[n].dtype, np.number))


def temporaries(folder):
    """Files a killed or unfinished write leaves (``.name.XXXX.tmp``; lock files stay, as on one machine)."""
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


def test_two_workers_equal_two_mirrored_replicas(trained):
    """Fold 1 trained before the kill, fold 2 after the restart: both equal the mirrored run's."""
    for k in (1, 2):
        name = f"models/CNN_RNN_fold{k}_epoch1_e4.h5"
        assert largest_difference(trained["multi"] / name, trained["mirrored"] / name) <= TOLERANCE
    multi = json.loads((trained["multi"] / "cv_report.json").read_text())
    mirrored = json.loads((trained["mirrored"] / "cv_report.json").read_text())
    assert [f["n_val"] for f in multi["folds"]] == [f["n_val"] for f in mirrored["folds"]]
    assert [f["ua"] for f in multi["folds"]] == [f["ua"] for f in mirrored["folds"]]


def test_only_the_chief_writes(trained):
    multi = trained["multi"]
    for name in ("cv_report.json", "run.json", "folds/fold1.json", "folds/fold2.json", "history/fold1.csv"):
        assert (multi / name).is_file(), name
    assert not temporaries(multi)
    chief, other = (out["cnnrnn"] for out in trained["printed"])  # the same report, one written
    assert chief["mean"] == other["mean"]


def test_a_worker_killed_while_training_ends_the_other_with_a_clear_error(trained):
    rc, err, seconds = trained["killed"]
    assert seconds < 20 + 30  # TensorFlow's heartbeat, or the collective's timeout (20 s)
    assert rc == 2 and "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("ERROR cnnrnn:")]
    assert len(lines) == 1 and "multi-worker training: a worker was lost (" in lines[0], err[-3000:]
    assert "Restart every worker with the same command" in lines[0]


def test_a_restart_resumes(trained):
    multi = trained["multi"]
    assert (multi / "folds" / "fold1.json").stat().st_mtime_ns == trained["fold1_mtime"]  # fold 1 kept
    assert [f["fold"] for f in json.loads((multi / "cv_report.json").read_text())["folds"]] == [1, 2]


def test_dcnn_two_workers_chief_writes_both_steps(trained):
    logs = trained["dcnn"]
    assert sorted(p.name for p in logs.iterdir()) == ["tiny_finetune", "tiny_train"]  # one set of files
    for name in ("dcnn.h5", "dcnn.json", "run.json", "log_finetune.out", "history_finetune.csv",
                 "metrics_finetune.json", "predictions_finetune.csv", "confusion_finetune_segments.png",
                 "confusion_finetune_utterances.png"):
        assert (logs / "tiny_finetune" / name).is_file(), name
    for name in ("blstm_attention.h5", "blstm_attention.json", "run.json", "log_train.out", "history_train.csv",
                 "metrics_train.json", "predictions_train.csv", "confusion_train.png"):
        assert (logs / "tiny_train" / name).is_file(), name
    assert not temporaries(logs)
    chief, other = ({k: v for k, v in out.items() if k in DCNN_STEPS} for out in trained["printed"])
    assert chief == other  # the same metrics, and the same run folders and checkpoints named
    assert chief["finetune"]["metrics"]["utterances"]["n"] == 6 and chief["train"]["metrics"]["utterances"]["n"] == 6
    metrics = json.loads((logs / "tiny_train" / "metrics_train.json").read_text())
    assert metrics["utterances"]["ua"] == pytest.approx(chief["train"]["metrics"]["utterances"]["ua"], abs=1e-4)
    history = (logs / "tiny_finetune" / "history_finetune.csv").read_text().splitlines()
    assert len(history) == 2  # one epoch
    # the logs are appended to: one worker wrote them (the other, in its scratch folder)
    assert (logs / "tiny_finetune" / "log_finetune.out").read_text().count("step 1 (fine-tune DCNN)") == 1
    assert (logs / "tiny_train" / "log_train.out").read_text().count("step 2 (BLSTM + attention)") == 1


def test_dcnn_steps_equal_two_mirrored_replicas(trained):
    for step, name in (("tiny_finetune", "dcnn.h5"), ("tiny_train", "blstm_attention.h5")):
        assert largest_difference(trained["dcnn"] / step / name, trained["mirrored_dcnn"] / step / name) <= TOLERANCE
    multi, mirrored = (json.loads((trained[k] / "tiny_train" / "metrics_train.json").read_text())["utterances"]
                       for k in ("dcnn", "mirrored_dcnn"))
    assert {k: multi[k] for k in ("ua", "wa", "f1_macro", "confusion_matrix")} == {
        k: mirrored[k] for k in ("ua", "wa", "f1_macro", "confusion_matrix")}


def test_baseline_two_workers_chief_writes(trained):
    run = trained["baseline"]
    for name in ("run.json", "model.h5", "baseline_config.json", "labels.json", "split.json", "history.csv",
                 "curves.png", "metrics.json", "confusion_matrix.png", "predictions.csv"):
        assert (run / name).is_file(), name
    assert len(list((run / "cache").glob("*.npy"))) == 1
    assert not temporaries(run)
    chief, other = (out["baseline"] for out in trained["printed"])
    keys = ("n", "n_train", "n_val", "accuracy", "ua", "f1_macro")
    assert {k: chief[k] for k in keys} == {k: other[k] for k in keys}
    assert json.loads((run / "metrics.json").read_text())["ua"] == chief["ua"]


def test_baseline_equals_two_mirrored_replicas(trained):
    run, mirrored = trained["baseline"], trained["mirrored_baseline"]
    assert len([k for k in h5_arrays(run / "model.h5") if k.startswith("model_weights/")]) == 6
    assert largest_difference(run / "model.h5", mirrored / "model.h5") <= TOLERANCE
    n = [json.loads((folder / "metrics.json").read_text())["n"] for folder in (run, mirrored)]
    assert n[0] == n[1]


def test_no_scratch_folder_is_left(trained):
    for i in (0, 1):  # each worker's TMPDIR: the other worker's scratch folders are gone
        assert [p.name for p in (trained["root"] / f"tmp{i}").iterdir() if p.name.startswith("cnnrnn-worker-")] == []


BAD = [(["--workers", "127.0.0.1:1,127.0.0.1:2", "--worker-index", "0"], "need --distribute multi-worker"),
       (["--distribute", "multi-worker"], "needs the cluster"),
       (["--distribute", "multi-worker", "--workers", "127.0.0.1:1,127.0.0.1:1", "--worker-index", "0"], "twice"),
       (["--distribute", "multi-worker", "--timeout", "-1", "--workers", "127.0.0.1:1", "--worker-index", "0"],
        "--timeout must be > 0")]


@pytest.mark.parametrize("command", ["dcnn finetune", "dcnn train", "baselines train"])
@pytest.mark.parametrize("flags, message", BAD, ids=["no-distribute", "no-cluster", "twice", "timeout"])
def test_bad_cluster_flags_of_the_other_families_are_one_line(tmp_path, caplog, monkeypatch, command, flags,
                                                              message):
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


def test_a_worker_that_never_joins_ends_the_other_with_a_clear_error(packed, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(packed, out)
    started = time.perf_counter()
    rc, _, err = finish(worker(out, free_ports(2), 0, timeout=2), timeout=60)
    seconds = time.perf_counter() - started
    assert rc != 0
    assert "timed out after 2 s waiting for all 2 workers of the cluster to join" in err
    assert seconds < 2 + 20  # the timeout counts from the strategy's start, after the imports
    assert not (out / "cv_report.json").exists()


def test_a_dcnn_worker_whose_peers_never_join_writes_nothing(tmp_path, sample_dir):
    out = tmp_path / "logs"
    started = time.perf_counter()
    rc, _, err = finish(start(["-m", "cnnrnn", "-q", "dcnn", "finetune", "--config", "tiny_finetune",
                               *filelists(tmp_path, sample_dir), "--out", str(out),
                               *cluster(free_ports(2), 1, timeout=2)], tmp_path / "tmp"), timeout=60)
    seconds = time.perf_counter() - started
    assert rc != 0 and "timed out after 2 s waiting for all 2 workers of the cluster to join" in err
    assert seconds < 2 + 20
    assert not out.exists() and not list((tmp_path / "tmp").iterdir())  # a worker writes nothing, not even scratch
