"""What resuming a `--strategy multiworker` run costs: two `train.py` processes on loopback, killed and started again.

    python tools/resume_cost.py                       # sequential, 3 epochs of 5,000 MNIST digits, 2 processes
    python tools/resume_cost.py --model best --subset 10000 --epochs 4

It runs, each as docs/DISTRIBUTED.md starts them (`KERAS_BACKEND=jax`,
`KERAS_DISTRIBUTION_*`, process 0 and process 1 on 127.0.0.1):

1. an uninterrupted run, timing its chief from launch to its first epoch's
   start (imports, joining the cluster, the data, the model: what every
   sitting pays) and to its exit;
2. the same run in another log directory, both processes killed (-9) as
   soon as the backup of epoch `--kill-after` is on disk;
3. the same commands again, timing the chief from launch to the start of
   the epoch it resumes at: the start-up of step 1 plus what resuming adds
   (finding and checking the run, sending its backup, checkpoint and
   history to the other process, restoring and checking the epoch).

It prints the three times, what resuming adds (3 minus 1's start-up), the
bytes sent to the other process, and whether the resumed run's per-epoch
validation scores equal the uninterrupted run's. Nothing is written
outside a temporary folder.
"""

import argparse
import csv
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # a tool of the checkout: the kerascnn beside it


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sitting:
    """Two train.py processes; the chief's stdout lines are timed as they come (seconds since launch)."""

    def __init__(self, flags, logdir, address):
        self.start = time.monotonic()
        self.lines = []
        self.procs = []
        for index in range(2):
            env = {**os.environ, "KERAS_BACKEND": "jax", "KERAS_DISTRIBUTION_JOB_ADDRESSES": address,
                   "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": str(index)}
            env.pop("TF_CONFIG", None)
            self.procs.append(subprocess.Popen(
                [sys.executable, "-u", os.path.join(ROOT, "train.py"), *flags, "--logdir", logdir], cwd=ROOT,
                env=env, stdout=subprocess.PIPE if index == 0 else subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, text=True))
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.procs[0].stdout:
            self.lines.append((time.monotonic() - self.start, line.rstrip("\n")))

    def first(self, prefix):
        """Seconds from launch to the chief's first line starting with `prefix`, or None."""
        return next((t for t, line in self.lines if line.startswith(prefix)), None)

    def wait(self):
        codes = [p.wait() for p in self.procs]
        self.reader.join()
        return codes, time.monotonic() - self.start


def backup_epochs(logdir):
    try:
        (metadata,) = glob.glob(os.path.join(logdir, "*", "backup", "training_metadata.json"))
        return json.load(open(metadata))["epoch"]
    except (ValueError, OSError):
        return None


def val_scores(logdir):
    (run,) = glob.glob(os.path.join(logdir, "*"))
    with open(os.path.join(run, "history.csv")) as f:
        return [(r["epoch"], r["val_accuracy"], r["val_loss"]) for r in csv.DictReader(f)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sequential")
    parser.add_argument("--subset", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--kill-after", type=int, default=1, help="kill once the backup holds this many epochs")
    parser.add_argument("--batch-size", type=int, default=50, help="per replica")
    args = parser.parse_args(argv)
    if not 1 <= args.kill_after < args.epochs:
        parser.error(f"--kill-after must be in 1..{args.epochs - 1}. Received: --kill-after {args.kill_after}")
    flags = ["--model", args.model, "--strategy", "multiworker", "--epochs", str(args.epochs), "--subset",
             str(args.subset), "--val-size", "1000", "--batch-size", str(args.batch_size), "--precision", "float32",
             "--verbose", "2"]
    from kerascnn import rundir
    from kerascnn.training import RESUMED_FROM

    with tempfile.TemporaryDirectory() as scratch:
        whole, stopped = os.path.join(scratch, "whole"), os.path.join(scratch, "stopped")
        reference = Sitting(flags, whole, f"127.0.0.1:{free_port()}")
        codes, reference_seconds = reference.wait()
        assert codes == [0, 0], f"the uninterrupted run failed: {codes}"
        start_up = reference.first("Epoch 1/")

        address = f"127.0.0.1:{free_port()}"
        first = Sitting(flags, stopped, address)
        while backup_epochs(stopped) != args.kill_after:
            assert all(p.poll() is None for p in first.procs), "the run to kill exited before its backup"
            time.sleep(0.05)
        for p in first.procs:
            p.send_signal(signal.SIGKILL)
        first.wait()
        (run,) = glob.glob(os.path.join(stopped, "*"))
        sent = sum(os.path.getsize(os.path.join(run, name)) for name in RESUMED_FROM
                   if os.path.exists(os.path.join(run, name)))

        again = Sitting(flags, stopped, address)
        codes, again_seconds = again.wait()
        assert codes == [0, 0], f"the resumed run failed: {codes}"
        resumed_start = again.first(f"Epoch {args.kill_after + 1}/")
        metrics = rundir.read_json(os.path.join(run, rundir.METRICS))
        same = val_scores(stopped) == val_scores(whole)

    print(f"{args.model}, {args.epochs} epochs of {args.subset:,} images, 2 processes, killed after epoch "
          f"{args.kill_after}")
    print(f"uninterrupted: first epoch starts at {start_up:.1f} s, run ends at {reference_seconds:.1f} s")
    print(f"resumed sitting: epoch {args.kill_after + 1} starts at {resumed_start:.1f} s, run ends at "
          f"{again_seconds:.1f} s; sent to the other process: {sent / 2**20:.1f} MB")
    print(f"resuming adds {resumed_start - start_up:.1f} s to a sitting's start-up of {start_up:.1f} s")
    print(f"metrics.json: resumed={metrics['resumed']}, sittings={metrics['sittings']}; "
          f"per-epoch validation scores equal the uninterrupted run's: {same}")


if __name__ == "__main__":
    main()
