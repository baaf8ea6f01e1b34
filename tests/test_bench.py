"""The benchmark's arithmetic (its speed numbers come from `python -m kerascnn.bench`, not tests)."""

import pytest

from kerascnn.bench import forward_flops, main, render


def test_forward_flops_of_the_lecture_cnn():
    convs = 2 * 9 * (1 * 32 * 28 * 28 + 32 * 64 * 14 * 14 + 64 * 128 * 7 * 7)
    denses = 2 * (2048 * 256 + 256 * 10)
    assert forward_flops() == convs + denses == 15_955_968  # x3 for a training step: the issue's ~48 MFLOP


def test_render_reports_ratio_share_and_memory():
    row = {"model_images_per_s": 4800.0, "ratio": 5.0, "peak_share": 0.5, "peak_rss_mb": 900.0}
    lecture = {"sequential": {"model_images_per_s": 960.0, "peak_rss_mb": 800.0, "projected_full_recipe_s": 900.0}}

    class Args:
        steps, warmup = 150, 20

    doc = render("today", "this machine", {"float32": 200.0, "bfloat16": 400.0}, lecture,
                 [("sequential mixed_bfloat16", row)], 0.05, 2.345, Args)
    assert "| `fit()`: sequential mixed_bfloat16 | 4,800 | 5.0x | 50% | 900 |" in doc
    assert "costs 5.0% of the bf16 step time" in doc and "this machine" in doc
    assert "step takes 2.35x as long" in doc


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--steps", "0"])
    assert e.value.code == 2 and "--steps and --warmup must be >= 1" in capsys.readouterr().err
