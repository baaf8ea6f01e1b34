"""The time-to-accuracy tool on a tiny run: one point per epoch, a chart with readable ticks, and a table."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from kerascnn.figures import render
from test_figures import blueish, reddish
from tools.time_to_accuracy import chart, main, read_table


def test_writes_a_point_per_epoch(tmp_path, capsys):
    out = tmp_path / "docs"
    assert main(["--model", "sequential", "--epochs", "2", "--subset", "1000", "--val-size", "500",
                 "--batch-size", "100", "--precision", "float32", "--logdir", str(tmp_path / "logs"), "--out", str(out)]) == 0
    table = (out / "TIME_TO_ACCURACY.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert len(rows) == 2 and "Checkpoint chosen on validation" in table
    assert Image.open(out / "time_to_accuracy.png").size == (720, 420)
    assert "epoch 2:" in capsys.readouterr().out and os.listdir(tmp_path / "logs")


def test_redraw_reads_the_recorded_table(tmp_path):
    recorded = os.path.join(ROOT, "docs", "TIME_TO_ACCURACY.md")
    points, title = read_table(recorded)
    assert len(points) == 15 and points[0] == (1, 1.2, 0.9911, 0.9932) and points[-1][:3] == (15, 17.7, 0.9965)
    assert title == "best: test accuracy by minute (mixed_bfloat16, x86_64, 2 cores, TF 2.21.0, Keras 3.15.1)"
    shutil.copy(recorded, tmp_path)
    assert main(["--redraw", "--out", str(tmp_path)]) == 0
    assert Image.open(tmp_path / "time_to_accuracy.png").size == (720, 420)
    (tmp_path / "TIME_TO_ACCURACY.md").write_text("# Time to accuracy\n\nno table\n")
    with pytest.raises(ValueError, match="holds no time-to-accuracy table"):
        read_table(tmp_path / "TIME_TO_ACCURACY.md")


def test_time_to_accuracy_chart_has_round_ticks_and_the_target_line():
    points = [(1, 1.2, 0.9911), (2, 2.3, 0.9908), (3, 3.7, 0.9930), (4, 17.7, 0.9965)]
    figure = chart(points, "title", target=0.997)
    (ax,) = figure.axes
    ticks = ax.get_yticks()
    step = np.diff(ticks)[0]
    assert np.allclose(np.diff(ticks), step) and round(step, 6) in (0.05, 0.1, 0.2, 0.25, 0.5)
    assert np.allclose(ticks / step, np.round(ticks / step))  # 99.10%, 99.20%, ... not 99.03%
    assert ax.get_yticklabels()[1].get_text().endswith("%")
    target = [line for line in ax.get_lines() if line.get_label() == "target 99.70%"]
    assert len(target) == 1 and target[0].get_ydata()[0] == pytest.approx(99.7)
    picture = render(figure)
    assert picture.shape == (420, 720, 3)
    assert reddish(picture).sum(axis=1).max() > 300  # a long red row: the target line
    assert blueish(picture).any()
