"""The `kerascnn` command (also `python -m kerascnn`): train, tune, and use a trained model.

    kerascnn train --model best                          # the same flags and --config as train.py
    kerascnn tune --max-trials 10                        # the same flags and --config as tune.py
    python -m kerascnn evaluate logs/best-20250101-120000            # a run directory or a .keras file
    python -m kerascnn predict logs/best-20250101-120000 my7.jpg two.png --json
    python -m kerascnn explain logs/best-20250101-120000 my7.png [--out page.png] [--member 2]
    python -m kerascnn export logs/best-20250101-120000 --format onnx [--out model.onnx]
    python -m kerascnn serve logs/best-20250101-120000 [--host 127.0.0.1] [--port 8000]   # draw in the browser

`train` and `tune` hand the rest of the line to the commands behind
`train.py` and `tune.py` (`kerascnn.commands.train`, `.tune`), so their
flags, config files, output and exit statuses are those commands'.

Exit status: 0 when all went well; 2 for bad usage, including a model or a
picture that is missing, or a model that is corrupt or refused by safe mode
(an argparse-style message naming it, nothing written); 1 when `predict`
could not classify some of the pictures (each gets its own error line, the
others are still classified), `explain` could not decode its picture, or
`evaluate` could not write its PNG. `serve` runs until Ctrl-C (status 0).
"""

import argparse
import importlib
import json
import os
import sys

from kerascnn.commands import dataset_arg, positive_int, run_command, start_tensorflow
from kerascnn.errors import UsageError

PROG = "python -m kerascnn"
# Subcommands that are whole commands of their own: the rest of the line goes to their `main`.
TRAINING_COMMANDS = {
    "train": "train a model (the same flags and --config as train.py; `kerascnn train --help` lists them)",
    "tune": "search hyperparameters with keras-tuner (the same flags and --config as tune.py)",
}


def build_parser(prog=PROG):
    from kerascnn.data import list_datasets
    from kerascnn.export import FORMATS
    from kerascnn.serve import DEFAULT_HOST, DEFAULT_PORT, port_number

    parser = argparse.ArgumentParser(prog=prog, description="Train, tune, evaluate, use and export kerascnn models.")
    commands = parser.add_subparsers(
        dest="command", metavar="{train,tune,evaluate,predict,explain,export,serve}", required=True)
    for name, text in TRAINING_COMMANDS.items():  # listed in --help; `main` hands them their line before parsing
        commands.add_parser(name, help=text, add_help=False)
    model_help = "a run directory (its best.keras is used) or a .keras file"

    p = commands.add_parser(
        "evaluate", help="test accuracy, loss, per-class accuracy and the confusion matrix",
        description="Test accuracy, loss, per-class accuracy and the confusion matrix (printed, and saved as "
                    "a PNG beside the model).",
    )
    p.add_argument("model", metavar="RUN_DIR_OR_MODEL", help=model_help)
    p.add_argument("--dataset", type=dataset_arg, help=f"{' or '.join(list_datasets())}, a folder of class subfolders (its test/ "
                                     "part, or the run's test split) or an .npz (default: the run's dataset, else mnist)")
    p.add_argument("--data-dir", dest="data_dir", help="dataset directory (default: $KERASCNN_DATA_DIR, then caches)")
    p.add_argument("--batch-size", dest="batch_size", type=positive_int, default=500, help="default: 500")

    p = commands.add_parser(
        "predict", help="classify your own pictures (PNG or JPEG), printing class names",
        description="Classify pictures (PNG or JPEG, any size), prepared for the dataset the model was trained on. "
                    "MNIST (or a 28x28 grey .keras alone): colour or grey, dark ink on light paper or light on "
                    "dark; prepared MNIST-style (grey, inverted if needed, cropped to the ink, 20 px box, centred "
                    "by centre of mass in 28x28). Fashion-MNIST: the whole picture, grey, inverted when its "
                    "background is light, resized to 28x28. CIFAR-10: the whole picture in colour, resized to "
                    "32x32. A model trained on your own images: prepared as training did (its colours, resized "
                    "to its size).",
    )
    p.add_argument("model", metavar="MODEL", help=model_help)
    p.add_argument("images", metavar="IMAGE", nargs="+", help="picture files")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list: file, class, probability, runner_up (or file, error)")

    p = commands.add_parser(
        "explain", help="what the model sees: each stage's feature maps, Grad-CAM and the probabilities, as a PNG",
        description="Draw one page for one picture (prepared as predict prepares it): the input, the first 16 "
                    "feature maps of each conv, pooling and dense stage with its shape, a Grad-CAM heat map of "
                    "where the last conv stage looked, and the class probabilities. Prints the PNG's path.",
    )
    p.add_argument("model", metavar="MODEL", help=model_help)
    p.add_argument("image", metavar="IMAGE", help="a picture file (PNG or JPEG)")
    p.add_argument("--out", metavar="FILE.png", help="default: explain-<image name>.png in the current folder")
    p.add_argument("--member", type=positive_int, default=1,
                   help="for an ensemble, the member whose stages are drawn (1-based; default: 1)")

    p = commands.add_parser(
        "export", help="export for serving: SavedModel, ONNX or TFLite",
        description="Export through Keras' Model.export (and TensorFlow's TFLite converter) as a standalone "
                    "artifact: float32 images (N, 28, 28, 1) in [0, 1] (a digit model) or raw 0..255 pixels of any size "
                    "(a model trained on your own images) -> class probabilities (N, classes).",
    )
    p.add_argument("model", metavar="MODEL", help=model_help)
    p.add_argument("--format", required=True, choices=sorted(FORMATS), help="artifact format")
    p.add_argument("--out", metavar="PATH", help="default: beside the model (best.onnx, best.tflite, best_saved_model/)")

    p = commands.add_parser(
        "serve", help="draw a digit in the browser and see what the model sees and thinks",
        description="Serve one page, with the model loaded once: draw a digit (or upload or photograph one) and "
                    "see the class probabilities, the 28x28 image the model received, a saliency map, and "
                    "each ensemble member's vote. Needs Flask: pip install 'kerascnn[demo]'.",
    )
    p.add_argument("model", metavar="RUN_DIR_OR_MODEL", help=model_help)
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default: {DEFAULT_HOST}, this machine only; another prints a warning)")
    p.add_argument("--port", type=port_number, default=DEFAULT_PORT,
                   help=f"default: {DEFAULT_PORT}; 0 picks a free one")
    for sub in commands.choices.values():
        sub.set_defaults(command_parser=sub)  # errors print the subcommand's usage line
    return parser


def main(argv=None, prog=PROG):
    """Entry point of `python -m kerascnn` (and, with prog "kerascnn", of the console script); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in TRAINING_COMMANDS:
        command = importlib.import_module(f"kerascnn.commands.{argv[0]}")
        return command.main(argv[1:], prog=f"{prog} {argv[0]}")

    def job(args):
        _check_files(args)  # a missing picture is bad usage: named, and refused before TensorFlow starts
        start_tensorflow()  # each subcommand loads a model
        return {"evaluate": _evaluate, "predict": _predict, "explain": _explain, "export": _export, "serve": _serve}[args.command](args)

    return run_command(build_parser(prog), job, argv)


def console():
    """The `kerascnn` console script (setup.cfg's entry point)."""
    return main(prog="kerascnn")


class MissingFileError(UsageError, FileNotFoundError):
    """A path named on the command line does not exist."""


def _check_files(args):
    """Refuses a picture that is not there, naming it. (A missing model is refused by `kerascnn.loading`,
    which names it too; a picture that is there but cannot be decoded is the job's failure, status 1.)"""
    pictures = getattr(args, "images", None) or ([args.image] if getattr(args, "image", None) else [])
    missing = [path for path in pictures if not os.path.exists(path)]
    if missing:
        raise MissingFileError(
            f"no such picture file: {', '.join(missing)}. Expected the path of a PNG or JPEG file. "
            f"Received: {'images' if len(pictures) > 1 else 'image'}={missing if len(missing) > 1 else missing[0]!r}")


def _evaluate(args):
    from kerascnn.evaluate import evaluate, format_report

    result = evaluate(args.model, dataset=args.dataset, data_dir=args.data_dir, batch_size=args.batch_size)
    print(format_report(result))
    if result.png_error:
        print(f"{PROG} evaluate: error: {result.png_error}", file=sys.stderr)
        return 1
    return 0


def _predict(args):
    from kerascnn import loading
    from kerascnn.predict import classify, format_result

    loaded = loading.load(args.model)
    results = classify(loaded.model, args.images, class_names=loaded.class_names, dataset=loaded.dataset)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            stream = sys.stderr if "error" in result else sys.stdout
            print(format_result(result), file=stream, flush=True)
    failed = sum("error" in r for r in results)
    if failed:
        print(f"{PROG} predict: {failed} of {len(results)} pictures could not be classified.", file=sys.stderr)
        return 1
    return 0


def _explain(args):
    import os

    from kerascnn import loading
    from kerascnn.explain import explain, explain_figure
    from kerascnn.figures import render, save_png
    from kerascnn.predict import prepare
    from kerascnn.rundir import check_new_file

    out = args.out or f"explain-{os.path.splitext(os.path.basename(args.image))[0]}.png"
    check_new_file(out)  # as export: an existing page is left as it is, before any work
    loaded = loading.load(args.model)
    explanation = explain(loaded.model, prepare(args.image, loaded.model, loaded.dataset), member=args.member)
    print(save_png(render(explain_figure(explanation)), out))
    return 0


def _export(args):
    from kerascnn.export import export

    out = export(args.model, args.format, args.out)
    print(f"exported {args.format}: {out}")
    return 0


def _serve(args):
    from kerascnn.serve import serve

    return serve(args.model, args.host, args.port)

