"""Our full runs beside the published MNIST recipes, in training compute and in minutes on this CPU.

    python tools/accuracy_anchors.py --lecture-rate 1193 --machine "AMD EPYC (Zen 2), 2 cores, float32"

Reads `docs/accuracy_points.csv`: one row per recipe, ours (source
`kerascnn`, test accuracy at the checkpoint chosen on validation, mean and
sd over seeds; docs/ACCURACY.md has each run) and the published anchors
(`../shared/research/accuracy-anchors.md`, each source's own count of runs).
Training compute is multiply-adds: 3 x forward multiply-adds x images seen.

Minutes come from one measured rate: `--lecture-rate`, the model-images/s
of the lecture recipe's row of `python tools/bench.py --members` on the
machine at hand, times the lecture member's 3 x 7,977,984 training
multiply-adds per image. Every row of ours is lecture members, so their
minutes are what that rate gives. The anchors' wider members use the
matmul units better (up to 1.7x more multiply-adds per second on the
2-core AVX2 CPUs, the member benchmark), so their minutes here are an
upper bound by at most that much.

Prints a Markdown table and writes the plot (`--plot`, by default
`docs/accuracy_anchors.png`).
"""

import argparse
import csv
import itertools
import math
import os
import sys

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
POINTS = os.path.join(DOCS, "accuracy_points.csv")
LECTURE_MAC = 7_977_984  # the lecture member's forward multiply-adds per image (tools/bench.py counts them)
TRAIN_IMAGES = 55_000
LECTURE = 99.63  # the lecture's best recipe at its last epoch
GOALS = {"best's goal": 99.70, "max's goal": 99.75}


def read_points(path=POINTS):
    """The CSV's rows, numbers as floats (an empty sd: None); ours are checked against their own arithmetic.

    Raises:
        ValueError: a row of ours without members and epochs, or whose
            `training_mac` is not members x epochs x 55,000 images x the
            lecture member's 3 x 7,977,984 (every run of ours is lecture members).
    """
    points = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            row["training_mac"], row["test_mean"] = float(row["training_mac"]), float(row["test_mean"])
            row["test_sd"] = float(row["test_sd"]) if row["test_sd"] else None
            row["runs"] = int(row["runs"])
            if row["source"] == "kerascnn":
                if not (row["members"].isdigit() and row["epochs"].isdigit()):
                    raise ValueError(f"{path}: {row['recipe']!r} is ours, so it needs whole numbers of members and "
                                     f"epochs. Received: members={row['members']!r}, epochs={row['epochs']!r}")
                expected = int(row["members"]) * int(row["epochs"]) * TRAIN_IMAGES * 3 * LECTURE_MAC
                if not math.isclose(row["training_mac"], expected, rel_tol=1e-3):
                    raise ValueError(f"{path}: {row['recipe']!r} has training_mac={row['training_mac']:.4g}; its "
                                     f"members x epochs make {expected:.4g}")
            points.append(row)
    return points


def minutes(mac, lecture_rate):
    """Minutes to train `mac` multiply-adds at the lecture recipe's model-images/s."""
    return mac / (lecture_rate * 3 * LECTURE_MAC) / 60


def table(points, lecture_rate):
    lines = ["| source | recipe | training multiply-adds | minutes here | test mean ± sd (%) | runs | chosen |",
             "|---|---|---|---|---|---|---|"]
    for p in sorted(points, key=lambda p: p["training_mac"]):
        spread = f" ± {p['test_sd']:.3f}" if p["test_sd"] is not None else ""
        lines.append(f"| {p['source']} | {p['recipe']} | {p['training_mac']:.2g} | "
                     f"{minutes(p['training_mac'], lecture_rate):,.0f} | {p['test_mean']:.3f}{spread} | "
                     f"{p['runs']} | {p['chosen']} |")
    return lines


def draw(points, lecture_rate, machine, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 6), dpi=100, facecolor="white")
    ax = figure.add_subplot()
    sources = list(dict.fromkeys(p["source"] for p in points))
    markers = dict(zip(sources, itertools.cycle("osD^vP*X")))
    for source in sources:
        mine = [p for p in points if p["source"] == source]
        ax.errorbar([p["training_mac"] for p in mine], [p["test_mean"] for p in mine],
                    yerr=[p["test_sd"] or 0.0 for p in mine], fmt=markers[source], capsize=3,
                    markersize=8 if source == "kerascnn" else 6, label=source)
        left = source == "kerascnn"  # ours crowd one decade: their labels go left, the anchors' right
        for p in mine:
            ax.annotate(f"{p['recipe']} (n={p['runs']})", (p["training_mac"], p["test_mean"]),
                        textcoords="offset points", xytext=(-7 if left else 7, -3), fontsize=7,
                        ha="right" if left else "left")
    ax.axhline(LECTURE, color="#6e6e6e", linestyle="--", label=f"the lecture's best recipe ({LECTURE}%)")
    for (name, goal), style in zip(GOALS.items(), (":", "-.")):
        ax.axhline(goal, color="#c82828", linestyle=style, label=f"{name} ({goal}%)")
    ax.set_xscale("log")
    ax.set_xlim(5e12, 2e17)
    ax.set_xlabel("training compute (multiply-adds: 3 x forward x images seen)")
    per_mac = minutes(1.0, lecture_rate)
    ax.secondary_xaxis("top", functions=(lambda m: m * per_mac, lambda t: t / per_mac)).set_xlabel(
        f"minutes on {machine} at the lecture recipe's measured rate ({lecture_rate:,.0f} model-images/s)")
    ax.set_ylabel("test accuracy (%), mean ± sd over runs")
    ax.set_ylim(99.5, 99.86)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    figure.suptitle("MNIST test accuracy against training compute: kerascnn's full runs and published recipes",
                    fontsize=11)
    figure.tight_layout()
    FigureCanvasAgg(figure).print_png(path)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python tools/accuracy_anchors.py", description=__doc__.splitlines()[0])
    parser.add_argument("--lecture-rate", type=float, required=True, metavar="IMAGES_PER_S",
                        help="model-images/s of the lecture recipe's row of `tools/bench.py --members` here")
    parser.add_argument("--machine", required=True, help="the CPU the rate was measured on, for the plot's axis")
    parser.add_argument("--points", default=POINTS, metavar="FILE.csv", help="default: docs/accuracy_points.csv")
    parser.add_argument("--plot", default=os.path.join(DOCS, "accuracy_anchors.png"), metavar="FILE.png",
                        help="where the plot goes (default: docs/accuracy_anchors.png)")
    args = parser.parse_args(argv)
    if not args.lecture_rate > 0:
        parser.error(f"--lecture-rate must be a number of images per second > 0. Received: {args.lecture_rate}")
    points = read_points(args.points)
    print("\n".join(table(points, args.lecture_rate)))
    print("\n" + draw(points, args.lecture_rate, args.machine, args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
