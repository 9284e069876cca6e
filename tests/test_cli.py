import subprocess
import sys

import numpy as np
import pytest

from cnnrnn import cli
from cnnrnn.features import read_png

SUBCOMMANDS = ["split", "spectrograms", "pack", "train", "evaluate", "predict", "run", "demo", "spectrogram"]


def test_console_script_help_lists_every_stage():
    proc = subprocess.run([sys.executable, "-m", "cnnrnn", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for name in SUBCOMMANDS:
        assert name in proc.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help_and_config(name, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([name, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--config" in out and "usage: cnnrnn " + name in out


def test_spectrogram_of_one_file(tmp_path, real_wav):
    out = tmp_path / "one.png"
    cfg = tmp_path / "c.json"
    cfg.write_text('{"spectrogram": {"image_size": [40, 90], "colormap": "viridis"}}')
    assert cli.main(["-q", "spectrogram", str(real_wav), "-o", str(out), "--config", str(cfg), "--raw"]) == 0
    image = read_png(out)
    assert image.shape == (40, 90, 3) and image.dtype == np.uint8 and image.std() > 5


def test_split_cli_and_clear_errors(tmp_path, sample_dir, caplog):
    out = tmp_path / "split"
    assert cli.main(["-q", "split", "--corpus", "kemdy20", "--root", str(sample_dir), "--out", str(out),
                     "--keep-ties"]) == 0
    import json

    report = json.loads((out / "split_report.json").read_text())
    assert report["split"]["ties"] == "kept with their first label"
    assert report["split"]["n_train"] + report["split"]["n_test"] == 105
    assert report["corpus"]["n_skipped"] == 3
    assert cli.main(["-q", "split", "--corpus", "kemdy20", "--root", str(tmp_path / "nowhere"),
                     "--out", str(out)]) == 2
    assert "does not exist" in caplog.text
    assert cli.main(["-q", "pack", "--out", str(tmp_path / "empty")]) == 2  # nothing to pack: clear error
