"""Screenshot of TensorBoard's scalars dashboard, taken with headless Chromium.

    python tools/screenshot.py LOGDIR docs/tensorboard-scalars.png

Starts `tensorboard --logdir LOGDIR` on a free 127.0.0.1 port, waits until
it serves the runs' scalars, opens the scalars dashboard in headless
Chromium (Debian: `apt-get install chromium`) and saves the page as a PNG.
Exit status 0 when the PNG was written, 1 when TensorBoard or Chromium
failed, 2 for bad usage (no Chromium, no LOGDIR).
"""

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@contextlib.contextmanager
def tensorboard_server(logdir, port, log, host="127.0.0.1", reload_interval=None):
    """Runs `tensorboard --logdir LOGDIR` for the `with` block, on loopback unless told otherwise.

    Yields the `subprocess.Popen`; the server is stopped (terminate, then kill)
    on the way out. Output goes to the open file `log`.
    """
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", host, "--port", str(port)]
    if reload_interval is not None:
        command += ["--reload_interval", str(reload_interval)]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield server
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # the tests' conftest.free_port: this script runs outside pytest


def wait_for_scalars(url, timeout=120):
    """Polls TensorBoard until some run has scalars; returns the tags by run."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/data/plugin/scalars/tags", timeout=5) as response:
                tags = json.load(response)
            if tags:
                return tags
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"TensorBoard at {url} served no scalars within {timeout} s")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="tools/screenshot.py", description=__doc__.splitlines()[0])
    parser.add_argument("logdir")
    parser.add_argument("out")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args(argv)
    browser = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if browser is None:
        parser.error(f"no headless browser found (looked for {', '.join(BROWSERS)}); apt-get install chromium")
    if not os.path.isdir(args.logdir):
        parser.error(f"{args.logdir} is not a directory")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as scratch:
        with open(os.path.join(scratch, "tensorboard.log"), "w") as log, tensorboard_server(args.logdir, port, log):
            try:
                wait_for_scalars(url)
                out = os.path.abspath(args.out)
                shot = subprocess.run(
                    [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                     f"--user-data-dir={os.path.join(scratch, 'profile')}",
                     f"--window-size={args.width},{args.height}", "--virtual-time-budget=20000",
                     f"--screenshot={out}",
                     f"{url}/#scalars&_smoothingWeight=0&_ignoreYOutliers=false&tagFilter=epoch_"],
                    capture_output=True, text=True, timeout=180,
                )
                if shot.returncode != 0 or not os.path.isfile(out):
                    print(f"{parser.prog}: error: {browser} failed:\n{shot.stderr[-2000:]}", file=sys.stderr)
                    return 1
            except (TimeoutError, subprocess.TimeoutExpired) as e:
                print(f"{parser.prog}: error: {e}", file=sys.stderr)
                return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
