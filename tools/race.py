"""Time to accuracy, side by side: this project's `sequential` against the keras-io "Simple MNIST convnet".

    python tools/race.py                 # 2 rounds, about 15 minutes on 2 cores
    python tools/race.py --rounds 1 --epochs 2 --subset 5000   # a quick look at the mechanics

What a user choosing a tool would compare, in one sitting and one process tree:

* **kerascnn:** `python train.py --model sequential` (15 epochs, batch 100 on the full set,
  Adam with the rate halving every 5 epochs, the machine's best precision,
  55,000 images with 5,000 held out, checkpoints and TensorBoard logs); its
  time is the minutes to the first epoch whose test accuracy reaches the
  lecture's 99.31%;
* **keras-io:** https://keras.io/examples/vision/mnist_convnet/ as published:
  34,826 parameters, batch 128, Adam, categorical cross-entropy, 15 epochs
  with `validation_split=0.1`, float32 (Keras' default policy). Its published
  test accuracy is 99.22%; the time is its 15 epochs, to its own final accuracy.

Each contestant runs in its own child process, once per round, alternating,
on the same MNIST files. Minutes count `fit()`'s epochs with their own
validation passes and callbacks; the per-epoch test scoring is timed apart
and left out. The test accuracy here reads a clock and chooses nothing: this
is a benchmark, not model selection.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # a tool of the checkout: it uses the kerascnn beside it
LECTURE_SEQUENTIAL = 0.9931  # the lecture's plain CNN, its published test accuracy


def mnist(subset):
    """MNIST as uint8 arrays, the training set cut to `subset` images if given."""
    from kerascnn.data import load_dataset

    data = load_dataset("mnist")
    if subset:
        data.x_train, data.y_train = data.x_train[:subset], data.y_train[:subset]
    return data


def kerascnn_sequential(epochs, subset):
    """`python train.py --model sequential` (15 epochs), its run directory in a temporary folder."""
    import tempfile

    from kerascnn.config import TrainConfig
    from tools.time_to_accuracy import measure

    val_size = 5000 if not subset else subset // 10
    with tempfile.TemporaryDirectory() as logdir:
        config = TrainConfig(model="sequential", epochs=epochs, subset=subset, val_size=val_size, logdir=logdir)
        result, points = measure(config)
    return {"points": points, "params": result.metrics["params"], "precision": result.metrics["precision"]}


def keras_io_convnet(epochs, subset):
    """The keras-io example, line for line, on the same MNIST files."""
    import keras
    import numpy as np
    from keras import layers

    from tools.time_to_accuracy import test_each_epoch

    data = mnist(subset)
    x_train = np.expand_dims(data.x_train.astype("float32") / 255, -1)
    x_test = np.expand_dims(data.x_test.astype("float32") / 255, -1)
    y_train = keras.utils.to_categorical(data.y_train, 10)
    y_test = keras.utils.to_categorical(data.y_test, 10)
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    clock = test_each_epoch(x_test, y_test)
    model.fit(x_train, y_train, batch_size=128, epochs=epochs, validation_split=0.1, callbacks=[clock], verbose=0)
    return {"points": clock.points, "params": int(model.count_params()), "precision": "float32"}


CONTESTANTS = {"kerascnn": kerascnn_sequential, "keras-io": keras_io_convnet}


def worker(name, epochs, subset):
    """Runs in a child process: one contestant, one JSON line."""
    result = CONTESTANTS[name](epochs, subset)
    from kerascnn.training import peak_rss_mb

    print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}))
    return 0


def reached(points, target):
    """(epoch, minutes, accuracy) of the first epoch at or above `target`, else None."""
    return next((p for p in points if p[2] >= target), None)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python tools/race.py", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="times each contestant runs, alternating")
    parser.add_argument("--epochs", type=int, default=15, help="epochs of each contestant (both publish 15)")
    parser.add_argument("--subset", type=int, default=None, help="train on this many images (a quick look)")
    parser.add_argument("--worker", choices=sorted(CONTESTANTS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.rounds, args.epochs, args.subset or 1000) < 1 or (args.subset or 1000) < 1000:
        parser.error(f"--rounds and --epochs must be >= 1 and --subset >= 1000. "
                     f"Received: rounds={args.rounds}, epochs={args.epochs}, subset={args.subset}")
    if args.worker:
        return worker(args.worker, args.epochs, args.subset)
    extra = ["--epochs", str(args.epochs)] + (["--subset", str(args.subset)] if args.subset else [])

    from tools.bench import versions

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    rounds = []
    for r in range(args.rounds):
        results = {}
        for name in CONTESTANTS:
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", name, *extra],
                                 capture_output=True, text=True, env=env, cwd=ROOT)
            if out.returncode != 0:
                raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"round {r + 1}: {name}: {results[name]['points'][-1]}", flush=True)
        rounds.append(results)

    ours = [reached(r["kerascnn"]["points"], LECTURE_SEQUENTIAL) for r in rounds]
    theirs = [r["keras-io"]["points"][-1] for r in rounds]
    ratios = [o[1] / t[1] for o, t in zip(ours, theirs) if o]
    median = lambda xs: statistics.median(xs) if xs else float("nan")
    lines = [
        f"`python tools/race.py {' '.join(argv if argv is not None else sys.argv[1:])}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
        f"{versions()}.",
        "",
        "| contestant | parameters | precision | epochs | minutes (median) | test accuracy | peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|",
        f"| kerascnn `sequential`, to the lecture's 99.31% | {rounds[0]['kerascnn']['params']:,} "
        f"| {rounds[0]['kerascnn']['precision']} | {', '.join(str(o[0]) if o else 'not reached' for o in ours)} "
        f"| {median([o[1] for o in ours if o]):.2f} | {', '.join(f'{100 * o[2]:.2f}%' for o in ours if o)} "
        f"| {max(r['kerascnn']['peak_rss_mb'] for r in rounds):,.0f} |",
        f"| keras-io Simple MNIST convnet, {args.epochs} epochs | {rounds[0]['keras-io']['params']:,} | float32 "
        f"| {args.epochs} | {median([t[1] for t in theirs]):.2f} | {', '.join(f'{100 * t[2]:.2f}%' for t in theirs)} "
        f"| {max(r['keras-io']['peak_rss_mb'] for r in rounds):,.0f} |",
        "",
        f"kerascnn reaches 99.31% in {median(ratios):.2f}x the time keras-io takes to reach its own final "
        f"accuracy (median over rounds; each round's ratio: {', '.join(f'{x:.2f}' for x in ratios) or 'none'}).",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
