"""Your own images from disk: throughput, input wait and peak memory against MNIST in memory.

    python tools/stream_bench.py                      # 20,000 and 200,000 PNGs, ~15 minutes on 2 cores
    python tools/stream_bench.py --sizes 2000 --steps 30 --no-write   # a quicker look, prints only

It writes MNIST's training digits as folders of small PNGs (one subfolder
per digit, cycling through the 60,000 digits; `--folders`, kept between
runs), then, each in its own worker process so that memory does not leak
between them, trains `sequential` on:

* MNIST from memory, as `train.py --model sequential` does;
* each folder streamed from disk (`--stream on`): files read and decoded in
  parallel by `tf.data`, ahead of the model;
* the largest folder streamed with a decoded cache (`--cache-dir`), timed
  after the pass that fills it;
* each folder read into memory (`--stream off`), for the memory it costs.

For each it reports the time to open the data (the folder's scan, which
checks every file, and for `--stream off` the decoding), the images per
second of training steps, the share of each step spent waiting for its
batch, the input pipeline's own images per second with no model, and the
worker's peak resident memory. Steps run through `Model.train_on_batch`
with the batch taken from the pipeline by hand, so the wait for input is
measured, not inferred. The table goes to stdout and, unless `--no-write`,
into `docs/IMAGES.md` between its benchmark markers.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

# A tool of the checkout, not of the installed package: it uses the kerascnn beside it.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools.bench import versions  # noqa: E402
from tools.docblock import write_block  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "IMAGES.md")
BATCH = 100


def write_folder(root, count, data_dir=None):
    """`count` of MNIST's training digits as `root/<digit>/<i>.png` (cycling through them); returns root."""
    from PIL import Image

    from kerascnn.data import load_dataset

    if os.path.isdir(root) and sum(len(files) for _, _, files in os.walk(root)) == count:
        return root  # written by an earlier run
    shutil.rmtree(root, ignore_errors=True)
    mnist = load_dataset("mnist", data_dir, download=False)
    for digit in range(10):
        os.makedirs(os.path.join(root, str(digit)))
    for i in range(count):
        j = i % len(mnist.x_train)
        Image.fromarray(mnist.x_train[j, ..., 0]).save(os.path.join(root, str(mnist.y_train[j]), f"{i}.png"))
    return root


def worker(dataset, stream, cache, steps, warmup):
    """Runs in a child process: opens the data as `train.py` does, times steps, prints one JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from kerascnn.assemble import assemble
    from kerascnn.config import TrainConfig
    from kerascnn.training import peak_rss_mb

    config = TrainConfig(model="sequential", dataset=dataset, stream=stream, cache_dir=cache or None,
                         batch_size=BATCH)
    started = time.perf_counter()
    run = assemble(config)
    open_seconds = time.perf_counter() - started
    if cache:  # the pass that writes the cache, untimed: the steps below read it back
        for _ in run.train:
            pass
    batches = iter(run.train.repeat())
    for _ in range(20):  # the pipeline's own rate, no model; first batches untimed
        next(batches)
    started = time.perf_counter()
    for _ in range(steps):
        next(batches)
    input_rate = steps * BATCH / (time.perf_counter() - started)
    waits, totals = [], []
    for step in range(warmup + steps):
        t0 = time.perf_counter()
        x, y = next(batches)
        t1 = time.perf_counter()
        run.model.train_on_batch(x, y)  # returns the loss as NumPy: the step has finished
        t2 = time.perf_counter()
        if step >= warmup:
            waits.append(t1 - t0)
            totals.append(t2 - t0)
    print(json.dumps({
        "train_images": run.train_images,
        "open_seconds": open_seconds,
        "images_per_s": steps * BATCH / sum(totals),
        "input_wait_share": sum(waits) / sum(totals),
        "input_images_per_s": input_rate,
        "peak_rss_mb": peak_rss_mb() or float("nan"),
        "policy": run.policy,
    }))


def run_worker(dataset, stream, cache, args):
    argv = [sys.executable, os.path.abspath(__file__), "--worker", dataset, stream, cache or "",
            "--steps", str(args.steps), "--warmup", str(args.warmup)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{dataset} (stream={stream}) failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def render(rows, machine, started, args):
    """The Markdown table of `rows` [(label, images in the folder or None, result)]."""
    lines = [
        f"Measured {started} with `python tools/stream_bench.py {' '.join(args.argv)}`".rstrip() + ".",
        f"Machine: {machine}. Model: `sequential` ({rows[0][2]['policy']}), batch {BATCH}, "
        f"{args.steps} timed steps after {args.warmup}.",
        "",
        "| data | training images | open (s) | train images/s | waiting for input | input alone, images/s "
        "| peak memory (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, _, r in rows:
        lines.append(
            f"| {label} | {r['train_images']:,} | {r['open_seconds']:.0f} | {r['images_per_s']:,.0f} | "
            f"{r['input_wait_share']:.0%} | {r['input_images_per_s']:,.0f} | {r['peak_rss_mb']:,.0f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python tools/stream_bench.py", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000], help="PNGs per generated folder")
    p.add_argument("--folders", default=os.path.join(ROOT, "logs", "stream_bench"),
                   help="where the folders are written (kept for the next run)")
    p.add_argument("--steps", type=int, default=150, help="timed batches of 100 per configuration")
    p.add_argument("--warmup", type=int, default=20, help="untimed batches first (includes tracing)")
    p.add_argument("--data-dir", help="where MNIST is (default: $KERASCNN_DATA_DIR, then the usual places)")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/IMAGES.md alone")
    p.add_argument("--worker", nargs=3, metavar=("DATASET", "STREAM", "CACHE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(*args.worker, args.steps, args.warmup)
        return 0
    args.argv = argv
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if args.data_dir:
        os.environ["KERASCNN_DATA_DIR"] = args.data_dir
    folders = {n: write_folder(os.path.join(args.folders, f"png{n}"), n) for n in args.sizes}
    largest = max(folders)
    cache = os.path.join(args.folders, "cache")
    shutil.rmtree(cache, ignore_errors=True)
    plan = [("MNIST, in memory", None, "mnist", "auto", None)]
    plan += [(f"{n:,} PNGs, streamed", n, folders[n], "on", None) for n in sorted(folders)]
    plan += [(f"{largest:,} PNGs, streamed, decoded cache", largest, folders[largest], "on", cache)]
    plan += [(f"{n:,} PNGs, in memory", n, folders[n], "off", None) for n in sorted(folders)]
    rows = []
    for label, n, dataset, stream, cache_dir in plan:
        result = run_worker(dataset, stream, cache_dir, args)
        rows.append((label, n, result))
        print(label, json.dumps(result), flush=True)
    shutil.rmtree(cache, ignore_errors=True)
    table = render(rows, versions(), started, args)
    print(table)
    if not args.no_write:
        write_block(DOC, "stream_bench", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
