"""The time-to-accuracy tool on a tiny run: one point per epoch, a chart and a table."""

import os

from PIL import Image

from kerascnn.time_to_accuracy import main


def test_writes_a_point_per_epoch(tmp_path, capsys):
    out = tmp_path / "docs"
    assert main(["--model", "sequential", "--epochs", "2", "--subset", "1000", "--val-size", "500",
                 "--precision", "float32", "--logdir", str(tmp_path / "logs"), "--out", str(out)]) == 0
    table = (out / "TIME_TO_ACCURACY.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert len(rows) == 2 and "Checkpoint chosen on validation" in table
    assert Image.open(out / "time_to_accuracy.png").size == (720, 420)
    assert "epoch 2:" in capsys.readouterr().out and os.listdir(tmp_path / "logs")
