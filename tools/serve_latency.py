"""Latency of `python -m kerascnn serve`: p50/p95 of one prediction, in process and over HTTP, with and without the layer view.

    python tools/serve_latency.py logs/best-20250101-120000 [--repeats 200]
    python tools/serve_latency.py --untrained sequential ensemble best     # the registry's architectures

One picture (the first MNIST test digit, dark on light, 280x280 PNG: what
the page sends) is classified `--repeats` times: by `Predictor.predict_bytes`
(decode, MNIST-style preparation, model) and through a real server on a free
127.0.0.1 port (the same plus HTTP), each without and with the page's layer
view (`layers=1`, member 1: every stage's maps, capped at 64 channels a
stage, and Grad-CAM, from the same compiled pass), and the size of the JSON
answer (also with `all=1`, every channel). Latency does not depend on the
weights, so `--untrained NAME` measures a registered architecture without
training it. Prints one Markdown table row per model.
"""

import argparse
import io
import logging
import os
import sys
import tempfile
import threading
import time

import numpy as np
from PIL import Image

# A tool of the checkout, not of the installed package: it uses the kerascnn beside it.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kerascnn.serve import make_server


def picture():
    from kerascnn.data import load_dataset

    digit = load_dataset("mnist", os.environ.get("KERASCNN_DATA_DIR"), download=False).x_test[0].reshape(28, 28)
    buffer = io.BytesIO()
    Image.fromarray(255 - digit).resize((280, 280), Image.Resampling.BICUBIC).save(buffer, "PNG")
    return buffer.getvalue()


LAYERS = {"layers": "1", "member": "1"}  # the page's request


def percentiles(call, repeats, warmup=5):
    """p50 and p95 of `call()` in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - start))
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)), "repeats": repeats}


def measure_latency(predictor, data, repeats=200, layers=False):
    """p50/p95 of one prediction (decode, prepare, classify; with `layers`, the layer view too), in milliseconds."""
    kwargs = {"member": 1} if layers else {}
    return percentiles(lambda: predictor.predict_bytes(data, **kwargs), repeats)


def http_latency(url, data, repeats, fields=None):
    """p50/p95 of `POST /api/predict` over one kept-alive connection, and the answer's size in bytes."""
    import requests

    with requests.Session() as session:
        post = lambda: session.post(url + "api/predict", files={"image": ("digit.png", data)}, data=fields or {})
        result = percentiles(lambda: post().raise_for_status(), repeats)
        result["bytes"] = len(post().content)
        result["all_bytes"] = len(session.post(url + "api/predict", files={"image": ("digit.png", data)},
                                               data={**(fields or {}), "all": "1"}).content)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="tools/serve_latency.py", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", metavar="MODEL", help="run directories or .keras files")
    parser.add_argument("--untrained", nargs="*", default=[], metavar="NAME", help="registered architectures")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    if not args.models and not args.untrained:
        parser.error("name a MODEL or --untrained NAME")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no log line per request
    data = picture()
    print("| model | in process p50 / p95 (ms) | with the layer view | over HTTP p50 / p95 (ms) | with the layer view "
          "| answer (KB) | with the layer view (all channels) |\n|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        from kerascnn.models import create_model

        models = list(args.models)
        for name in args.untrained:
            models.append(os.path.join(scratch, f"{name}.keras"))
            create_model(name).save(models[-1])
        for path in models:
            server = make_server(path, "127.0.0.1", 0)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            url = f"http://127.0.0.1:{server.server_port}/"
            local, local_view = (measure_latency(server.predictor, data, args.repeats, layers) for layers in (False, True))
            remote, remote_view = (http_latency(url, data, args.repeats, fields) for fields in (None, LAYERS))
            server.shutdown()
            server.server_close()
            ms = lambda r: f"{r['p50_ms']:.1f} / {r['p95_ms']:.1f}"
            print(f"| `{os.path.basename(path)}` | {ms(local)} | {ms(local_view)} | {ms(remote)} | {ms(remote_view)} | "
                  f"{remote['bytes'] / 1024:.1f} | {remote_view['bytes'] / 1024:.1f} "
                  f"({remote_view['all_bytes'] / 1024:.1f}) |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
