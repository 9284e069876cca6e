import os
import pickle

import numpy as np
import pytest

from cnnrnn.artifacts import (UnsafePickleError, atomic_write, load_image_table, load_pickle, save_json,
                              save_pickle)


def test_pickle_round_trip_of_the_cnnrnn_formats(tmp_path):
    table = {"id": ["a", "b"], "path": np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3),
             "emotion": [0, 1], "speaker": ["x", None], "extra": (1.5, {"k": np.float32(2.0)})}
    path = save_pickle(table, tmp_path / "train_final.pickle")
    back = load_pickle(path)
    assert back["id"] == ["a", "b"] and back["emotion"] == [0, 1]
    np.testing.assert_array_equal(back["path"], table["path"])
    assert back["path"].dtype == np.uint8 and back["extra"][1]["k"] == 2.0


def test_numpy1_style_pickles_load(tmp_path):
    """The original code's pickles were written by numpy 1.x, which names numpy.core."""
    arr = np.ones((2, 3), np.uint8)
    data = pickle.dumps({"path": [arr]}, protocol=2)
    data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in data
    path = tmp_path / "old.pickle"
    path.write_bytes(data)
    np.testing.assert_array_equal(load_pickle(path)["path"][0], arr)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("obj", [Evil(), {"path": [Evil()]}, {"when": __import__("datetime").date(2020, 1, 1)}])
def test_restricted_unpickler_refuses_code_and_objects(tmp_path, obj):
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(UnsafePickleError, match="refusing to unpickle"):
        load_pickle(path)


def test_image_table_refuses_a_non_array_object(tmp_path):
    path = save_pickle({"id": ["a"], "path": ["a.png"], "emotion": [0]}, tmp_path / "t.pickle")
    with pytest.raises(ValueError, match="must hold image arrays, found a str"):
        load_image_table(path)
    path = save_pickle({"id": ["a"], "emotion": [0]}, tmp_path / "u.pickle")
    with pytest.raises(ValueError, match="keys"):
        load_image_table(path)


def test_truncated_pickle_is_a_clear_error(tmp_path):
    path = tmp_path / "cut.pickle"
    path.write_bytes(pickle.dumps({"id": list(range(100))})[:20])
    with pytest.raises(pickle.UnpicklingError, match="not a valid pickle"):
        load_pickle(path)


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.json"
    save_json({"v": 1}, target)

    def broken(fh):
        fh.write(b'{"v": 2, "half')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, broken)
    assert target.read_text().strip() == '{\n  "v": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temp file left behind


def test_atomic_write_uses_umask_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    path = save_json({"v": 1}, tmp_path / "perm.json")
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)
