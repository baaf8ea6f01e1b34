"""Time to accuracy: test accuracy after each epoch against elapsed minutes.

    python tools/time_to_accuracy.py --model best            # writes docs/time_to_accuracy.{png,md}
    python tools/time_to_accuracy.py --model best --members 3 --epochs 11
    python tools/time_to_accuracy.py --redraw                # the PNG again from docs/TIME_TO_ACCURACY.md

Trains exactly as `train.py` does (same config, callbacks, run directory)
and, for the figure only, scores the test set after every epoch. Those
scores never choose anything: the checkpoint is still picked on the
validation split. Evaluation time is excluded from the elapsed minutes.
"""

import os
import re
import sys
import time

# A tool of the checkout, not of the installed package: it uses the kerascnn beside it.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")


def test_each_epoch(x_test, y_test, verbose=False):
    """A callback whose `.points` gain (epoch, minutes, test accuracy, val accuracy or None) after each epoch.

    The minutes leave out the callback's own scoring time. The model must be
    compiled with an "accuracy" metric.
    """
    import keras

    class TestEachEpoch(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.points, self.start, self.excluded = [], time.perf_counter(), 0.0

        def on_epoch_end(self, epoch, logs=None):
            t = time.perf_counter()
            scores = self.model.evaluate(x_test, y_test, batch_size=500, return_dict=True, verbose=0)
            minutes = (t - self.start - self.excluded) / 60
            self.excluded += time.perf_counter() - t
            val = (logs or {}).get("val_accuracy")
            self.points.append((epoch + 1, minutes, float(scores["accuracy"]), None if val is None else float(val)))
            if verbose:
                print(f"epoch {epoch + 1}: {minutes:.1f} min, test {scores['accuracy']:.4f}, val {val:.4f}", flush=True)

    return TestEachEpoch()


def measure(config):
    """Trains `config`; returns (RunResult, [(epoch, minutes, test_accuracy, val_accuracy)])."""
    from kerascnn import data as data_lib
    from kerascnn.pipeline import load_dataset
    from kerascnn.training import train

    dataset = load_dataset(config.dataset, config.data_dir)
    clock = test_each_epoch(data_lib.scale_images(dataset.x_test), dataset.y_test, verbose=True)
    del dataset
    return train(config, verbose=0, resume=False, callbacks=[clock]), clock.points


def chart(points, title, target=0.997, size=(720, 420)):
    """A line chart: test accuracy (%) after each epoch against minutes of training, and the target.

    Args:
        points: [(epoch, minutes, test_accuracy, ...)], accuracies in [0, 1].
        title: str, the line above the chart.
        target: float in [0, 1], drawn as a dashed red line. Defaults to 0.997.
        size: (width, height) in pixels. Defaults to (720, 420).

    Returns:
        A `matplotlib.figure.Figure`; `kerascnn.figures.render` turns it into pixels.
    """
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    from kerascnn.figures import BLUE, RED, new_figure

    minutes = [p[1] for p in points]
    accuracy = [100 * p[2] for p in points]
    figure = new_figure(*size)
    ax = figure.add_subplot()
    ax.plot(minutes, accuracy, "o-", color=BLUE, linewidth=2, markersize=4, label="test accuracy after an epoch")
    ax.axhline(100 * target, color=RED, linestyle="--", linewidth=1.2, label=f"target {100 * target:.2f}%")
    ax.set_xlim(0, max(minutes) * 1.04)
    ax.set_ylim(min(min(accuracy), 100 * target) - 0.05, max(max(accuracy), 100 * target) + 0.05)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 5, 10]))
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=None))
    ax.set_xlabel("minutes of training (test evaluation excluded)")
    ax.set_ylabel("test accuracy")
    ax.grid(color="#e6e6e6")
    ax.legend(loc="lower right", frameon=False)
    ax.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure


def draw(points, title, target=0.997, size=(720, 420)):
    """The chart as an RGB array (see `chart`)."""
    from kerascnn.figures import render

    return render(chart(points, title, target, size))


def read_table(path):
    """The points and the chart's title back from a `TIME_TO_ACCURACY.md` this tool wrote.

    Redraws the chart without training again (`--redraw`); minutes are the
    table's, to 0.1.
    """
    with open(path) as f:
        text = f.read()
    rows = re.findall(r"^\| (\d+) \| ([\d.]+) \| ([\d.]+)% \| ([\d.]+)% \|$", text, re.M)
    run = re.search(r"--model (\S+).*? on (.+?), Python \S+, TensorFlow (\S+), Keras (\S+), (\w+)\.", text)
    if not rows or not run:
        raise ValueError(f"{path} holds no time-to-accuracy table written by this tool.")
    model, machine, tf_version, keras_version, precision = run.groups()
    points = [(int(e), float(m), float(t) / 100, float(v) / 100) for e, m, t, v in rows]
    return points, title_for(model, precision, machine, tf_version, keras_version)


def title_for(model, precision, machine, tf_version, keras_version):
    return f"{model}: test accuracy by minute ({precision}, {machine}, TF {tf_version}, Keras {keras_version})"


def main(argv=None):
    from kerascnn.commands.train import build_parser, resolve_config

    parser = build_parser()
    parser.prog = "python tools/time_to_accuracy.py"
    parser.add_argument("--out", default=DOCS, help="where the PNG and the table go (default: docs/)")
    parser.add_argument("--redraw", action="store_true",
                        help="no training: redraw the PNG from the table in --out/TIME_TO_ACCURACY.md")
    args = parser.parse_args(argv)
    out, redraw = vars(args).pop("out"), vars(args).pop("redraw", False)

    from kerascnn.figures import save_png

    if redraw:
        points, title = read_table(os.path.join(out, "TIME_TO_ACCURACY.md"))
        print(save_png(draw(points, title), os.path.join(out, "time_to_accuracy.png")))
        return 0
    config = resolve_config(args, parser)
    from kerascnn.training import versions

    result, points = measure(config)
    m, v = result.metrics, versions()
    title = title_for(config.model, m["precision"], v["machine"], v["tensorflow"], v["keras"])
    os.makedirs(out, exist_ok=True)
    save_png(draw(points, title), os.path.join(out, "time_to_accuracy.png"))
    lines = [
        "# Time to accuracy",
        "",
        f"`python tools/time_to_accuracy.py {' '.join(argv if argv is not None else sys.argv[1:])}` "
        f"on {v['machine']}, Python {v['python']}, TensorFlow {v['tensorflow']}, Keras {v['keras']}, "
        f"{m['precision']}. Test accuracy after each epoch (for this table only: the checkpoint is chosen "
        "on the validation split); minutes exclude the per-epoch test evaluation.",
        "",
        "![time to accuracy](time_to_accuracy.png)",
        "",
        "| epoch | minutes | test accuracy | validation accuracy |",
        "|---|---|---|---|",
        *[f"| {e} | {mins:.1f} | {100 * t:.2f}% | {100 * va:.2f}% |" for e, mins, t, va in points],
        "",
        f"Checkpoint chosen on validation: epoch {m['best_epoch']}, test accuracy "
        f"{100 * m['test_accuracy']:.2f}%, {m['wall_seconds'] / 60:.1f} min of training in all "
        f"(including the per-epoch test passes), peak memory {m['peak_rss_mb']:.0f} MiB. Run: `{result.run_dir}`.",
    ]
    with open(os.path.join(out, "TIME_TO_ACCURACY.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
