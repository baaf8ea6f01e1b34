"""The accuracy search's tables and its frontier plot, from the sweep's JSON lines.

    python tools/accuracy_frontier.py logs/proxy/proxy.jsonl logs/confirm/confirm.jsonl

Each input line comes from `python tools/sweep.py ... --label "NAME seed=S"
--out FILE`. Runs are grouped by NAME across seeds. For every run it finds
the epoch `ModelCheckpoint` would keep (highest validation accuracy, the
first on ties) and reads the test accuracy there; the test numbers choose
nothing. A run that recorded test-time augmentation (`--tta`) counts twice:
as NAME, and as "NAME +TTA", whose scores (checkpoint choice included) are
the TTA ones.

It prints two Markdown tables and writes a plot (`--plot`, by default
`docs/accuracy_frontier.png`):

* one row per recipe and k members (k = 1 for the one-member proxies):
  validation at the chosen epoch, mean and sd over seeds, the test
  accuracy there, and the minutes of training as measured (the search
  shared the 2 cores with other work, so they are pessimistic);
* the frontier of a full ensemble run: every k members x E epochs it
  contains. Members learn independently and the rate schedule depends on
  the epoch alone, so the first k members' output after epoch E is what a
  k-member run of E epochs gives (with other random draws). The frontier
  is chosen on validation accuracy against training compute (PFLOP, exact);
  its minutes are that compute at the rate of a quiet run of the lecture's
  recipe (`best` until 2026-12-04: 18.4 min for 5 x 15 member-epochs), an estimate.
"""

import argparse
import collections
import json
import os
import statistics
import sys

import numpy as np

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
LECTURE = 0.9963  # the lecture's best recipe at its last epoch
GOAL = 0.9970
# Training compute of one lecture member for one epoch: 55,000 images x 7.98M
# multiply-adds forward x 3 (forward and backward) x 2 FLOP, in PFLOP.
PFLOP_PER_MEMBER_EPOCH = 55_000 * 7.98e6 * 3 * 2 / 1e15
# Each member design's forward multiply-adds per image, relative to the lecture member's (15.3M / 7.98M).
RELATIVE_COST = {"lecture": 1.0, "strided": 15.3 / 7.98, "residual": 50.8 / 7.98}  # multiply-adds (bench.py --members)
# Minutes per member-epoch on a quiet machine: `python train.py --model best` with the lecture's
# recipe (5 members x 15 epochs, the default until 2026-12-04) trained in 18.4 min on the 2-core AVX-512-BF16 VM.
QUIET_MINUTES_PER_MEMBER_EPOCH = 18.4 / 75


def read_runs(paths):
    """{name: [run, ...]}, "name" or "name, M members"; a run is {"seed", "epochs": [record, ...], "summary"}; incomplete runs are left out."""
    runs = collections.OrderedDict()
    for path in paths:
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                runs.setdefault((path, record["label"]), []).append(record)
    names = collections.OrderedDict()
    for (_, label), records in runs.items():
        summary = [r for r in records if r.get("summary")]
        if not summary:
            continue
        name, _, seed = label.partition(" seed=")
        members = summary[-1]["members"]
        epochs = [r for r in records if not r.get("summary")]
        cost = RELATIVE_COST[(summary[-1].get("config") or {}).get("member") or "lecture"]
        readings = [("", epochs)]
        if all("val_prefix_tta" in r for r in epochs):
            readings.append((" +TTA", [{**r, "val_prefix": r["val_prefix_tta"], "test_prefix": r["test_prefix_tta"]}
                                       for r in epochs]))
        for suffix, reading in readings:
            key = name + suffix if members == 1 else f"{name}{suffix}, {members} members"
            names.setdefault(key, []).append({"seed": seed, "epochs": reading, "summary": summary[-1], "cost": cost})
    return names


def chosen(run, k, last_epoch=None):
    """(epoch, val, test) that a checkpoint on the validation accuracy of k members keeps, up to `last_epoch`."""
    epochs = run["epochs"][:last_epoch]
    best = max(epochs, key=lambda r: (r["val_prefix"][k - 1], -r["epoch"]))
    return best["epoch"], best["val_prefix"][k - 1], best["test_prefix"][k - 1]


def sd(values):
    """The sample standard deviation; 0 for a single value."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def mean_sd(values):
    values = [100 * v for v in values]
    return f"{statistics.mean(values):.2f} ± {sd(values):.2f}"


def recipe_rows(names):
    lines = [
        "| recipe | members | seeds | chosen epochs | val at chosen (%) | test at chosen (%) | minutes |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, runs in names.items():
        members = runs[0]["summary"]["members"]
        for k in sorted({1, members}):
            picks = [chosen(run, k) for run in runs]
            minutes = [run["epochs"][-1]["train_seconds"] / 60 * k / members for run in runs]
            lines.append(
                f"| {name} | {k} | {', '.join(r['seed'] for r in runs)} | {', '.join(str(p[0]) for p in picks)} "
                f"| {mean_sd([p[1] for p in picks])} | {mean_sd([p[2] for p in picks])} "
                f"| {statistics.mean(minutes):.1f} |"
            )
    return lines


def frontier_points(runs):
    """[(k, E, PFLOP, val mean, test mean, test sd)] for every k members x E epochs of full runs."""
    members = runs[0]["summary"]["members"]
    n_epochs = min(len(run["epochs"]) for run in runs)
    points = []
    for k in range(1, members + 1):
        for e in range(1, n_epochs + 1):
            picks = [chosen(run, k, e) for run in runs]
            tests = [p[2] for p in picks]
            compute = k * e * PFLOP_PER_MEMBER_EPOCH * runs[0]["cost"]
            points.append((k, e, compute, np.mean([p[1] for p in picks]), np.mean(tests), sd(tests)))
    return points


def pareto(points, key):
    """The points no other point beats on both less compute and higher `key` (an index)."""
    out, best = [], -1.0
    for p in sorted(points, key=lambda p: (p[2], -p[key])):
        if p[key] > best:
            out.append(p)
            best = p[key]
    return out


def draw(names, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 5.6), dpi=100, facecolor="white")
    ax = figure.add_subplot()
    for i, (name, runs) in enumerate(names.items()):
        if runs[0]["summary"]["members"] == 1:
            picks = [chosen(run, 1) for run in runs]
            epochs = len(runs[0]["epochs"])
            compute = epochs * PFLOP_PER_MEMBER_EPOCH * runs[0]["cost"] * (1 + 0.02 * i)  # apart, to be seen
            tests = [100 * p[2] for p in picks]
            ax.errorbar([compute], [np.mean(tests)], yerr=[sd(tests)],
                        fmt="s", capsize=3, label=f"{name}, 1 member, {epochs} epochs")
            continue
        front = pareto(frontier_points(runs), key=3)  # the frontier is chosen on validation
        ax.errorbar([p[2] for p in front], [100 * p[4] for p in front], yerr=[100 * p[5] for p in front],
                    fmt="o-", capsize=3, label=f"{name}: k members x E epochs, frontier on validation")
        for k, e, compute, _, test, _ in front[-6:]:  # the last few: the rest crowd the lower left
            ax.annotate(f"{k}x{e}", (compute, 100 * test), textcoords="offset points", xytext=(4, -12), fontsize=8)
    ax.axhline(100 * LECTURE, color="#6e6e6e", linestyle="--", label="the lecture's best recipe (99.63%)")
    ax.axhline(100 * GOAL, color="#c82828", linestyle=":", label="goal (99.70%)")
    ax.set_xlabel("training compute (PFLOP)")
    ax.secondary_xaxis(
        "top",
        functions=(lambda p: p / PFLOP_PER_MEMBER_EPOCH * QUIET_MINUTES_PER_MEMBER_EPOCH,
                   lambda m: m / QUIET_MINUTES_PER_MEMBER_EPOCH * PFLOP_PER_MEMBER_EPOCH),
    ).set_xlabel("minutes on the 2-core AVX-512-BF16 CPU, bf16 (at the quiet rate of `best`: 18.4 min)")
    ax.set_ylabel("test accuracy (%)")
    figure.suptitle("Test accuracy at the epoch chosen on validation, mean ± sd over seeds", fontsize=11)
    ax.set_ylim(99.2, 99.8)  # the first epochs of the frontier lie below, off the chart
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    figure.tight_layout()
    FigureCanvasAgg(figure).print_png(path)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python tools/accuracy_frontier.py", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", metavar="FILE.jsonl", help="the sweep's JSON lines (`sweep.py --out`)")
    parser.add_argument("--plot", default=os.path.join(DOCS, "accuracy_frontier.png"), metavar="FILE.png",
                        help="where the plot goes (default: docs/accuracy_frontier.png)")
    args = parser.parse_args(argv)
    names = read_runs(args.paths)
    print("\n".join(recipe_rows(names)))
    for name, runs in names.items():
        if runs[0]["summary"]["members"] > 1:
            print(f"\nFrontier of {name} (validation-chosen), seeds {', '.join(r['seed'] for r in runs)}:\n")
            print("| members x epochs | PFLOP | minutes at the quiet rate | val mean (%) | test mean ± sd (%) |")
            print("|---|---|---|---|---|")
            for k, e, compute, val, test, spread in pareto(frontier_points(runs), key=3):
                minutes = compute / PFLOP_PER_MEMBER_EPOCH * QUIET_MINUTES_PER_MEMBER_EPOCH
                print(f"| {k} x {e} | {compute:.3f} | {minutes:.1f} | {100 * val:.2f} | "
                      f"{100 * test:.2f} ± {100 * spread:.2f} |")
    print("\n" + draw(names, args.plot))


if __name__ == "__main__":
    sys.exit(main())
