"""Time to accuracy: test accuracy after each epoch against elapsed minutes.

    python -m kerascnn.time_to_accuracy --model best            # writes docs/time_to_accuracy.{png,md}
    python -m kerascnn.time_to_accuracy --model best --members 3 --epochs 11

Trains exactly as `train.py` does (same config, callbacks, run directory)
and, for the figure only, scores the test set after every epoch. Those
scores never choose anything: the checkpoint is still picked on the
validation split. Evaluation time is excluded from the elapsed minutes.
"""

import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")


def measure(config):
    """Trains `config`; returns (RunResult, [(epoch, minutes, test_accuracy, val_accuracy)])."""
    import keras

    from kerascnn import data as data_lib
    from kerascnn.training import train

    dataset = data_lib.load_dataset(config.dataset, config.data_dir)
    test_ds = data_lib.make_dataset(dataset.x_test, dataset.y_test, 500)
    points = []

    class TestEachEpoch(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start, self.excluded = time.perf_counter(), 0.0

        def on_epoch_end(self, epoch, logs=None):
            t = time.perf_counter()
            scores = self.model.evaluate(test_ds, return_dict=True, verbose=0)
            minutes = (t - self.start - self.excluded) / 60
            self.excluded += time.perf_counter() - t
            points.append((epoch + 1, minutes, float(scores["accuracy"]), float(logs["val_accuracy"])))
            print(f"epoch {epoch + 1}: {minutes:.1f} min, test {scores['accuracy']:.4f}, "
                  f"val {logs['val_accuracy']:.4f}", flush=True)

    return train(config, verbose=0, resume=False, callbacks=[TestEachEpoch()]), points


def draw(points, title, target=0.997, size=(720, 420)):
    """A line chart (Pillow): test accuracy (%) against minutes, with the target line."""
    from PIL import Image, ImageDraw

    from kerascnn.figures import font

    w, h = size
    left, right, top, bottom = 70, 20, 40, 50
    image = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(image)
    xs = [p[1] for p in points]
    ys = [100 * p[2] for p in points]
    x_max = max(xs) * 1.05
    y_lo, y_hi = min(min(ys), 100 * target) - 0.05, max(max(ys), 100 * target) + 0.05
    px = lambda x: left + (w - left - right) * x / x_max
    py = lambda y: h - bottom - (h - top - bottom) * (y - y_lo) / (y_hi - y_lo)
    small = font(12)
    d.rectangle([left, top, w - right, h - bottom], outline="black")
    for y in np.linspace(y_lo, y_hi, 6):
        d.line([left - 4, py(y), left, py(y)], fill="black")
        d.text((5, py(y) - 7), f"{y:.2f}%", fill="black", font=small)
    for x in np.linspace(0, x_max, 6):
        d.line([px(x), h - bottom, px(x), h - bottom + 4], fill="black")
        d.text((px(x) - 10, h - bottom + 8), f"{x:.0f}", fill="black", font=small)
    d.text((w / 2 - 40, h - 22), "minutes", fill="black", font=small)
    d.line([left, py(100 * target), w - right, py(100 * target)], fill=(200, 60, 60), width=1)
    d.text((left + 5, py(100 * target) - 15), f"target {100 * target:.2f}%", fill=(200, 60, 60), font=small)
    d.line([(px(x), py(y)) for x, y in zip(xs, ys)], fill=(30, 90, 200), width=2)
    for x, y in zip(xs, ys):
        d.ellipse([px(x) - 3, py(y) - 3, px(x) + 3, py(y) + 3], fill=(30, 90, 200))
    d.text((left, 12), title, fill="black", font=font(14))
    return np.asarray(image)


def main(argv=None):
    from kerascnn.cli import build_parser, resolve_config

    parser = build_parser()
    parser.prog = "python -m kerascnn.time_to_accuracy"
    parser.add_argument("--out", default=DOCS, help="where the PNG and the table go (default: docs/)")
    args = parser.parse_args(argv)
    out = vars(args).pop("out")
    config = resolve_config(args, parser)

    from kerascnn.figures import save_png
    from kerascnn.training import versions

    result, points = measure(config)
    m, v = result.metrics, versions()
    title = (f"{config.model}: test accuracy by minute ({m['precision']}, {v['machine']}, "
             f"TF {v['tensorflow']}, Keras {v['keras']})")
    os.makedirs(out, exist_ok=True)
    save_png(draw(points, title), os.path.join(out, "time_to_accuracy.png"))
    lines = [
        "# Time to accuracy",
        "",
        f"`python -m kerascnn.time_to_accuracy {' '.join(argv if argv is not None else sys.argv[1:])}` "
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
