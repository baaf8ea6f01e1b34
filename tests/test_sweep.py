"""tools/sweep.py: the Keras-only runner (any backend, no TensorFlow needed)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tools.sweep import main, prefix_accuracies, prefix_nll
from conftest import ROOT

# Runs `python tools/sweep.py ...` in a process where `import tensorflow`
# fails, as on a GPU machine that has Keras and JAX only.
WITHOUT_TENSORFLOW = """
import runpy, sys
class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ImportError("TensorFlow is blocked in this test")
sys.meta_path.insert(0, NoTensorFlow())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_prefix_accuracies_average_the_first_k_members():
    labels = np.array([0, 1])
    probs = np.array([
        [[0.9, 0.1], [0.6, 0.4]],  # member 1: wrong on the second image
        [[0.8, 0.2], [0.1, 0.9]],  # member 2: sure and right, so the mean of two is right
        [[0.1, 0.9], [0.1, 0.9]],  # member 3: wrong on the first, outvoted by the mean
    ])
    assert prefix_accuracies(probs, labels) == [0.5, 1.0, 1.0]
    # The loss of the same averages: -mean(log p(true class)); it moves where accuracy does not (k = 2 to 3).
    expected = [-np.mean(np.log([0.9, 0.4])), -np.mean(np.log([0.85, 0.65])), -np.mean(np.log([0.6, 0.7333333]))]
    np.testing.assert_allclose(prefix_nll(probs, labels), expected, rtol=1e-6)


@pytest.mark.parametrize("flags, message", [
    (["--members", "0"], "argument --members: expected an integer >= 1, received '0'"),
    (["--nope", "1"], "unrecognized arguments: --nope 1"),
    (["--precision", "fp8"], "argument --precision: invalid choice: 'fp8'"),
    (["--dropout", "1.5"], "argument --dropout: expected a number in [0, 1), received '1.5'"),
    (["--data-dir", "/no/such/dir"], "/no/such/dir"),
])
def test_a_bad_setting_exits_2_naming_it(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(flags)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_best_trains_compiled_under_jax_without_tensorflow(tmp_path):
    pytest.importorskip("jax")
    out = tmp_path / "sweep.jsonl"
    args = ["--model", "best", "--epochs", "1", "--precision", "float32", "--out", str(out),
            "--members", "2", "--subset", "4000", "--val-size", "1000", "--tta", "1", "--batch-size", "100",
            "--save-probs", str(tmp_path / "probs")]
    env = {**os.environ, "KERAS_BACKEND": "jax"}  # no PYTHONPATH: the tool finds kerascnn beside it
    proc = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, os.path.join(ROOT, "tools", "sweep.py"), *args],
                          env=env, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Keras drops jit_compile for a model whose layers say they cannot be compiled;
    # layers.allow_jit must have cleared the augmentation layers' flag.
    assert "support `jit_compile=True`" not in proc.stderr
    epoch, summary = [json.loads(line) for line in out.read_text().splitlines()]
    assert (summary["backend"], summary["members"], summary["train_images"]) == ("jax", 2, 4000)
    assert len(epoch["val_prefix"]) == len(epoch["test_prefix"]) == len(epoch["val_nll_prefix"]) == 2
    # 40 steps of real MNIST; chance is 0.1. A member's batch-norm statistics are still settling after
    # so few steps (members seen from 0.40 to 0.79 over seeds), so the pair is held to more than each.
    assert min(epoch["val_members"]) > 0.3 and epoch["val_prefix"][-1] > 0.5
    # Test-time augmentation (shifted copies, averaged) is recorded beside the plain scores, for each prefix.
    assert len(epoch["val_prefix_tta"]) == len(epoch["test_prefix_tta"]) == 2
    assert epoch["val_prefix_tta"][-1] > 0.5
    # --save-probs: each member's softmax on validation and test, what the prefixes were computed from.
    saved, labels = np.load(tmp_path / "probs" / "epoch_01.npz"), np.load(tmp_path / "probs" / "labels.npz")
    assert saved["val"].shape == (2, 1000, 10) and saved["test"].shape == (2, 10000, 10)
    assert prefix_accuracies(saved["val"], labels["y_val"]) == pytest.approx(epoch["val_prefix"])
    assert prefix_nll(saved["val"], labels["y_val"]) == pytest.approx(epoch["val_nll_prefix"], rel=1e-5)


def test_checkpoint_rules_are_scored_on_the_half_of_validation_they_did_not_pick_on(tmp_path):
    """tools/compare_rules.py: a rule that picks an epoch on one half of validation is scored on the other."""
    from tools.compare_rules import cross_fitted, main as compare, pick

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    right = np.eye(2)[labels] * 0.8 + 0.1  # 0.9 on the true class
    wrong = right[:, ::-1]
    # Epochs 1 and 2 are right on about 80% of the images, at random; epoch 3 on all of them.
    epochs = np.stack([np.where((rng.random(400) < 0.8)[:, None], right, wrong) for _ in range(3)])
    epochs[2] = right  # the last epoch is right everywhere
    assert pick("last", epochs, labels) == 2 and pick("accuracy", epochs, labels) == 2
    assert pick("nll", epochs[:2], labels) == int(np.argmin([-np.log(p[np.arange(400), labels]).mean()
                                                              for p in epochs[:2]]))
    acc, nll = cross_fitted("accuracy", epochs, labels)
    assert acc == 1.0 and nll == pytest.approx(-np.log(0.9))
    # The command: three saved runs, ranked on validation, the test read after.
    for seed in range(3):
        folder = tmp_path / f"run{seed}"
        folder.mkdir()
        np.savez(folder / "labels.npz", y_val=labels, y_test=labels)
        for e, p in enumerate(epochs):
            np.savez(folder / f"epoch_{e + 1:02d}.npz", val=np.stack([p, p]), test=np.stack([p, p]))
    out = tmp_path / "rules.json"
    assert compare([str(tmp_path / f"run{s}") for s in range(3)] + ["--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["rules"]["last"]["cf_val_accuracy"]["mean"] == 1.0
    assert result["rules"]["last"]["per_run"][0]["epoch"] == 3
