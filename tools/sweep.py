"""Time to accuracy under any Keras backend, with or without TensorFlow.

    KERAS_BACKEND=jax python tools/sweep.py --model best --epochs 15 --out sweep.jsonl
    python tools/sweep.py --model best --rotation 10 --lr 0.002     # train.py's flags

`train.py` feeds `fit()` from `tf.data` and logs through TensorBoard, so it
needs TensorFlow. This runner needs only Keras: the run is assembled as
`train.py`'s is (`kerascnn.assemble`: the same model, compile and schedule),
fed from NumPy arrays. It therefore runs on a
machine where Keras 3 sits on JAX alone, e.g. a GPU box without TensorFlow.

After each epoch it records elapsed training time and, for an ensemble,
the validation and test accuracy of the average of its first k members for
every k, and the validation loss (NLL) of that average. Members learn independently (the ensemble's loss is the mean of
theirs), so one M-member run also answers "what would k members for e
epochs give", the grid a time budget is chosen from. Choose on the
validation numbers; the test numbers are for reporting the choice.

Each epoch writes one JSON line (stdout, and `--out` if given); the last
line is a summary with throughput in model-images per second.
"""

import json
import os
import sys
import time

import numpy as np

# A tool of the checkout, not of the installed package: it uses the kerascnn beside it.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def prefix_accuracies(probs, labels):
    """Accuracy of the mean of the first k members, for k = 1..M."""
    running = np.cumsum(probs, axis=0)
    return [float(np.mean(running[k].argmax(-1) == labels)) for k in range(len(probs))]


def prefix_nll(probs, labels):
    """Mean negative log-likelihood of the true class under the mean of the first k members, for k = 1..M.

    The loss ranks recipes where accuracy on a saturated validation split
    moves one image at a time (0.02 pp on 5,000 images).
    """
    from kerascnn.calibration import nll

    running = np.cumsum(probs, axis=0) / np.arange(1, len(probs) + 1)[:, None, None]
    return [nll(p, labels) for p in running]


def main(argv=None):
    """Entry point: train.py's flags (and `--config`), plus the sweep's own; returns the exit status."""
    from kerascnn.commands import positive_int, run_command
    from kerascnn.commands.train import build_parser, resolve_config

    parser = build_parser()
    parser.prog, parser.description = "python tools/sweep.py", __doc__.split("\n\n")[0]
    parser.set_defaults(model="best")
    parser.add_argument("--steps-per-execution", dest="steps_per_execution", type=positive_int, default=1,
                        help="train steps per compiled call (default: 1)")
    parser.add_argument("--label", default=None, help="a name for this run in the output (default: the flags)")
    parser.add_argument("--out", default=None, help="append the JSON lines to this file")
    parser.add_argument("--save-probs", dest="save_probs", default=None, metavar="DIR",
                        help="write each epoch's member softmax on validation and test to DIR/epoch_NN.npz, "
                             "so checkpoint rules and calibration can be compared afterwards without retraining")
    own = ("steps_per_execution", "label", "out", "save_probs")

    def job(args):
        config = resolve_config(args, parser, extra=own)
        label = args.label or " ".join(argv if argv is not None else sys.argv[1:]) or config.model
        return sweep(config, args.steps_per_execution, label, args.out, args.save_probs)

    return run_command(parser, job, argv)


def sweep(config, steps_per_execution=1, label=None, out=None, save_probs=None):
    """Trains `config` from NumPy arrays, writing one JSON line per epoch and a summary; returns 0.

    With `config.tta` (pixels), each epoch also records `val_prefix_tta` and
    `test_prefix_tta`: the members' softmax averaged over the image and its
    four shifted copies, then over members, as the model's own inference
    does; the plain scores are those without.

    With `save_probs` (a folder), each epoch also writes `epoch_NN.npz`
    holding `val` and `test` (members x images x classes, float32) and, once,
    `labels.npz` with `y_val` and `y_test`.
    """
    import keras

    from kerascnn.assemble import assemble
    from kerascnn.data import model_input
    from kerascnn.models.ensemble import MemberPredictor
    from kerascnn.training import peak_rss_mb

    # train.py's run, fed from NumPy arrays (arrays=True): no TensorFlow needed.
    run = assemble(config, arrays=True, steps_per_execution=steps_per_execution)
    (x_train, y_train), (x_val, y_val) = run.train, run.val
    x_test, y_test = model_input(run.splits.x_test, run.splits.spec.raw_pixels), run.splits.y_test
    model, policy = run.model, run.policy
    config = run.config  # resolved: the recipe's epochs, the model's defaults
    members = MemberPredictor(model, tta=0)
    members_tta = MemberPredictor(model) if config.tta else None
    label = label or config.model
    lines = []
    if save_probs:
        os.makedirs(save_probs, exist_ok=True)
        np.savez(os.path.join(save_probs, "labels.npz"), y_val=y_val, y_test=y_test)

    def emit(record):
        record = {"label": label, **record}
        print(json.dumps(record), flush=True)
        lines.append(record)
        if out:
            with open(out, "a") as f:
                f.write(json.dumps(record) + "\n")

    class Recorder(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.train_seconds = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self.started
            self.train_seconds += seconds
            val = members(x_val, batch_size=1000)
            test = members(x_test, batch_size=1000)
            if save_probs:
                np.savez(os.path.join(save_probs, f"epoch_{epoch + 1:02d}.npz"),
                         val=np.asarray(val, np.float32), test=np.asarray(test, np.float32))
            record = {
                "epoch": epoch + 1,
                "epoch_seconds": round(seconds, 2),
                "train_seconds": round(self.train_seconds, 2),
                "loss": float(logs["loss"]),
                "val_members": [float(np.mean(p.argmax(-1) == y_val)) for p in val],
                "val_prefix": prefix_accuracies(val, y_val),
                "val_nll_prefix": prefix_nll(val, y_val),
                "test_prefix": prefix_accuracies(test, y_test),
            }
            if members_tta:
                record["val_prefix_tta"] = prefix_accuracies(members_tta(x_val, batch_size=1000), y_val)
                record["test_prefix_tta"] = prefix_accuracies(members_tta(x_test, batch_size=1000), y_test)
            emit(record)

    model.fit(
        x_train,
        y_train,
        batch_size=config.batch_size,
        epochs=config.epochs,
        callbacks=[*run.schedule, Recorder()],  # the weight average, if any, is in for Recorder
        verbose=0,
    )
    members = len(getattr(model, "members", None) or [model])
    steady = [r["epoch_seconds"] for r in lines[1:]] or [lines[0]["epoch_seconds"]]
    emit({
        "summary": True,
        "backend": keras.backend.backend(),
        "policy": policy,
        "device": device_name(keras.backend.backend()),
        "members": members,
        "train_images": len(x_train),
        "first_epoch_seconds": lines[0]["epoch_seconds"],
        "model_images_per_s": round(len(x_train) * members / float(np.median(steady)), 1),
        "peak_rss_mb": peak_rss_mb(),
        "config": config.to_dict(),
    })
    return 0


def device_name(backend):
    if backend == "jax":
        import jax

        return str(jax.devices()[0].device_kind)
    import platform

    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
