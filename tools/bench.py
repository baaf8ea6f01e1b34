"""Training-speed benchmark: this project against the lecture's own loop.

    python tools/bench.py                  # the full table, 3 rounds, ~17 minutes on 2 cores
    python tools/bench.py --rounds 1 --steps 40 --no-write   # a quicker look, prints only
    python tools/bench.py --sizes 28,64,128 --rounds 2 --steps 20 --warmup 5   # one member per picture side

In one process tree and one sitting it measures:

* the lecture's eager `GradientTape` loop (`../shared/bench/seed_loop.py`,
  when that file exists), for the lecture CNN and for its "best" recipe;
* this project's `fit()` throughput for `sequential` and for `best`'s
  model at each precision (and `sequential` with forced XLA, the
  measurement behind `kerascnn.precision.jit_compile_setting`);
* the share of the machine's matmul peak each run reaches;
* the cost of `best`'s augmentation layers (the same model without them);
* the peak resident memory of each worker process (full training set in
  memory, full-size model);
* one row per member design of `best` (`MEMBER_CONFIGS`): one member
  trained alone at the precision `auto` picks here, with its multiply-adds
  per image, so that a member is chosen by what it costs in minutes.
  `--members` runs these rows alone (a few minutes), and prints how many
  epochs of each fit in the wall time of the lecture's recipe (5 members x
  15 epochs) on this machine, and today's `best`'s time as a ratio of it.
* `--sizes` alone: one member of `best` (today's lecture member) on RGB
  pictures of each side, built as a run on a colour folder builds it
  (`kerascnn.assemble` with a folder's `DataSpec`, so global pooling and the
  stage count come from `DataSpec.model_kwargs`), fed uint8 noise: images
  per second and per minute, multiply-adds, parameters, stages, the final
  feature map, and the minutes one epoch of a 50,000-picture folder takes.

Each configuration runs in its own worker process so that policies, graphs
and memory do not leak between them. The whole set runs `--rounds` times,
interleaved, and the table reports medians: the development VM has slow
spells (about 40% slower, for minutes), and a ratio taken within a round
compares two measurements made close together. Throughput counts model-images per
second (images times ensemble members) like the lecture script does, and is
timed after a warm-up that includes graph tracing. The table goes to
stdout and, unless `--no-write`, into its block of `docs/PERFORMANCE.md`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

# A tool of the checkout, not of the installed package: it uses the kerascnn beside it.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools.docblock import write_block  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED_LOOP = os.path.join(ROOT, "..", "shared", "bench", "seed_loop.py")
DOC = os.path.join(ROOT, "docs", "PERFORMANCE.md")
BATCH = 100

UNFUSED = "unfused_batchnorm"  # not a builder argument: the worker turns FusedBatchNormalization off
# The lecture's recipe for `best` (5 members, no smoothing), pinned: the rows compare with the lecture loop's five models.
LECTURE_BEST = {"members": 5, "label_smoothing": 0.0}
# (label, model, precision, extra builder kwargs, jit_compile)
CONFIGS = [
    ("sequential float32", "sequential", "float32", {}, None),
    ("sequential mixed_bfloat16", "sequential", "mixed_bfloat16", {}, None),
    ("sequential float32, forced XLA", "sequential", "float32", {}, True),
    ("best float32", "best", "float32", LECTURE_BEST, None),
    ("best mixed_bfloat16", "best", "mixed_bfloat16", LECTURE_BEST, None),
    ("best mixed_bfloat16, no augmentation", "best", "mixed_bfloat16", {**LECTURE_BEST, "rotation": 0.0, "shift": 0.0},
     None),
    ("best mixed_bfloat16, Keras' unfused batch norm", "best", "mixed_bfloat16", {**LECTURE_BEST, UNFUSED: True},
     None),
]
# One member of `best` alone, per design (label, model, precision, builder kwargs, jit_compile).
MEMBER_CONFIGS = [
    ("member lecture", "best", "auto", {"members": 1, "member": "lecture"}, None),
    ("member strided", "best", "auto", {"members": 1, "member": "strided"}, None),
    ("member residual 32", "best", "auto", {"members": 1, "member": "residual", "filters": 32}, None),
    ("member residual 48", "best", "auto", {"members": 1, "member": "residual", "filters": 48}, None),
    ("member residual 64", "best", "auto", {"members": 1, "member": "residual", "filters": 64}, None),
]
# Today's default `best`, its members trained together as one model, as many as its builder's default.
DEFAULT_BEST = "default best (its lecture members together)"
MEMBER_CONFIGS.append((DEFAULT_BEST, "best", "auto", {"member": "lecture"}, None))
# The lecture's recipe (5 lecture members x 15 epochs, `best` until 2026-12-04): the wall time a
# member's epochs are counted against, and the time today's `best` must not exceed.
LECTURE_RECIPE = ("lecture recipe (5 lecture members)", "best", "auto", {**LECTURE_BEST, "member": "lecture"},
                  None)
LECTURE_EPOCHS = 15
TRAIN_IMAGES = 55_000

# `--sizes`: one member of `best` on RGB pictures of each side (not a builder argument: the worker feeds its pictures).
SIDE = "picture_side"
SIZES = "28,64,128"
SIZE_MEMBER = {"members": 1, "member": "lecture"}  # today's `best` trains MODEL_DEFAULTS' members of this design
NOISE_IMAGES = 2_000  # synthetic training pictures the worker holds (repeated); throughput does not read the content
NOISE_CLASSES = 10
FOLDER_IMAGES = 50_000  # the folder whose epoch the `--sizes` table times
MIN_SIDE = 5  # the smallest side three 2x2 poolings take (5 -> 3 -> 2 -> 1: `kerascnn.layers.check_stages`)


def worker(model_name, precision, kwargs, jit, steps, warmup):
    """Runs in a child process: times `fit()` and prints one JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from kerascnn.precision import jit_compile_setting
    from kerascnn.training import peak_rss_mb

    side = kwargs.get(SIDE)
    run = worker_run(model_name, precision, kwargs, jit)
    model = run.model
    parts = getattr(model, "members", [model])  # an ensemble's members, else the model itself
    members = len(parts)

    times = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter())

    model.fit(run.train.repeat(), steps_per_epoch=warmup + steps, epochs=1, callbacks=[Clock()], verbose=0)
    seconds = times[-1] - times[warmup - 1]
    images_per_s = steps * BATCH / seconds
    print(json.dumps({
        "images_per_s": images_per_s,
        "model_images_per_s": images_per_s * members,
        "members": members,
        "step_ms": 1000 * seconds / steps,
        "train_flops_per_image": 3 * 2 * multiply_adds(parts[0]),  # fwd + bwd, one member
        "peak_rss_mb": peak_rss_mb() or float("nan"),  # None off Linux
        "jit_compile": jit if jit is not None else jit_compile_setting(),
        "policy": run.policy,
        **({} if side is None else {"side": side, "params": parts[0].count_params(), **stage_facts(parts[0])}),
    }))


def worker_run(model_name, precision, kwargs, jit):
    """The run a worker times, assembled as `train.py` assembles it (`kerascnn.assemble`).

    By default the full 55,000 training images in memory (uint8), the
    epoch-keyed pipeline scaling in the graph, the model compiled as a run
    compiles it. With `kwargs[SIDE]`, a run on a colour folder of pictures
    that side instead (`noise_splits`). `kwargs[UNFUSED]` turns `FusedBatchNormalization`
    off in this process.
    """
    from kerascnn.assemble import assemble
    from kerascnn.config import TrainConfig

    kwargs = dict(kwargs)
    if kwargs.pop(UNFUSED, False):
        from kerascnn.layers import FusedBatchNormalization

        FusedBatchNormalization.fused = False  # a worker process only
    side = kwargs.pop(SIDE, None)
    compile_overrides = {} if jit is None else {"jit_compile": jit}
    if side is None:
        config = TrainConfig(model=model_name, precision=precision, batch_size=BATCH, **kwargs)
        return assemble(config, **compile_overrides)
    # A folder's config names a folder, and `auto` picks the augmentation policy from that (a built-in name would
    # give MNIST's digits policy at 28 px): an empty one, which is never read, as the pictures come as `splits`.
    with tempfile.TemporaryDirectory(prefix="bench-folder-") as folder:
        config = TrainConfig(model=model_name, dataset=folder, precision=precision, batch_size=BATCH, **kwargs)
        return assemble(config, splits=noise_splits(side), **compile_overrides)


def noise_splits(side, images=NOISE_IMAGES, classes=NOISE_CLASSES, seed=0):
    """`data.Splits` of RGB pictures `side` pixels a side, as a colour folder loads them, filled with uint8 noise.

    The `DataSpec` is a folder's (`kerascnn.images`): raw pixels, shape
    (side, side, 3), so that `assemble` builds the model a run on such a
    folder builds (`DataSpec.model_kwargs`: its input, scaling, global
    pooling and stage count) and picks the augmentation policy it picks
    (`photos`, for colour). The pixels are noise: a step's time does not
    depend on what the pictures show. 100 validation pictures; no test split.
    """
    import numpy as np

    from kerascnn.data import DataSpec, Splits

    rng = np.random.default_rng(seed)
    pixels = lambda n: rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    labels = lambda n: rng.integers(0, classes, n).astype(np.int32)
    spec = DataSpec([f"class{c}" for c in range(classes)], (side, side, 3), raw_pixels=True,
                    record={"source": "synthetic uint8 noise (tools/bench.py)", "color_mode": "rgb"})
    return Splits(pixels(images), labels(images), pixels(100), labels(100), None, None, spec)


def stage_facts(model):
    """A model's pooling stages, the last feature map before its head, and whether it pools globally.

    Read from the model's own layers as they run (`kerascnn.inspect.stages.trace`):
    the stages are its 2x2 poolings, the final map is the last 4-D output
    (height, width, channels) before the flatten or global pooling.

    >>> from kerascnn.models import create_model
    >>> stage_facts(create_model("sequential"))
    {'stages': 3, 'final_map': [4, 4, 128], 'global_pool': False}
    """
    import keras

    from kerascnn.inspect.stages import describe, trace
    from kerascnn.layers import model_input_shape

    steps, _ = trace(model, keras.Input(model_input_shape(model)))
    pools = [describe(step.layer)[1] for step in steps if (describe(step.layer) or ("",))[0] == "pool"]
    return {
        "stages": sum(not text.startswith("global") for text in pools),
        "final_map": [int(d) for d in [step.output.shape for step in steps if len(step.output.shape) == 4][-1][1:]],
        "global_pool": any(text.startswith("global") for text in pools),
    }


def multiply_adds(model):
    """Multiply-adds of one image's forward pass through `model`'s convolutions and matmuls.

    Read from the TensorFlow graph of an inference call on one image, so it
    counts any model (Sequential, Functional, subclassed, nested blocks) the
    way it runs: a conv's output size times its kernel's height x width x
    input channels, a matmul's m x k x n. Batch norm, pooling, activations
    and augmentation are left out; they add little.
    """
    import numpy as np
    import tensorflow as tf

    from kerascnn.layers import model_input_shape

    shape = tuple(28 if side is None else side for side in model_input_shape(model))
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec((1, *shape), tf.float32)).graph
    total = 0
    for op in graph.get_operations():
        if op.type in ("Conv2D", "MatMul", "BatchMatMulV2"):
            out, kernel = op.outputs[0].shape, op.inputs[1].shape
            if op.type == "Conv2D":
                total += int(np.prod(out[1:])) * int(np.prod(kernel[:3]))
            else:  # (m, k) @ (k, n), or its transposes: m x n outputs, each a k-long dot product
                k = kernel[-1] if op.get_attr("transpose_b" if op.type == "MatMul" else "adj_y") else kernel[-2]
                total += int(np.prod(out)) * int(k)
    return total


def matmul_peak(dtype, n=4096, repeats=10):
    """GFLOP/s of an n x n matmul in TensorFlow (best of `repeats`)."""
    import tensorflow as tf

    a = tf.random.normal((n, n), dtype=tf.float32)
    a = tf.cast(a, dtype)
    mm = tf.function(lambda a: tf.linalg.matmul(a, a))
    mm(a).numpy()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        mm(a).numpy()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def run_child(args, timeout=1800):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def lecture_loop(recipe, steps):
    """Runs the lecture's loop; returns its img/s (model-images) and peak memory."""
    # Run it unchanged, then report the child's own peak memory.
    wrapper = (
        "import runpy, sys; from kerascnn.training import peak_rss_mb; sys.argv = sys.argv[1:]; "
        "code = 0\ntry:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit as e:\n    code = e.code or 0\n"
        "print(f'peak_rss_mb={peak_rss_mb() or float(\"nan\")}'); sys.exit(code)"
    )
    out = run_child(["-c", wrapper, SEED_LOOP, "--recipe", recipe, "--steps", str(steps)])
    values = dict(line.split("=", 1) for line in out.split() if "=" in line)
    return {
        "model_images_per_s": float(values["img_per_s"]),
        "projected_full_recipe_s": float(values["projected_full_recipe_s"]),
        "peak_rss_mb": float(values["peak_rss_mb"]),
    }


def versions():
    """`kerascnn.training.versions()` as one line, with the CPU's model name."""
    from kerascnn.training import versions as run_versions

    v = run_versions()
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores; Python {v['python']}, TensorFlow {v['tensorflow']}, Keras {v['keras']}"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python tools/bench.py", description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=150, help="timed batches of 100 per configuration")
    p.add_argument("--warmup", type=int, default=20, help="untimed batches first (includes tracing)")
    p.add_argument("--lecture-steps", type=int, default=60, help="timed batches for the lecture loop")
    p.add_argument("--rounds", type=int, default=3, help="times each measurement runs, interleaved; medians reported")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/PERFORMANCE.md alone")
    p.add_argument("--members", action="store_true",
                   help="only the member rows (one member of each design alone), with the epochs each affords")
    p.add_argument("--sizes", nargs="?", const=SIZES, metavar="SIDES",
                   help=f"only one member of `best` on RGB pictures of each side, comma-separated (alone: {SIZES})")
    p.add_argument("--worker", nargs=4, metavar=("MODEL", "PRECISION", "KWARGS", "JIT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min(args.steps, args.warmup, args.rounds) < 1:
        p.error(f"--steps, --warmup and --rounds must be >= 1. "
                f"Received: steps={args.steps}, warmup={args.warmup}, rounds={args.rounds}")
    sizes = None
    if args.sizes is not None:
        try:
            sizes = [int(side) for side in args.sizes.split(",")]
        except ValueError:
            sizes = []
        if not sizes or min(sizes) < MIN_SIDE or len(set(sizes)) < len(sizes):
            p.error(f"--sizes must be distinct picture sides of at least {MIN_SIDE} pixels, comma-separated "
                    f"(e.g. {SIZES}). Received: sizes={args.sizes!r}")
    if args.worker:
        name, precision, kwargs, jit = args.worker
        return worker(name, precision, json.loads(kwargs), json.loads(jit), args.steps, args.warmup)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    peaks = {"float32": matmul_peak(tf.float32), "bfloat16": matmul_peak(tf.bfloat16)}
    print(f"matmul 4096x4096: float32 {peaks['float32']:.0f} GFLOP/s, bfloat16 {peaks['bfloat16']:.0f} GFLOP/s")
    if not os.path.exists(SEED_LOOP):
        print(f"{SEED_LOOP} not found: no lecture baseline, ratios left out")

    if args.members:
        return member_table(args, started, peaks)
    if sizes:
        return size_table(args, sizes, started, peaks)
    # Every measurement runs once per round, in the same order: a slow spell of the
    # machine then hits a round, and each ratio is taken within its round.
    lecture_rounds, config_rounds = [], []
    for r in range(args.rounds):
        lecture = {}
        if os.path.exists(SEED_LOOP):
            for recipe in ("sequential", "best"):
                steps = args.lecture_steps if recipe == "sequential" else args.lecture_steps // 2
                lecture[recipe] = lecture_loop(recipe, steps)
                print(f"round {r + 1}: lecture loop {recipe}: {lecture[recipe]['model_images_per_s']:.0f} model-images/s")
        results = {}
        results = measure_round(CONFIGS, args, r)
        lecture_rounds.append(lecture)
        config_rounds.append(results)

    lecture, rows = summarize(lecture_rounds, config_rounds, peaks)
    aug = step_ratio(config_rounds, "best mixed_bfloat16", "best mixed_bfloat16, no augmentation") - 1
    unfused = step_ratio(config_rounds, "best mixed_bfloat16, Keras' unfused batch norm", "best mixed_bfloat16")
    return publish(render(started, versions(), peaks, lecture, rows, aug, unfused, args), "bench", args)


def publish(doc, block, args):
    """Prints `doc` and, unless `--no-write`, writes it as `block` of docs/PERFORMANCE.md (the page's other
    sections are left as they are); returns 0."""
    print(doc)
    if not args.no_write:
        write_block(DOC, block, doc)
        print(f"wrote {DOC}")
    return 0


def measure_round(configs, args, r):
    """Runs each configuration in its own worker process; returns their JSON figures by label."""
    results = {}
    for label, model, precision, kwargs, jit in configs:
        out = run_child([os.path.abspath(__file__), "--steps", str(args.steps), "--warmup", str(args.warmup),
                         "--worker", model, precision, json.dumps(kwargs), json.dumps(jit)])
        results[label] = json.loads(out.strip().splitlines()[-1])
        print(f"round {r + 1}: {label}: {results[label]['model_images_per_s']:.0f} model-images/s", flush=True)
    return results


def member_table(args, started, peaks):
    """The member rows: each design alone against the lecture's recipe, in rounds; writes the `bench-members` block."""
    rounds = [measure_round([LECTURE_RECIPE, *MEMBER_CONFIGS], args, r) for r in range(args.rounds)]
    rows = member_rows(rounds, peaks)
    return publish(render_members(started, versions(), peaks, rows, args), "bench-members", args)


def member_rows(rounds, peaks):
    """Per design: medians over rounds, and the epochs one member affords in the lecture recipe's wall time.

    The lecture's recipe trains 5 members x 15 epochs of 55,000 images; at its
    measured model-images/s that takes `budget_s`. A design whose one member
    trains at `rate` images/s affords `budget_s * rate / 55,000` epochs of
    one member (split them among k members for an ensemble of k). Each
    round's budget and rate are taken together, then the median is reported.
    """
    median = lambda values: float(statistics.median(values))
    budgets = [LECTURE_EPOCHS * TRAIN_IMAGES * LECTURE_RECIPE[3]["members"]
               / r[LECTURE_RECIPE[0]]["model_images_per_s"] for r in rounds]
    rows = []
    for label in rounds[0]:
        runs = [r[label] for r in rounds]
        rates = [run["model_images_per_s"] for run in runs]
        dtype = "bfloat16" if "bfloat16" in runs[0]["policy"] else "float32"
        rows.append((label, {
            "mac": runs[0]["train_flops_per_image"] / 6,
            "model_images_per_s": median(rates),
            "range": (min(rates), max(rates)),
            "peak_share": median(rates) * runs[0]["train_flops_per_image"] / 1e9 / peaks[dtype],
            "epochs": median(epochs := [b * rate / TRAIN_IMAGES for b, rate in zip(budgets, rates)]),
            "epochs_range": (min(epochs), max(epochs)),
            "budget_s": median(budgets),
            "policy": runs[0]["policy"],
            "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
        }))
    return rows


def render_members(started, machine, peaks, rows, args):
    budget = rows[0][1]["budget_s"]
    lines = [
        f"Measured by `python tools/bench.py --members` on {started}: {machine}. Precision `auto` "
        f"({rows[0][1]['policy']} here); batch {BATCH}; {args.steps} timed steps after {args.warmup} warm-up "
        f"steps, each row in its own process, {args.rounds} rounds interleaved, medians (lowest-highest round).",
        "",
        f"The lecture's recipe (5 lecture members x {LECTURE_EPOCHS} epochs, `best` until 2026-12-04) trains in "
        f"about {budget / 60:.0f} min here at the first row's rate; the last column is how many epochs of one "
        "member of each design fit in that time (divide among k members for an ensemble of k).",
        *default_best_time(dict(rows)),
        "",
        "| member | multiply-adds / image | model-images/s | share of matmul peak | epochs of one member in "
        "the lecture recipe's time | peak RSS (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for label, r in rows:
        lines.append(f"| {label} | {r['mac'] / 1e6:,.1f}M | {r['model_images_per_s']:,.0f} "
                     f"({r['range'][0]:,.0f}-{r['range'][1]:,.0f}) | {100 * r['peak_share']:.0f}% | "
                     f"{r['epochs']:.0f} | {r['peak_rss_mb']:,.0f} |")
    lines += ["", "Multiply-adds are counted from each member's TensorFlow graph (convolutions and matmuls); "
              "the share of peak takes training as 3x the forward pass."]
    return "\n".join(lines) + "\n"


def default_best_time(rows):
    """Today's `best`'s training time as a ratio of the lecture recipe's, from its row: lines for the page.

    Its member-epochs (members x epochs of its recipe) over the member-epochs
    its row affords in the lecture recipe's time; by the medians, and the
    range over rounds.
    """
    from kerascnn.models import model_defaults, resolve_recipe

    row = rows.get(DEFAULT_BEST)
    if row is None:
        return []
    members, epochs = model_defaults("best")["members"], resolve_recipe("best")["epochs"]
    low, high = (members * epochs / e for e in reversed(row["epochs_range"]))
    return ["", f"Today's `best` ({members} lecture members x {epochs} epochs: {members * epochs} member-epochs) "
            f"trains in **{members * epochs / row['epochs']:.2f}x** the lecture recipe's time here "
            f"({low:.2f}-{high:.2f}x by round)."]


def size_configs(sizes):
    """The `--sizes` rows: (label, model, precision, builder kwargs, jit_compile) per picture side."""
    return [(f"{side} px", "best", "auto", {**SIZE_MEMBER, SIDE: side}, None) for side in sizes]


def size_table(args, sizes, started, peaks):
    """One member per picture side, in rounds; writes the `bench-sizes` block."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rounds = [measure_round(size_configs(sizes), args, r) for r in range(args.rounds)]
    loads = (load, os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"))
    return publish(render_sizes(started, versions(), size_rows(rounds, peaks), args, loads), "bench-sizes", args)


def size_rows(rounds, peaks):
    """Per picture side: medians over rounds, the ratio to the first side within each round, an epoch's minutes.

    An epoch of a `FOLDER_IMAGES`-picture folder takes `FOLDER_IMAGES / rate`
    at a rate of `rate` images/s (its range from the slowest and fastest
    round); the folder's pictures in memory are side x side x 3 bytes each.
    """
    median = lambda values: float(statistics.median(values))
    base = next(iter(rounds[0]))
    rows = []
    for label in rounds[0]:
        runs = [r[label] for r in rounds]
        rates = [run["images_per_s"] for run in runs]
        ratios = [r[label]["images_per_s"] / r[base]["images_per_s"] for r in rounds]
        first = runs[0]
        dtype = "bfloat16" if "bfloat16" in first["policy"] else "float32"
        rows.append((label, {
            "side": first["side"],
            "stages": first["stages"],
            "final_map": tuple(first["final_map"]),
            "global_pool": first["global_pool"],
            "params": first["params"],
            "mac": first["train_flops_per_image"] / 6,
            "mac_ratio": first["train_flops_per_image"] / rounds[0][base]["train_flops_per_image"],
            "images_per_s": median(rates),
            "range": (min(rates), max(rates)),
            "images_per_min": 60 * median(rates),
            "ratio": median(ratios),
            "ratio_range": (min(ratios), max(ratios)),
            "epoch_min": FOLDER_IMAGES / median(rates) / 60,
            "epoch_range": (FOLDER_IMAGES / max(rates) / 60, FOLDER_IMAGES / min(rates) / 60),
            "peak_share": median(rates) * first["train_flops_per_image"] / 1e9 / peaks[dtype],
            "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
            "folder_mib": FOLDER_IMAGES * first["side"] ** 2 * 3 / 2**20,
            "policy": first["policy"],
        }))
    return rows


def render_sizes(started, machine, rows, args, loads):
    """The `bench-sizes` block: a paragraph of how, the table, and today's `best`'s epoch at each side."""
    from kerascnn.models import model_defaults

    base = rows[0][1]
    cores = os.cpu_count() or 1
    shared = (f"The machine was shared: its 1-minute load average was {loads[0]:.1f} at the start and "
              f"{loads[1]:.1f} at the end, on {cores} cores, so other processes took part of the CPU; the "
              "absolute rates are low by an unknown share, and the ratios, taken within a round, are what to read."
              if max(loads) > 0.5 * cores else
              f"The machine's 1-minute load average was {loads[0]:.1f} at the start and {loads[1]:.1f} at the end "
              f"on {cores} cores.")
    sides = ",".join(str(r["side"]) for _, r in rows)
    lines = [
        f"Measured by `python tools/bench.py --sizes {sides}` on {started}: {machine}. Precision `auto` "
        f"({base['policy']} here); batch {BATCH}; {args.steps} timed steps after {args.warmup} warm-up steps, "
        f"each side in its own process, {args.rounds} rounds interleaved, medians (lowest-highest round).",
        "",
        f"One member of `best` (the lecture member, `{SIZE_MEMBER['member']}`), built by `kerascnn.assemble` as a "
        "run on a colour folder of that side builds it: a folder's `DataSpec` (RGB, raw pixels), so the global "
        "pooling and the stage count are `DataSpec.model_kwargs`' and the augmentation is the `photos` policy "
        f"`auto` picks for colour. It trains on {NOISE_IMAGES:,} synthetic uint8 noise pictures held in memory and "
        "repeated: a step's time does not depend on what the pictures show. Per minute, the ratio is to the "
        f"{base['side']} px row within each round. One epoch is {FOLDER_IMAGES:,} training pictures at the "
        "median rate (range: the fastest and the slowest round).",
        "",
        shared,
        "",
        f"| side (RGB) | stages | final map | head | parameters | multiply-adds / image | images/s | images/min | "
        f"per minute vs {base['side']} px | one epoch of {FOLDER_IMAGES:,} | peak RSS (MiB) | "
        f"{FOLDER_IMAGES:,} pictures in memory (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in rows:
        h, w, c = r["final_map"]
        lines.append(
            f"| {label} | {r['stages']} | {h}x{w}x{c} | {'global average pool' if r['global_pool'] else 'flatten'} | "
            f"{r['params']:,} | {r['mac'] / 1e6:,.1f}M ({r['mac_ratio']:.1f}x) | {r['images_per_s']:,.0f} "
            f"({r['range'][0]:,.0f}-{r['range'][1]:,.0f}) | {r['images_per_min']:,.0f} | {r['ratio']:.2g}x "
            f"({r['ratio_range'][0]:.2g}-{r['ratio_range'][1]:.2g}x) | {r['epoch_min']:.1f} min "
            f"({r['epoch_range'][0]:.1f}-{r['epoch_range'][1]:.1f}) | {r['peak_rss_mb']:,.0f} | "
            f"{r['folder_mib']:,.0f} |")
    members = model_defaults("best")["members"]
    epochs = ", ".join(f"{members * r['epoch_min']:.1f} min at {r['side']} px" for _, r in rows)
    lines += [
        "",
        f"Today's `best` trains {members} such members together, at about one member's model-images/s (the "
        f"`--members` table): one epoch of {FOLDER_IMAGES:,} pictures takes about {members}x the member's, "
        f"{epochs}.",
        "Multiply-adds are counted from the member's TensorFlow graph (convolutions and matmuls; in brackets, "
        f"as a multiple of the {base['side']} px row's). Peak RSS is the worker's, with its "
        f"{NOISE_IMAGES:,} pictures; a run on a folder also holds the folder's pictures (the last column) unless "
        "it streams them from disk.",
    ]
    return "\n".join(lines) + "\n"


def summarize(lecture_rounds, config_rounds, peaks):
    """Medians over rounds, with each ratio to the lecture loop taken within its round.

    Returns:
        (lecture, rows): the lecture loop's median figures by recipe, and
        `(label, figures)` per configuration in `CONFIGS` order, each with
        the median and range of model-images/s and of the ratio, the median
        step time and share of the matmul peak, and the highest peak memory.
    """
    median = lambda values: float(statistics.median(values))
    lecture = {
        recipe: {key: median([r[recipe][key] for r in lecture_rounds]) for key in lecture_rounds[0][recipe]}
        for recipe in lecture_rounds[0]
    }
    specs = {label: (model, precision) for label, model, precision, _, _ in CONFIGS}
    rows = []
    for label in config_rounds[0]:
        model, precision = specs[label]
        runs = [r[label] for r in config_rounds]
        rates = [run["model_images_per_s"] for run in runs]
        recipe = "best" if model == "best" else "sequential"  # the lecture recipe it compares with
        ratios = [run["model_images_per_s"] / lr[recipe]["model_images_per_s"]
                  for run, lr in zip(runs, lecture_rounds) if recipe in lr]
        peak = peaks["bfloat16" if precision == "mixed_bfloat16" else "float32"]
        rows.append((label, {
            "model_images_per_s": median(rates),
            "range": (min(rates), max(rates)),
            "ratio": median(ratios) if ratios else None,
            "ratio_range": (min(ratios), max(ratios)) if ratios else None,
            "step_ms": median([run["step_ms"] for run in runs]),
            "peak_share": median(rates) * runs[0]["train_flops_per_image"] / 1e9 / peak,
            "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
        }))
    return lecture, rows


def step_ratio(config_rounds, label, baseline):
    """Median over rounds of `label`'s step time over `baseline`'s in the same round."""
    return float(statistics.median(r[label]["step_ms"] / r[baseline]["step_ms"] for r in config_rounds))


def render(started, machine, peaks, lecture, rows, aug, unfused, args):
    rounds = args.rounds
    lines = [
        f"Measured by `python tools/bench.py` on {started}: {machine}.",
        f"Batch {BATCH}; {args.steps} timed steps per configuration after {args.warmup} warm-up steps, "
        "each configuration in its own process with the full 55,000-image training split in memory. "
        "Model-images/s counts images times ensemble members, as the lecture script does. "
        f"Every measurement ran {rounds} times, interleaved (all of them once per round); the table gives "
        "medians and, in brackets, the lowest and highest round. Each ratio to the lecture loop is taken "
        "within one round, then the median is reported.",
        "",
        f"Matmul peak (4096x4096, TensorFlow): float32 {peaks['float32']:.0f} GFLOP/s, "
        f"bfloat16 {peaks['bfloat16']:.0f} GFLOP/s.",
        "",
        "| way of training | model-images/s | vs lecture loop | share of matmul peak | peak RSS (MiB) |",
        "|---|---|---|---|---|",
    ]
    for recipe, r in lecture.items():
        lines.append(f"| lecture loop, `seed_loop.py --recipe {recipe}` (eager GradientTape) | "
                     f"{r['model_images_per_s']:,.0f} | 1.0x | | {r['peak_rss_mb']:,.0f} |")
    for label, r in rows:
        rate = f"{r['model_images_per_s']:,.0f} ({r['range'][0]:,.0f}-{r['range'][1]:,.0f})"
        ratio = f"{r['ratio']:.1f}x ({r['ratio_range'][0]:.1f}-{r['ratio_range'][1]:.1f}x)" if r["ratio"] else "n/a"
        lines.append(f"| `fit()`: {label} | {rate} | {ratio} | {100 * r['peak_share']:.0f}% | {r['peak_rss_mb']:,.0f} |")
    lines += [
        "",
        f"Augmentation (RandomRotation + RandomTranslation inside each `best` member) costs "
        f"{100 * aug:.1f}% of the bf16 step time (median over rounds, each round compared within itself).",
        f"With Keras' own (unfused) BatchNormalization instead of `kerascnn.layers.FusedBatchNormalization`, "
        f"`best`'s bf16 step takes {unfused:.2f}x as long.",
        "",
        "The `best` rows (5 members, the lecture's recipe) compare with the lecture's `best` recipe (five BN models, "
        "eager); the `sequential` rows "
        "with its plain CNN. Training FLOPs per image are taken as 3x the forward pass of the convolutions and "
        "dense layers; the share of peak uses the matmul peak of the run's compute dtype.",
    ]
    if "best" in lecture:
        lines.append(f"The lecture loop projects {lecture['best']['projected_full_recipe_s'] / 3600:.1f} h for its "
                     "full best recipe (5 models x 15 epochs x 300,000 images) on this machine.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
