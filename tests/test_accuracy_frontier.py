"""The accuracy search's arithmetic: which epoch a checkpoint keeps, and the frontier (numbers: docs/ACCURACY.md)."""

import json

from tools.accuracy_frontier import RELATIVE_COST, chosen, frontier_points, main, pareto, read_runs


def write_run(f, label, members, val, test):
    """A sweep run: per epoch, the validation and test accuracy of the first k members."""
    for e, (v, t) in enumerate(zip(val, test), start=1):
        f.write(json.dumps({"label": label, "epoch": e, "train_seconds": 60.0 * e, "val_prefix": v,
                            "test_prefix": t}) + "\n")
    f.write(json.dumps({"label": label, "summary": True, "members": members}) + "\n")


def test_the_kept_epoch_is_the_first_best_on_validation_and_test_only_reads():
    run = {"epochs": [{"epoch": 1, "val_prefix": [0.9, 0.95], "test_prefix": [0.5, 0.6]},
                      {"epoch": 2, "val_prefix": [0.97, 0.95], "test_prefix": [0.99, 0.7]},
                      {"epoch": 3, "val_prefix": [0.97, 0.94], "test_prefix": [0.1, 0.8]}]}
    assert chosen(run, 1) == (2, 0.97, 0.99)  # a tie on validation keeps the earlier epoch
    assert chosen(run, 2) == (1, 0.95, 0.6)
    assert chosen(run, 1, last_epoch=1) == (1, 0.9, 0.5)  # a shorter run can only keep what it trained


def test_the_frontier_keeps_points_that_more_compute_does_not_beat():
    points = [(1, 1, 1.0, 0.5), (1, 2, 2.0, 0.7), (2, 1, 2.0, 0.6), (1, 3, 3.0, 0.65), (2, 2, 4.0, 0.8)]
    assert [p[:2] for p in pareto(points, key=3)] == [(1, 1), (1, 2), (2, 2)]


def test_runs_group_by_recipe_over_seeds_and_incomplete_runs_are_left_out(tmp_path):
    path = tmp_path / "sweep.jsonl"
    with open(path, "w") as f:
        write_run(f, "a seed=1", 2, [[0.9, 0.92], [0.95, 0.96]], [[0.9, 0.91], [0.94, 0.95]])
        write_run(f, "a seed=2", 2, [[0.91, 0.93], [0.94, 0.97]], [[0.92, 0.93], [0.93, 0.96]])
        f.write(json.dumps({"label": "b seed=1", "epoch": 1, "val_prefix": [0.5], "test_prefix": [0.5]}) + "\n")
    names = read_runs([str(path)])
    assert list(names) == ["a, 2 members"] and [r["seed"] for r in names["a, 2 members"]] == ["1", "2"]
    k2e2 = [p for p in frontier_points(names["a, 2 members"]) if p[:2] == (2, 2)][0]
    assert abs(k2e2[3] - 0.965) < 1e-9 and abs(k2e2[4] - 0.955) < 1e-9  # means over the two seeds


def test_a_run_with_tta_also_counts_as_its_own_recipe_read_from_the_tta_scores(tmp_path):
    path = tmp_path / "sweep.jsonl"
    with open(path, "w") as f:
        for e, (v, t, vt, tt) in enumerate([(0.95, 0.94, 0.97, 0.93), (0.96, 0.95, 0.96, 0.96)], start=1):
            f.write(json.dumps({"label": "a seed=1", "epoch": e, "train_seconds": 60.0 * e, "val_prefix": [v],
                                "test_prefix": [t], "val_prefix_tta": [vt], "test_prefix_tta": [tt]}) + "\n")
        f.write(json.dumps({"label": "a seed=1", "summary": True, "members": 1,
                            "config": {"member": "strided"}}) + "\n")
    names = read_runs([str(path)])
    assert list(names) == ["a", "a +TTA"]
    assert chosen(names["a"][0], 1) == (2, 0.96, 0.95)
    assert chosen(names["a +TTA"][0], 1) == (1, 0.97, 0.93)  # the TTA reading chooses its own epoch
    assert names["a"][0]["cost"] == RELATIVE_COST["strided"] > 1.9  # twice the lecture member's compute


def test_the_command_prints_the_tables_and_draws_where_it_is_told(tmp_path, capsys):
    path, plot = tmp_path / "sweep.jsonl", tmp_path / "frontier.png"
    with open(path, "w") as f:
        write_run(f, "a seed=1", 2, [[0.99, 0.992], [0.995, 0.997]], [[0.99, 0.991], [0.994, 0.996]])
    assert main([str(path), "--plot", str(plot)]) is None
    out = capsys.readouterr().out
    assert "| a, 2 members | 2 | 1 | 2 | 99.70 ± 0.00 | 99.60 ± 0.00 |" in out
    assert "| 2 x 2 |" in out and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
