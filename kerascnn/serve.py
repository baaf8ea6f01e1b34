"""`python -m kerascnn serve MODEL`: draw a digit in the browser, see what the model sees and thinks.

    python -m kerascnn serve logs/best-20250101-120000        # then open http://127.0.0.1:8000
    python -m kerascnn serve best.keras --host 0.0.0.0         # reachable from a phone on your network

One page: draw with the mouse or a finger (Clear, Undo), upload a picture or
take one with a phone's camera. While you draw, the page shows the class
probabilities as bars, the 28x28 image the model actually received (prepared
by `kerascnn.predict`, exactly as `python -m kerascnn predict` prepares a
file), a saliency map (the pixels the answer is most sensitive to), and
for an ensemble each member's vote beside the averaged answer.

Why Flask: the page is one HTML file with its script and style inline, so
there is no build step and nothing is fetched from outside the machine (it
works offline; the page's Content-Security-Policy forbids anything else), and
the server is one small, well-kept dependency (`pip install 'kerascnn[demo]'`).
Werkzeug's threaded server, which comes with Flask, is plenty for a demo.

Safe by default: it listens on 127.0.0.1 (another `--host` prints a
warning); uploads above 5 MB are refused with a JSON error; pictures are
decoded in memory through `kerascnn.predict`'s checks (decompression bombs,
truncated files), and nothing from a request is used as a path. The model is
loaded once, at startup, and its predictions run one at a time under a lock:
one prediction already uses every core, and the lock keeps threads from ever
sharing Keras' state.

The API: `POST /api/predict` with a PNG or JPEG as the form field `image`
answers JSON: `class`, `probability`, `probabilities` (10), `members` (one
`{"class", "probability"}` per ensemble member, or the model itself),
`image` (the prepared 28x28 picture, rows of floats in [0, 1]), `saliency`
(28x28 in [0, 1]: how strongly each pixel sways the winning probability;
null off the TensorFlow backend); or `error` with status 400 (bad request),
413 (too large) or 422 (not a usable picture).
"""

import ipaddress
import socket
import sys
import threading
from importlib import resources

import numpy as np

from kerascnn.errors import UsageError
from kerascnn.predict import ImageError, decode_grey, to_mnist

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
MAX_UPLOAD = 5 * 1024 * 1024  # bytes; larger requests get a 413 JSON error
PAGE = "static/serve.html"
# The page may talk to this server only: no scripts, styles or images from elsewhere.
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src blob: data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'")


class ServeError(UsageError, ValueError):
    """The server cannot start: Flask missing, or the address cannot be listened on."""


class Predictor:
    """Prepares one picture MNIST-style and classifies it; safe to call from many threads.

    Example:

    >>> from kerascnn.models import create_model
    >>> predictor = Predictor(create_model("ensemble", members=2))
    >>> result = predictor.predict(np.zeros((28, 28, 1), "float32"))
    >>> len(result["probabilities"]), len(result["members"]), len(result["image"])
    (10, 2, 28)

    Args:
        model: `keras.Model` returning class probabilities; an `Ensemble`'s
            members are reported too (`MemberPredictor`).
    """

    def __init__(self, model):
        import keras

        from kerascnn.models.ensemble import MemberPredictor

        self.model = model
        self.members = MemberPredictor(model)
        self.lock = threading.Lock()
        self._run = self._members_and_saliency() if keras.backend.backend() == "tensorflow" else self._members
        self.predict(np.zeros((28, 28, 1), np.float32))  # traced once here, not by the first request

    def _members(self, x):
        import keras

        # One direct call: `predict()`'s per-call setup costs more than the model for one image.
        return keras.ops.convert_to_numpy(self.members.model(x, training=False))[0], None

    def _members_and_saliency(self):
        """Each member's softmax and the saliency map, in one compiled forward and backward pass.

        The saliency is |d p(winner) / d pixel| (Simonyan et al., 2014): the
        pixels the winning probability is most sensitive to. Keras has no
        backend-neutral gradient, so this is TensorFlow's `GradientTape`;
        on other backends the page shows no map.
        """
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec((1, 28, 28, 1), tf.float32)])
        def run(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                members = self.members.model(x, training=False)[0]  # (members, classes)
                top = tf.reduce_max(tf.reduce_mean(members, axis=0))  # the ensemble's winning probability
            return members, tf.abs(tape.gradient(top, x))[0, ..., 0]

        return lambda x: tuple(t.numpy() for t in run(tf.constant(x)))

    def predict(self, digit):
        """Classifies a prepared (28, 28, 1) image; returns the API's JSON dict."""
        with self.lock:
            members, saliency = self._run(digit[None].astype(np.float32))
        probabilities = members.mean(axis=0)  # the ensemble's output (`Ensemble.call` averages the same way)
        winner = int(np.argmax(probabilities))
        if saliency is not None:
            saliency = np.round(saliency / max(float(saliency.max()), 1e-30), 4).tolist()
        return {
            "class": winner,
            "probability": float(probabilities[winner]),
            "probabilities": [float(p) for p in probabilities],
            "members": [{"class": int(np.argmax(p)), "probability": float(p.max())} for p in members],
            "image": np.round(digit[..., 0].astype(float), 4).tolist(),
            "saliency": saliency,
        }

    def predict_bytes(self, data):
        """Decodes (PNG or JPEG bytes), prepares and classifies one picture. Raises `ImageError`."""
        return self.predict(to_mnist(decode_grey(data)))


def create_app(predictor, max_upload=MAX_UPLOAD):
    """The Flask app: the page at `/` and `POST /api/predict` (see the module docstring)."""
    from flask import Flask, Response, jsonify, request
    from werkzeug.exceptions import HTTPException

    app = Flask(__name__, static_folder=None)  # no static route: no request path reaches the filesystem
    app.config["MAX_CONTENT_LENGTH"] = max_upload
    page = resources.files("kerascnn").joinpath(PAGE).read_text("utf-8")
    page = page.replace("__MAX_UPLOAD__", str(max_upload))

    def error(status, message):
        return jsonify(error=message), status

    @app.get("/")
    def index():
        return Response(page, mimetype="text/html", headers={"Content-Security-Policy": CSP})

    @app.post("/api/predict")
    def predict():
        upload = request.files.get("image")
        if upload is None:
            return error(400, "no picture in the request: send a PNG or JPEG as the form field `image` "
                              f"(multipart/form-data). Received fields: {sorted(request.files) + sorted(request.form)}")
        name = upload.filename or "the picture"  # only ever shown, never opened
        try:
            return jsonify(predictor.predict_bytes(upload.read()))
        except ImageError as e:
            return error(422, f"{name}: {e}")

    @app.errorhandler(HTTPException)
    def http_error(e):
        if e.code == 413:
            return error(413, f"the upload is larger than the {max_upload / 2**20:g} MB limit; "
                              "send a smaller picture (a phone photo as JPEG is well under it).")
        return error(e.code, f"{e.name}: {e.description}")

    return app


def make_server(model_path, host=DEFAULT_HOST, port=DEFAULT_PORT, max_upload=MAX_UPLOAD):
    """Loads the model once and binds a threaded server; call `serve_forever()` on it.

    Returns:
        A `werkzeug.serving.BaseWSGIServer`; `server_port` is the port bound
        (useful with `port=0`), `predictor` the `Predictor`.

    Raises:
        ModelFileError: the model is missing, corrupt or unsafe.
        ServeError: Flask is not installed, or `host:port` cannot be listened on.
    """
    try:
        from werkzeug.serving import make_server as werkzeug_server

        import flask  # noqa: F401
    except ImportError:
        raise ServeError("`serve` needs Flask: pip install 'kerascnn[demo]'") from None
    from kerascnn import loading

    from kerascnn.layers import takes_raw_pixels

    model = loading.load(model_path).model
    if takes_raw_pixels(model):
        raise ServeError(
            f"`serve` is a page for drawing digits and needs a digit model (MNIST-style 28x28 input); {model_path} "
            "was trained on your own images. Use `python -m kerascnn predict` for it. "
            f"Received: model={model_path!r}"
        )
    predictor = Predictor(model)
    app = create_app(predictor, max_upload)
    # Bound here, not by werkzeug, which exits the process with its own message when it cannot.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.create_server((host, port), family=family) as listening:
            server = werkzeug_server(host, port, app, threaded=True, fd=listening.fileno())  # a duplicate
    except (OSError, OverflowError) as e:
        raise ServeError(f"cannot listen on {host}:{port} ({getattr(e, 'strerror', None) or e}). "
                         "Pass another --port, or --host 127.0.0.1.") from None
    server.server_port = server.socket.getsockname()[1]  # set by bind(), which werkzeug skips given fd
    server.predictor = predictor
    return server


def host_warning(host):
    """A warning when `host` is not a loopback address (other machines can reach the page), else None."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (f"warning: listening on {host}, not on loopback: anyone who can reach this machine on the "
            "network can use the page and send it pictures. There is no login and no TLS.")


def port_number(text):
    """argparse type for `--port`: an integer from 0 (any free port) to 65535."""
    import argparse

    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 65535. Received: {text!r}")
    return port


def serve(model_path, host=DEFAULT_HOST, port=DEFAULT_PORT):
    """Serves the page until interrupted (Ctrl-C); see `make_server`."""
    server = make_server(model_path, host, port)
    warning = host_warning(host)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    shown = f"[{host}]" if ":" in host else host
    print(f"Serving {model_path} on http://{shown}:{server.server_port}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0

