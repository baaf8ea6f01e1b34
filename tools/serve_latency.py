"""Latency of `python -m kerascnn serve`: p50/p95 of one prediction, in process and over HTTP.

    python tools/serve_latency.py logs/best-20250101-120000 [--repeats 200]
    python tools/serve_latency.py --untrained sequential ensemble best     # the registry's architectures

One picture (the first MNIST test digit, dark on light, 280x280 PNG: what
the page sends) is classified `--repeats` times: by `Predictor.predict_bytes`
(decode, MNIST-style preparation, model) and through a real server on a free
127.0.0.1 port (the same plus HTTP). Latency does not depend on the weights,
so `--untrained NAME` measures a registered architecture without training it.
Prints one Markdown table row per model.
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


def measure_latency(predictor, data, repeats=200, warmup=5):
    """Median and 95th percentile of one prediction (decode, prepare, classify), in milliseconds.

    Args:
        predictor: `kerascnn.serve.Predictor`.
        data: bytes, a PNG or JPEG picture.
        repeats: int, timed predictions. Defaults to 200.
        warmup: int, untimed predictions first. Defaults to 5.

    Returns:
        dict: `p50_ms`, `p95_ms`, `repeats`.
    """
    for _ in range(warmup):
        predictor.predict_bytes(data)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict_bytes(data)
        times.append(1000 * (time.perf_counter() - start))
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)), "repeats": repeats}


def http_latency(url, data, repeats):
    import requests

    times = []
    with requests.Session() as session:
        for i in range(repeats + 5):
            start = time.perf_counter()
            session.post(url + "api/predict", files={"image": ("digit.png", data)}).raise_for_status()
            if i >= 5:  # the first few warm up
                times.append(1000 * (time.perf_counter() - start))
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))}


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
    print("| model | in process p50 / p95 (ms) | over HTTP p50 / p95 (ms) |\n|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        from kerascnn.models import create_model

        models = list(args.models)
        for name in args.untrained:
            models.append(os.path.join(scratch, f"{name}.keras"))
            create_model(name).save(models[-1])
        for path in models:
            server = make_server(path, "127.0.0.1", 0)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            local = measure_latency(server.predictor, data, args.repeats)
            remote = http_latency(f"http://127.0.0.1:{server.server_port}/", data, args.repeats)
            server.shutdown()
            server.server_close()
            name = os.path.basename(path)
            print(f"| `{name}` | {local['p50_ms']:.1f} / {local['p95_ms']:.1f} | "
                  f"{remote['p50_ms']:.1f} / {remote['p95_ms']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
