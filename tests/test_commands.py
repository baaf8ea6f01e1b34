"""The commands share one convention: light `--help`, exit 2 for bad usage, `--config` then flags."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from kerascnn.commands import run_command
from kerascnn.commands.train import build_parser
from kerascnn.config import ConfigError, TrainConfig
from kerascnn.training import TrainingDiverged

# Runs a command's main(["--help"]) and reports which heavy packages it imported.
HELP_IMPORTS = """
import contextlib, io, json, sys, runpy
sys.argv = [sys.argv[1], "--help"]
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as e:
        code = e.code
heavy = sorted(m for m in ("tensorflow", "keras", "jax", "keras_tuner") if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy, "usage": out.getvalue().splitlines()[0]}))
"""


@pytest.mark.parametrize("script", ["train.py", "tune.py", "kerascnn/__main__.py"])
def test_help_answers_without_importing_tensorflow_or_keras(script):
    done = subprocess.run([sys.executable, "-c", HELP_IMPORTS, script], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["code"] == 0 and result["usage"].startswith("usage: ")
    assert result["heavy"] == []


# Loads a command (what `--help` imports), then runs its main(argv) and reports the exit status, the seconds main()
# took and which heavy packages were imported.
USAGE_ERROR = """
import contextlib, io, json, sys, runpy, time
main = runpy.run_path(sys.argv[1])["main"]
err = io.StringIO()
start = time.perf_counter()
with contextlib.redirect_stderr(err):
    try:
        main(sys.argv[2:])
    except SystemExit as e:
        code = e.code
seconds = time.perf_counter() - start
heavy = sorted(m for m in ("tensorflow", "keras", "jax", "keras_tuner") if m in sys.modules)
print(json.dumps({"code": code, "seconds": seconds, "heavy": heavy, "error": err.getvalue().splitlines()[-1]}))
"""


@pytest.mark.parametrize("command", ["train", "tune"])
def test_kerascnn_train_and_tune_are_train_py_and_tune_py(command, tmp_path, capsys):
    """`python -m kerascnn train ...` (and the `kerascnn` script) takes the flags and config files of train.py."""
    import importlib

    from kerascnn.commands.results import main

    def words(argv, main, prog):
        with pytest.raises(SystemExit) as e:
            main(argv)
        captured = capsys.readouterr()
        return e.value.code, " ".join((captured.out + captured.err).replace(prog, "PROG").split())  # argparse wraps

    script = importlib.import_module(f"kerascnn.commands.{command}").main
    assert words([command, "--help"], main, f"python -m kerascnn {command}") == words(["--help"], script, f"{command}.py")
    broken = tmp_path / "broken.json"
    broken.write_text('{"bogus": 1}')
    code, error = words([command, "--config", str(broken)], main, f"python -m kerascnn {command}")
    assert (code, error) == words(["--config", str(broken)], script, f"{command}.py")
    assert code == 2 and "PROG: error: " in error and "['bogus']" in error


def test_train_py_states_the_best_recipe_the_registry_has():
    """train.py's usage lines say what `--model best` trains; the numbers are the registry's."""
    import re

    import train
    from kerascnn.models.registry import model_defaults, resolve_recipe

    members, epochs = map(int, re.search(r"--model best +# the recipe: (\d+) augmented BN CNNs, (\d+) epochs",
                                         train.__doc__).groups())
    assert (members, epochs) == (model_defaults("best")["members"], resolve_recipe("best")["epochs"])


@pytest.mark.parametrize("script", ["train.py", "tune.py"])
@pytest.mark.parametrize("content,message", [
    ("{broken", "is not valid JSON"),
    ('{"bogus": 1}', "['bogus']"),
])
def test_a_bad_config_file_exits_2_at_once_without_importing_tensorflow(tmp_path, script, content, message):
    path = tmp_path / "broken.json"
    path.write_text(content)
    done = subprocess.run([sys.executable, "-c", USAGE_ERROR, script, "--config", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["code"] == 2 and result["error"].startswith(f"{script}: error: ") and message in result["error"]
    assert result["heavy"] == []
    assert result["seconds"] < 1.0  # the bound; main() takes about 0.02 s (importing TensorFlow, 10 s or more)


def test_every_config_field_has_its_flag():
    flags = {a.dest for a in build_parser()._actions}  # argparse's own list of what it parses
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= flags
    args = build_parser().parse_args(["--rotation", "10", "--batchnorm", "false", "--lr-period", "3"])
    assert (args.rotation, args.batchnorm, args.lr_period) == (10.0, False, 3)


def test_bad_usage_exits_2_naming_the_thing_and_a_failure_exits_1(capsys):
    from kerascnn.config import ConfigError

    parser = build_parser()

    def refuse(args):
        raise ConfigError("`lr` must be a number > 0. Received: lr=-1")

    with pytest.raises(SystemExit) as e:
        run_command(parser, refuse, [])
    assert e.value.code == 2 and "train.py: error: `lr` must be a number > 0. Received: lr=-1" in capsys.readouterr().err

    def fail(args):
        raise TrainingDiverged("the loss became NaN")

    assert run_command(parser, fail, []) == 1
    assert "train.py: error: the loss became NaN" in capsys.readouterr().err

    def crash(args):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):  # not ours: a traceback, not an exit status
        run_command(parser, crash, [])


def test_tune_reads_its_config_file_and_flags_override_it(tmp_path, capsys):
    from kerascnn.commands.tune import build_parser as tune_parser
    from kerascnn.commands.tune import main as tune_main
    from kerascnn.commands.tune import resolve_search_config

    path = tmp_path / "search.json"
    path.write_text(json.dumps({"tuner": "random", "max_trials": 4, "subset": 200}))
    config = resolve_search_config(tune_parser().parse_args(["--config", str(path), "--max-trials", "2"]))
    assert (config.tuner, config.max_trials, config.subset) == ("random", 2, 200)
    path.write_text(json.dumps({"tuner": "random", "bogus": 1}))
    assert_exit_2 = pytest.raises(SystemExit)
    with assert_exit_2 as e:
        tune_main(["--config", str(path), "--directory", str(tmp_path / "tune")])
    assert e.value.code == 2 and "Unknown search config keys ['bogus']" in capsys.readouterr().err
    assert not (tmp_path / "tune").exists()


@pytest.mark.parametrize("command", ["train", "tune"])
def test_help_lists_the_allowed_values(command, capsys):
    """Every choice a flag takes is in `--help`: the registry's model names, the datasets, the precisions..."""
    import importlib

    from kerascnn.config import COLOR_MODES, DATASETS, MEMBERS, PRECISIONS, STRATEGIES, STREAMS
    from kerascnn.models import list_models
    from kerascnn.tuning.config import TUNERS

    with pytest.raises(SystemExit) as e:
        importlib.import_module(f"kerascnn.commands.{command}").main(["--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    listed = {"train": [*list_models(), *MEMBERS, *STRATEGIES], "tune": [*TUNERS]}[command]
    for name in [*listed, *PRECISIONS, *DATASETS, *COLOR_MODES, *STREAMS]:
        assert name in text, name
    if command == "train":
        assert "--model MODEL the model to train (one of: best, ensemble, functional, sequential, subclass; " \
               "default: sequential)" in text


def test_tune_has_a_flag_per_search_field_and_shares_train_pys_checks():
    from kerascnn.commands.tune import build_parser as tune_parser
    from kerascnn.tuning.config import SearchConfig

    parser = tune_parser()
    assert {f.name for f in dataclasses.fields(SearchConfig)} <= {a.dest for a in parser._actions}  # argparse's list
    args = parser.parse_args(["--overwrite", "--worker-timeout", "30", "--seed", "5", "--image-size", "32"])
    assert (args.overwrite, args.worker_timeout, args.seed, args.image_size) == (True, 30.0, 5, 32)
    train_help = {a.dest: a.help for a in build_parser()._actions}
    assert {a.dest: a.help for a in parser._actions}["stream"] == train_help["stream"]


@pytest.mark.parametrize("flag,text,value,message", [
    ("--lr-factor", "2", 2.0, "expected a number in (0, 1], received '2'"),
    ("--dropout", "1", 1.0, "expected a number in [0, 1), received '1'"),
    ("--seed", "-1", -1, "expected an integer in [0, 2**32), received '-1'"),
    ("--batchnorm", "maybe", "maybe", "expected true or false, received 'maybe'"),
    ("--member", "wide", "wide", "invalid choice: 'wide' (choose from 'lecture', 'strided', 'residual')"),
])
def test_a_bad_flag_is_refused_by_the_configs_own_check(flag, text, value, message, capsys):
    """The parser checks each value as the config does, and its message names the flag."""
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([flag, text])
    assert e.value.code == 2 and f"argument {flag}: {message}" in capsys.readouterr().err
    field = flag[2:].replace("-", "_")
    with pytest.raises(ConfigError, match=f"`{field}` must be .*Received: {field}="):
        TrainConfig(**{field: value})


def test_tensorflow_start_up_lines_are_dropped_and_other_stderr_kept(capfd):
    from kerascnn.commands import _dropping_startup_lines

    with _dropping_startup_lines(True):
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                    b"I0000 00:00:1796223521.210509   10049 cudart_stub.cc:31] Could not find cuda drivers on your "
                    b"machine, GPU will not be used.\n"
                    b"E0000 00:00:1796223284.710893    5805 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA "
                    b"error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
                    b"E0000 00:00:1796223284.710893    5805 some_op.cc:12] a real error\n"
                    b"any other line\n")
    assert capfd.readouterr().err == "E0000 00:00:1796223284.710893    5805 some_op.cc:12] a real error\nany other line\n"


def test_a_log_level_you_set_is_respected(monkeypatch):
    from kerascnn import commands

    monkeypatch.setattr(commands, "_quiet", False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    commands.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0" and commands._quiet is False  # nothing of TensorFlow's dropped
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    commands.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2" and commands._quiet is True
