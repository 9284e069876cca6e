"""Multi-worker training (``cnnrnn train --distribute multi-worker``): the cluster settings and their bad input
(:mod:`cnnrnn.distribute`, pure Python), then two worker processes on 127.0.0.1 training the tiny config on the
bundled sample, whose checkpoints must equal a two-replica ``MirroredStrategy`` run on one machine (two logical
CPUs); a worker whose peer never joins, and one whose peer is killed in the middle of training, must end with a
clear error (never a hang), and the same command restarted on every worker resumes."""
import json
import os
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

#: The largest difference allowed between a multi-worker and a mirrored checkpoint's weights (any array, moving
#: batch-norm statistics included): the run-to-run variation of the mirrored run, measured as 0.0 (two mirrored runs
#: on a 2-core CPU give bit-identical checkpoints), with room for float noise only. Measured 2026-12-07: 6 runs x 2
#: folds, every array 0.0 apart (before Keras' throwaway first-batch iterator was removed, 3 folds of 12 differed by
#: up to 4e-4 in trainable weights: cnnrnn.training._keras_distributed_fixes).
TOLERANCE = 1e-6
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

MIRRORED = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from cnnrnn import cli
from cnnrnn.training import get_strategy
assert get_strategy().num_replicas_in_sync == 2  # MirroredStrategy over the two logical CPUs
sys.exit(cli.main(["-q", "train", "--out", sys.argv[1], "--config", "tiny"]))
"""


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ",".join(f"127.0.0.1:{p}" for p in ports)


def start(args, **kw):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"} | {"TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, **kw)


def worker(out, workers, index, timeout=30):
    return start(["-m", "cnnrnn", "-q", "train", "--out", str(out), "--config", "tiny", "--distribute", "multi-worker",
                  "--workers", workers, "--worker-index", str(index), "--timeout", str(timeout)])


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def packed(tmp_path_factory, sample_dir):
    """The bundled sample split, rendered and packed with the tiny config (no training)."""
    out = tmp_path_factory.mktemp("packed") / "run"
    for argv in (["split", "--corpus", "kemdy20", "--root", str(sample_dir)], ["spectrograms"], ["pack"]):
        assert cli.main(["-q", argv[0], "--out", str(out), "--config", "tiny", *argv[1:]]) == 0
    return out


@pytest.fixture(scope="module")
def trained(packed, tmp_path_factory):
    """Two workers and a two-replica mirrored run, side by side; worker 1 is killed when fold 2 starts (fold 1 is
    trained and saved), then the same command is restarted on both workers, which finish the run.

    Returns ``{"multi": folder, "mirrored": folder, "killed": (returncode, stderr, seconds from the kill to the
    chief's end), "fold1_mtime": fold1.json's mtime before the restart, "results": [(rc, stdout, stderr)] of the
    restarted workers (1, 0)}``."""
    root = tmp_path_factory.mktemp("trained")
    multi, mirrored = root / "multi", root / "mirrored"
    shutil.copytree(packed, multi)
    shutil.copytree(packed, mirrored)
    reference = start(["-c", MIRRORED, str(mirrored)])
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
    workers = free_ports(2)  # the same command again, on every worker
    results = [finish(p) for p in (worker(multi, workers, 1), worker(multi, workers, 0))] + [finish(reference)]
    for rc, _, err in results:
        assert rc == 0, err[-3000:]
    return {"multi": multi, "mirrored": mirrored, "killed": killed, "fold1_mtime": fold1_mtime,
            "results": results[:2]}


def h5_arrays(path):
    import h5py

    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return arrays


def weight_differences(trained):
    """The largest absolute difference of any array of each fold's checkpoint, multi-worker vs mirrored."""
    worst = []
    for k in (1, 2):
        name = f"models/CNN_RNN_fold{k}_epoch1_e4.h5"
        a, b = h5_arrays(trained["multi"] / name), h5_arrays(trained["mirrored"] / name)
        assert a.keys() == b.keys() and len(a) > 10
        worst.append(max(float(np.max(np.abs(a[n].astype(np.float64) - b[n]))) for n in a
                         if a[n].size and np.issubdtype(a[n].dtype, np.number)))
    return worst


def test_two_workers_equal_two_mirrored_replicas(trained):
    """Fold 1 trained before the kill, fold 2 after the restart: both equal the mirrored run's."""
    assert max(weight_differences(trained)) <= TOLERANCE
    multi = json.loads((trained["multi"] / "cv_report.json").read_text())
    mirrored = json.loads((trained["mirrored"] / "cv_report.json").read_text())
    assert [f["n_val"] for f in multi["folds"]] == [f["n_val"] for f in mirrored["folds"]]
    assert [f["ua"] for f in multi["folds"]] == [f["ua"] for f in mirrored["folds"]]


def test_only_the_chief_writes(trained):
    multi = trained["multi"]
    for name in ("cv_report.json", "run.json", "folds/fold1.json", "folds/fold2.json", "history/fold1.csv"):
        assert (multi / name).is_file(), name
    assert not list(multi.rglob("*.tmp*"))
    # the non-chief printed the same report, without writing another
    chief_out, other_out = trained["results"][1][1], trained["results"][0][1]
    assert json.loads(chief_out)["mean"] == json.loads(other_out)["mean"]


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
