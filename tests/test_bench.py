"""The benchmark's arithmetic (its speed numbers come from `python tools/bench.py`, not tests)."""

import pytest

from tools.bench import forward_flops, main, render, step_ratio, summarize


def test_forward_flops_of_the_lecture_cnn():
    convs = 2 * 9 * (1 * 32 * 28 * 28 + 32 * 64 * 14 * 14 + 64 * 128 * 7 * 7)
    denses = 2 * (2048 * 256 + 256 * 10)
    assert forward_flops() == convs + denses == 15_955_968  # x3 for a training step: the issue's ~48 MFLOP


def test_summarize_takes_medians_and_ratios_within_each_round():
    lecture_rounds = [
        {"sequential": {"model_images_per_s": 1000.0, "peak_rss_mb": 900.0}},
        {"sequential": {"model_images_per_s": 500.0, "peak_rss_mb": 950.0}},  # a slow round...
        {"sequential": {"model_images_per_s": 1100.0, "peak_rss_mb": 910.0}},
    ]
    run = lambda rate, rss: {"model_images_per_s": rate, "step_ms": 10_000 / rate, "peak_rss_mb": rss,
                             "train_flops_per_image": 1e6}
    config_rounds = [
        {"sequential mixed_bfloat16": run(5000.0, 1000.0)},
        {"sequential mixed_bfloat16": run(2500.0, 1200.0)},  # ...slows both sides
        {"sequential mixed_bfloat16": run(4400.0, 1100.0)},
    ]
    lecture, rows = summarize(lecture_rounds, config_rounds, {"float32": 200.0, "bfloat16": 400.0})
    assert lecture["sequential"]["model_images_per_s"] == 1000.0
    (label, row), = rows
    assert label == "sequential mixed_bfloat16"
    assert row["model_images_per_s"] == 4400.0 and row["range"] == (2500.0, 5000.0)
    # Within-round ratios are 5.0, 5.0 and 4.0: the median is 5.0, where the ratio of medians would be 4.4.
    assert row["ratio"] == 5.0 and row["ratio_range"] == (4.0, 5.0)
    assert row["step_ms"] == 10_000 / 4400.0
    assert row["peak_rss_mb"] == 1200.0  # the highest, not the median
    assert row["peak_share"] == 4400.0 * 1e6 / 1e9 / 400.0


def test_step_ratio_compares_within_each_round():
    rounds = [{"a": {"step_ms": 11.0}, "b": {"step_ms": 10.0}},
              {"a": {"step_ms": 24.0}, "b": {"step_ms": 20.0}},  # a slow round: ratio 1.2
              {"a": {"step_ms": 10.0}, "b": {"step_ms": 10.0}}]
    assert step_ratio(rounds, "a", "b") == 1.1  # the median of 1.1, 1.2 and 1.0 (medians alone: 11/10 too)
    rounds[2]["b"]["step_ms"] = 5.0  # now 1.1, 1.2, 2.0: median 1.2, where the ratio of medians is 11/10
    assert step_ratio(rounds, "a", "b") == 1.2


def test_render_reports_ratio_share_and_memory():
    row = {"model_images_per_s": 4800.0, "range": (4500.0, 4900.0), "ratio": 5.0, "ratio_range": (4.6, 5.2),
           "peak_share": 0.5, "peak_rss_mb": 900.0}
    lecture = {"sequential": {"model_images_per_s": 960.0, "peak_rss_mb": 800.0, "projected_full_recipe_s": 900.0}}

    class Args:
        steps, warmup, rounds = 150, 20, 3

    doc = render("today", "this machine", {"float32": 200.0, "bfloat16": 400.0}, lecture,
                 [("sequential mixed_bfloat16", row)], 0.05, 2.345, Args)
    assert "| `fit()`: sequential mixed_bfloat16 | 4,800 (4,500-4,900) | 5.0x (4.6-5.2x) | 50% | 900 |" in doc
    assert "costs 5.0% of the bf16 step time" in doc and "this machine" in doc
    assert "step takes 2.35x as long" in doc and "ran 3 times, interleaved" in doc


@pytest.mark.parametrize("flag", ["--steps", "--warmup", "--rounds"])
def test_bad_arguments_exit_2(capsys, flag):
    with pytest.raises(SystemExit) as e:
        main([flag, "0"])
    assert e.value.code == 2 and "--steps, --warmup and --rounds must be >= 1" in capsys.readouterr().err
