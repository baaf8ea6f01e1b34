"""The side-by-side race on a small cut of MNIST: both contestants run, in their own processes, and are tabled."""

import re
import time

import pytest

from tools.race import main, reached


def test_reached_is_the_first_epoch_at_the_target():
    points = [(1, 0.5, 0.990), (2, 1.0, 0.9931), (3, 1.5, 0.995)]
    assert reached(points, 0.9931) == (2, 1.0, 0.9931)
    assert reached(points, 0.996) is None


def test_race_tables_both_contestants(capsys):
    started = time.monotonic()
    assert main(["--rounds", "1", "--epochs", "1", "--subset", "2000"]) == 0
    minutes = (time.monotonic() - started) / 60
    out = capsys.readouterr().out
    ours = re.search(r"^\| kerascnn `sequential`.*\| (\d[\d,]*) \| (\w+) \| not reached \|", out, re.M)
    theirs = re.search(r"^\| keras-io Simple MNIST convnet, 1 epochs \| 34,826 \| float32 \| 1 \| ([\d.]+) \|", out, re.M)
    # the keras-io row has the example's own parameter count (its model.summary(): 34,826)
    assert ours and ours.group(1) == "619,786" and theirs
    assert 0 < float(theirs.group(1)) <= minutes + 0.005  # its training time: within the race's own, rounded
    assert "each round's ratio: none" in out  # 1 epoch on 1,800 images reaches no 99.31%


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--subset", "10"])
    assert e.value.code == 2 and "Received: rounds=2, epochs=15, subset=10" in capsys.readouterr().err
