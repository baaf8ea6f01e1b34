"""The benchmark's arithmetic (its speed numbers come from `python tools/bench.py`, not tests)."""

import pytest

from tools.bench import (
    DEFAULT_BEST,
    FOLDER_IMAGES,
    LECTURE_RECIPE,
    SIDE,
    SIZE_MEMBER,
    default_best_time,
    main,
    member_rows,
    multiply_adds,
    render,
    render_members,
    render_sizes,
    size_configs,
    size_rows,
    stage_facts,
    step_ratio,
    summarize,
    worker_run,
)


def test_multiply_adds_are_read_from_the_graph_of_any_model():
    from kerascnn.models import create_model

    convs = 9 * (1 * 32 * 28 * 28 + 32 * 64 * 14 * 14 + 64 * 128 * 7 * 7)
    denses = 2048 * 256 + 256 * 10
    assert convs + denses == 7_977_984
    for name in ("sequential", "subclass"):  # a layer list, and a subclassed model whose layers run in call()
        assert multiply_adds(create_model(name)) == 7_977_984
    # The residual member: 3x3 convs at 28, 14 and 7 pixels (stem and block, then stride-2 entry and block), the head.
    member = create_model("best", member="residual", members=1).members[0]
    side = {32: 28, 64: 14, 128: 7}
    residual = 9 * 28 * 28 * 1 * 32 + sum(9 * side[w] ** 2 * w * w * 2 for w in side) \
        + 9 * (14 * 14 * 32 * 64 + 7 * 7 * 64 * 128) + 128 * 10
    assert multiply_adds(member) == residual == 50_804_480


def test_member_rows_count_the_epochs_each_design_affords_in_the_lecture_recipes_time():
    run = lambda rate, macs: {"model_images_per_s": rate, "train_flops_per_image": 6 * macs, "policy": "float32",
                              "peak_rss_mb": 1000.0}
    rounds = [
        {LECTURE_RECIPE[0]: run(1000.0, 8e6), "member residual 32": run(250.0, 5e7)},
        {LECTURE_RECIPE[0]: run(500.0, 8e6), "member residual 32": run(130.0, 5e7)},  # a slow round slows both
    ]
    rows = dict(member_rows(rounds, {"float32": 100.0, "bfloat16": 50.0}))
    # The lecture's recipe: 5 members x 15 epochs x 55,000 images at 1,000/s = 4,125 s; 250/s is 18.75 epochs of 55,000.
    assert rows[LECTURE_RECIPE[0]]["epochs"] == 75.0
    assert rows["member residual 32"]["epochs"] == pytest.approx((18.75 + 19.5) / 2)
    assert rows["member residual 32"]["mac"] == 5e7
    assert rows["member residual 32"]["peak_share"] == pytest.approx(190.0 * 3e8 / 1e9 / 100.0)

    class Args:
        steps, warmup, rounds = 60, 10, 2

    doc = render_members("today", "this machine", {"float32": 100.0}, list(rows.items()), Args)
    assert "| member residual 32 | 50.0M | 190 (130-250) | 57% | 19 | 1,000 |" in doc


def test_todays_best_time_is_its_member_epochs_over_what_its_row_affords_in_the_lecture_recipes_time():
    from kerascnn.models import model_defaults, resolve_recipe

    run = lambda rate: {"model_images_per_s": rate, "train_flops_per_image": 6 * 8e6, "policy": "float32",
                        "peak_rss_mb": 1000.0}
    rounds = [{LECTURE_RECIPE[0]: run(1000.0), DEFAULT_BEST: run(900.0)},   # 67.5 member-epochs in 4,125 s
              {LECTURE_RECIPE[0]: run(500.0), DEFAULT_BEST: run(400.0)}]    # 60 in 8,250 s
    rows = dict(member_rows(rounds, {"float32": 100.0}))
    assert rows[DEFAULT_BEST]["epochs_range"] == (60.0, 67.5)
    member_epochs = model_defaults("best")["members"] * resolve_recipe("best")["epochs"]
    line = default_best_time(rows)[-1]
    assert f"{member_epochs} member-epochs" in line
    assert f"**{member_epochs / 63.75:.2f}x**" in line
    assert f"({member_epochs / 67.5:.2f}-{member_epochs / 60.0:.2f}x by round)" in line
    # Without today's row (an older table), no line at all.
    assert default_best_time({LECTURE_RECIPE[0]: rows[LECTURE_RECIPE[0]]}) == []


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


def test_a_size_workers_model_is_a_colour_folders_run_at_that_side():
    # The worker's own assembly (no fit): a folder's DataSpec at 64 px RGB, so DataSpec.model_kwargs gives global
    # pooling and 4 stages (stage_count), and `auto` the photos policy of colour pictures.
    (label, model, precision, kwargs, jit), = size_configs([64])
    assert label == "64 px" and kwargs == {**SIZE_MEMBER, SIDE: 64}
    run = worker_run(model, "float32", kwargs, jit)  # the worker's "auto" would leave bf16 set in this process
    assert run.splits.spec.raw_pixels and run.splits.spec.image_shape == (64, 64, 3)
    assert run.config.flip and run.config.shift == pytest.approx(6.4)  # photos: flips, a tenth of the side
    member, = run.model.members
    assert stage_facts(member) == {"stages": 4, "final_map": [4, 4, 256], "global_pool": True}
    # 3x3 SAME convs at 64, 32, 16 and 8 px (3 -> 32 -> 64 -> 128 -> 256 channels: stage_width), pooled to 4x4x256,
    # averaged to 256 values, then dense 256 and the 10 classes.
    convs = 9 * (64 * 64 * 3 * 32 + 32 * 32 * 32 * 64 + 16 * 16 * 64 * 128 + 8 * 8 * 128 * 256)
    assert multiply_adds(member) == convs + 256 * 256 + 256 * 10 == 60_230_144


def test_size_rows_time_an_epoch_and_take_the_per_minute_ratio_within_each_round():
    run = lambda side, rate, macs: {"side": side, "images_per_s": rate, "train_flops_per_image": 6 * macs,
                                    "policy": "mixed_bfloat16", "peak_rss_mb": 1000.0 + side, "params": 1000 * side,
                                    "stages": 3 if side < 64 else 4, "final_map": [4, 4, 128 if side < 64 else 256],
                                    "global_pool": side > 32}
    rounds = [{"28 px": run(28, 1000.0, 8e6), "64 px": run(64, 200.0, 6e7)},
              {"28 px": run(28, 500.0, 8e6), "64 px": run(64, 125.0, 6e7)}]  # a slow round: 0.2x, then 0.25x
    rows = dict(size_rows(rounds, {"float32": 100.0, "bfloat16": 200.0}))
    r = rows["64 px"]
    assert r["images_per_s"] == 162.5 and r["images_per_min"] == 9750.0
    assert r["ratio"] == pytest.approx(0.225) and r["ratio_range"] == (0.2, 0.25)  # ratio of medians: 0.217
    assert r["epoch_min"] == pytest.approx(FOLDER_IMAGES / 162.5 / 60)
    assert r["epoch_range"] == pytest.approx((FOLDER_IMAGES / 200 / 60, FOLDER_IMAGES / 125 / 60))
    assert r["mac_ratio"] == 7.5 and r["peak_rss_mb"] == 1064.0
    assert r["folder_mib"] == pytest.approx(50_000 * 64 * 64 * 3 / 2**20)
    assert rows["28 px"]["ratio"] == 1.0

    class Args:
        steps, warmup, rounds = 20, 5, 2

    doc = render_sizes("today", "this machine", list(rows.items()), Args, (3.9, 4.2))
    assert ("| 64 px | 4 | 4x4x256 | global average pool | 64,000 | 60.0M (7.5x) | 162 (125-200) | 9,750 | "
            "0.23x (0.2-0.25x) | 5.1 min (4.2-6.7) | 1,064 | 586 |") in doc
    assert "| 28 px | 3 | 4x4x128 | flatten | 28,000 | 8.0M (1.0x) | 750 (500-1,000) | 45,000 | 1x (1-1x)" in doc
    assert "--sizes 28,64" in doc and "per minute vs 28 px" in doc and "synthetic uint8 noise" in doc
    assert "The machine was shared" in doc and "4.2" in doc
    assert "10.3 min at 64 px" in doc  # today's `best`: 2 members, 2 x 5.13 min


@pytest.mark.parametrize("sizes", ["3", "28,x", "28,28", ""])
def test_bad_sizes_exit_2(capsys, sizes):
    with pytest.raises(SystemExit) as e:
        main(["--sizes", sizes])
    assert e.value.code == 2 and f"Received: sizes={sizes!r}" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--steps", "--warmup", "--rounds"])
def test_bad_arguments_exit_2(capsys, flag):
    with pytest.raises(SystemExit) as e:
        main([flag, "0"])
    assert e.value.code == 2 and "--steps, --warmup and --rounds must be >= 1" in capsys.readouterr().err
