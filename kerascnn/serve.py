"""`python -m kerascnn serve MODEL`: draw a digit in the browser, see what the model sees and thinks.

    python -m kerascnn serve logs/best-20250101-120000        # then open http://127.0.0.1:8000
    python -m kerascnn serve best.keras --host 0.0.0.0         # reachable from a phone on your network

One page: draw with the mouse or a finger (Clear, Undo), upload a picture or
take one with a phone's camera. While you draw, the page shows the class
probabilities as bars, the 28x28 image the model actually received (prepared
by `kerascnn.predict`, exactly as `python -m kerascnn predict` prepares a
file), a saliency map (the pixels the answer is most sensitive to), and
for an ensemble each member's vote beside the averaged answer.

A model trained on your own images (RGB or grey, any size; one that scales
its own raw pixels, `kerascnn.layers.takes_raw_pixels`), or on Fashion-MNIST
or CIFAR-10 (whole pictures, `kerascnn.predict.preparation`), is served too,
for uploads and photos only: drawing stays for digit models, so the page
hides the pad and says why. A picture is prepared as `predict` prepares a
file for it, by the same function (`kerascnn.predict.prepare_bytes`; for
your own images: decoded by training's own decoder, `kerascnn.images.decode`,
into the model's channels, resized bilinearly to its working size, e.g.
32x32 RGB), the bars carry the run's class names, and every map is at the
model's size.

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

Below, "what each layer sees": every stage of the model in order (conv,
pooling, dense, softmax), each channel's feature map as a small heat map
labelled with the lecture's shape arithmetic (`28x28x32 -> pool 2x2/2 SAME
-> 14x14x32`, computed by `kerascnn.basics` and checked against the model),
Grad-CAM beside the saliency map, a member selector for an ensemble, and a
click on a channel to see it large; a click on the large map shows the 3x3
kernel, the input window under it and the dot product that made the value,
as CNN Explainer does for its fixed network (here, for your model). The
layers come from `kerascnn.inspect`, in the same compiled pass as the answer,
on the TensorFlow or the JAX backend.

The API: `POST /api/predict` with a PNG or JPEG as the form field `image`
answers JSON:

* `class` (an index into `names`), `probability`, `probabilities` (one per
  class);
* `names`: the name of each class, the run's (`LoadedModel.class_names`),
  or "0" to "9" for a digit model;
* `members`: one `{"class", "probability"}` per ensemble member, or the
  model itself; a member's probability at the model's temperature (the
  calibration fitted after training, `kerascnn.calibration`), on the
  answer's scale;
* `image`: the picture as the model received it, in [0, 1] for display.
  For a digit model, the prepared 28x28 digit as 28 rows of 28 floats, as
  always. For a model trained on your own images, H rows of W pixels, each
  the list of its C channels (`[r, g, b]`, or `[grey]`): the raw 0..255
  pixels the model received, divided by 255, at its working size (a
  Fashion-MNIST or CIFAR-10 model's: the same rows, in [0, 1] as received);
* `saliency`: H rows of W floats in [0, 1], at the same size: how strongly
  each pixel (the largest over its channels) sways the winning probability;

or `error` with status 400 (bad request), 413 (too large) or 422 (not a
usable picture; the message names the file). With the form field `layers=1`
(and optionally `member`, 1-based, and `all=1` for every channel) it adds
`layers` (see `layer_view`). `POST /api/neuron` with the
same picture and `member`, `stage`, `channel`, `row`, `col` answers how
that one value was computed (see `neuron_view`).
"""

import base64
import ipaddress
import socket
import sys
import threading
from importlib import resources

import numpy as np

from kerascnn import calibration
from kerascnn.errors import UsageError
from kerascnn.predict import AS_TRAINED, ImageError, prepare_bytes, preparation, prepared_shape

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
MAX_UPLOAD = 5 * 1024 * 1024  # bytes; larger requests get a 413 JSON error
MAX_CHANNELS = 64  # feature maps sent per stage unless the page asks for all
PAGE = "static/serve.html"
# The page may talk to this server only: no scripts, styles or images from elsewhere.
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src blob: data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'")


class ServeError(UsageError, ValueError):
    """The server cannot start: Flask missing, or the address cannot be listened on."""


class Predictor:
    """Prepares one picture as the model takes it and classifies it; safe to call from many threads.

    A picture is prepared by `kerascnn.predict.prepare_bytes`, the path
    `predict` takes for a file: for the dataset the model was trained on
    (MNIST-style for a digit model, the whole picture for Fashion-MNIST and
    CIFAR-10), or as training did for a model trained on your own images
    (raw pixels at its working size and channels).

    Example:

    >>> from kerascnn.models import create_model
    >>> predictor = Predictor(create_model("ensemble", members=2))
    >>> result = predictor.predict(np.zeros((28, 28, 1), "float32"))
    >>> len(result["probabilities"]), len(result["members"]), len(result["image"])
    (10, 2, 28)
    >>> view = predictor.predict(np.zeros((28, 28, 1), "float32"), member=2)["layers"]
    >>> view["member"], [stage["shape"] for stage in view["stages"]][:2]
    (2, [[28, 28, 32], [14, 14, 32]])

    Args:
        model: `keras.Model` returning class probabilities; an `Ensemble`'s
            members are reported too (`kerascnn.inspect.Answer`).
        names: list of str, a name per class (`LoadedModel.class_names`).
            Defaults to "0", "1", ...
        dataset: str or None, the built-in dataset the model was trained on
            (`LoadedModel.dataset`), or None when not known. Defaults to None.

    Attributes:
        preparation: str, how pictures are prepared (`kerascnn.predict.preparation`).
        digits: bool, whether pictures are prepared as digits, MNIST-style
            (the page offers drawing); False for a model that takes whole
            pictures (Fashion-MNIST, CIFAR-10, your own images).
        shape: (height, width, channels) of a prepared picture.
    """

    def __init__(self, model, names=None, dataset=None):
        from kerascnn.layers import num_classes

        self.model = model
        self.dataset = dataset
        self.preparation = preparation(model, dataset)
        self.digits = self.preparation == "digit"
        self.shape = prepared_shape(model)
        self.names = list(names) if names is not None else [str(c) for c in range(num_classes(model))]
        self.lock = threading.Lock()
        self._passes = {}  # member (1-based, or None for no layer view) -> compiled pass
        self._explainers = {}
        self.layer_note = self._layer_note()
        blank = np.zeros(self.shape, np.float32)
        self.predict(blank)  # traced once here, not by the first request
        if not self.layer_note:
            self.predict(blank, member=1)  # and the page's first layer view (member 1)

    def _layer_note(self):
        """Why the layer view is not available for this model, or None."""
        from kerascnn.inspect import InspectError

        try:
            self._explainer(1)
        except InspectError as e:
            return str(e)
        return None

    def _explainer(self, member):
        from kerascnn.inspect import Explainer

        if member not in self._explainers:
            self._explainers[member] = Explainer(self.model, member)
        return self._explainers[member]

    def _pass(self, member):
        """The pass for `member` (None: the answer only): image (H, W, C) -> (members, saliency[, Explanation])."""
        if member in self._passes:
            return self._passes[member]
        from kerascnn.inspect import Answer

        if member is None:
            run = Answer(self.model)  # each member's softmax and the saliency map, one compiled pass
        else:
            explainer = self._explainer(member)  # the answer and every stage in one compiled pass

            def run(image):
                explanation = explainer(image)
                return explanation.member_probabilities, explanation.saliency, explanation

        self._passes[member] = run
        return run

    def check_member(self, member):
        """`member` as an int from 1 to the model's members; raises `ValueError` with the API's message."""
        count = len(getattr(self.model, "members", [self.model]))
        try:
            value = int(member)
        except (TypeError, ValueError):
            value = 0
        if not 1 <= value <= count or str(member).strip() != str(value):
            raise ValueError(f"`member` must be an integer from 1 to {count} (the model's members). "
                             f"Received: member={member!r}")
        return value

    def predict(self, image, member=None, all_channels=False):
        """Classifies a prepared picture; returns the API's JSON dict (see the module docstring).

        Args:
            image: float32 array `shape`, as `prepare` makes it: a digit in
                [0, 1] (28, 28, 1), or raw 0..255 pixels for a model trained
                on your own images.
            member: int, 1-based: also return the layer view of this member
                (`layers`); None (the default) for the answer only.
            all_channels: bool, send every channel's map, not the first
                `MAX_CHANNELS` of each stage.
        """
        wanted = member is not None
        if wanted:
            member = None if self.layer_note else self.check_member(member)
        with self.lock:
            results = self._pass(member)(image.astype(np.float32))
        members, saliency = results[:2]
        probabilities = calibration.answer(self.model, members)  # the model's output, as `Ensemble.call` makes it
        winner = int(np.argmax(probabilities))
        saliency = np.round(saliency, 4).tolist()  # in [0, 1] already
        answer = {
            "class": winner,
            "probability": float(probabilities[winner]),
            "probabilities": [float(p) for p in probabilities],
            # each member's vote at the model's temperature, so its number reads on the answer's scale
            "members": [{"class": int(np.argmax(p)), "probability": float(p.max())}
                        for p in (calibration.answer(self.model, m[None]) for m in members)],
            "names": self.names,
            "image": self.image_json(image),
            "saliency": saliency,
        }
        if len(results) == 3:
            answer["layers"] = layer_view(results[2], None if all_channels else MAX_CHANNELS)
        elif wanted:
            answer["layers"] = {"error": self.layer_note}
        return answer

    def image_json(self, image):
        """The answer's `image`: a prepared picture in [0, 1] as nested lists (see the module docstring)."""
        if self.digits:
            return np.round(image[..., 0].astype(float), 4).tolist()  # rows of floats, as always
        scale = 255.0 if self.preparation == AS_TRAINED else 1.0  # raw pixels, or a built-in dataset's [0, 1]
        return np.round(image.astype(float) / scale, 4).tolist()  # rows of pixels, each a list of its channels

    def neuron(self, image, member, stage, channel, row, col):
        """How one value of a conv stage was computed, for a prepared picture: `neuron_view`'s dict.

        Raises:
            ValueError: the layer view is unavailable, or a field is out of range (the message says which).
        """
        from kerascnn.inspect import neuron

        if self.layer_note:
            raise ValueError(self.layer_note)
        member = self.check_member(member)
        with self.lock:
            explanation = self._pass(member)(image.astype(np.float32))[2]
        fields = {}
        for name, value in (("stage", stage), ("channel", channel), ("row", row), ("col", col)):
            try:
                fields[name] = int(value)
            except (TypeError, ValueError):
                raise ValueError(f"`{name}` must be an integer. Received: {name}={value!r}") from None
        stages = explanation.stages
        if not 0 <= fields["stage"] < len(stages) or stages[fields["stage"]].kind != "conv":
            convs = [i for i, s in enumerate(stages) if s.kind == "conv"]
            raise ValueError(f"`stage` must be the index of a conv stage, one of {convs}. Received: stage={stage!r}")
        return neuron_view(neuron(stages[fields["stage"]], fields["channel"], fields["row"], fields["col"]))

    def prepare(self, data):
        """PNG or JPEG bytes as the model takes them (`kerascnn.predict.prepare_bytes`): float32 array `shape`.

        Raises:
            ImageError: not a usable picture.
        """
        return prepare_bytes(data, self.model, self.dataset)

    def predict_bytes(self, data, **kwargs):
        """Decodes (PNG or JPEG bytes), prepares and classifies one picture. Raises `ImageError`."""
        return self.predict(self.prepare(data), **kwargs)


def _half(array):
    """float32 array -> base64 of its little-endian float16 bytes (a third of the JSON of rounded floats)."""
    return base64.b64encode(np.asarray(array, "<f2").tobytes()).decode("ascii")


def layer_view(explanation, max_channels=MAX_CHANNELS):
    """The page's layer view of an `Explanation`, as JSON-ready dicts.

    Returns:
        `{"member", "members", "input": [H, W, C], "gradcam": rows of [0, 1],
        "stages": [...]}`, one stage per `Explanation` stage: `name`,
        `kind`, `text`, `shape`, `expected` (the shape `kerascnn.basics`
        gives, or null), `channels`, `shown` (how many maps are sent, at
        most `max_channels` unless None), `lo` and `hi` (the range of the
        values sent) and `maps`: base64 little-endian float16, channel
        first: (shown, H, W) for a feature map, (units,) for a vector.
    """
    stages = []
    for stage in explanation.stages:
        values = stage.activations
        channels = stage.shape[-1] if values.ndim == 3 else 1
        if values.ndim == 3:
            shown = channels if max_channels is None else min(channels, max_channels)
            values = np.moveaxis(values[..., :shown], -1, 0)
        else:
            shown = 1
        stages.append({
            "name": stage.name, "kind": stage.kind, "text": stage.text, "shape": list(stage.shape),
            "expected": None if stage.expected_shape is None else list(stage.expected_shape),
            "channels": int(channels), "shown": int(shown),
            "lo": float(values.min()), "hi": float(values.max()), "maps": _half(values),
        })
    return {
        "member": explanation.member, "members": explanation.members, "input": list(explanation.image.shape),
        "gradcam": np.round(explanation.gradcam.astype(float), 3).tolist(), "stages": stages,
    }


def neuron_view(n):
    """A `kerascnn.inspect.Neuron` as JSON: its fields, arrays as nested lists channel first ((C_in, kh, kw))."""
    return {
        "stage": n.stage, "channel": n.channel, "row": n.row, "col": n.col, "origin": list(n.origin),
        "window": np.moveaxis(n.window, -1, 0).round(5).tolist(),
        "kernel": np.moveaxis(n.kernel, -1, 0).round(5).tolist(),
        "bias": n.bias, "steps": [[name, value] for name, value in n.steps], "value": n.value,
    }


class _Refused(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


def create_app(predictor, max_upload=MAX_UPLOAD):
    """The Flask app: the page at `/` and `POST /api/predict` (see the module docstring)."""
    from flask import Flask, Response, jsonify, request
    from werkzeug.exceptions import HTTPException

    app = Flask(__name__, static_folder=None)  # no static route: no request path reaches the filesystem
    app.config["MAX_CONTENT_LENGTH"] = max_upload
    page = resources.files("kerascnn").joinpath(PAGE).read_text("utf-8")
    page = page.replace("__MAX_UPLOAD__", str(max_upload)).replace("__DRAWING__", str(predictor.digits).lower())

    def error(status, message):
        return jsonify(error=message), status

    @app.get("/")
    def index():
        return Response(page, mimetype="text/html", headers={"Content-Security-Policy": CSP})

    def picture():
        """The request's `image`, prepared (`Predictor.prepare`), or raises `_Refused`."""
        upload = request.files.get("image")
        if upload is None:
            raise _Refused(400, "no picture in the request: send a PNG or JPEG as the form field `image` "
                                f"(multipart/form-data). Received fields: {sorted(request.files) + sorted(request.form)}")
        name = upload.filename or "the picture"  # only ever shown, never opened
        try:
            return predictor.prepare(upload.read())
        except ImageError as e:
            raise _Refused(422, f"{name}: {e}") from None

    @app.post("/api/predict")
    def predict():
        try:
            image = picture()
            if request.form.get("layers") != "1":
                return jsonify(predictor.predict(image))
            return jsonify(predictor.predict(image, member=request.form.get("member", "1"),
                                             all_channels=request.form.get("all") == "1"))
        except _Refused as e:
            return error(e.status, e.message)
        except ValueError as e:
            return error(400, str(e))

    @app.post("/api/neuron")
    def neuron():
        form = request.form
        try:
            return jsonify(predictor.neuron(picture(), form.get("member", "1"), form.get("stage"),
                                            form.get("channel"), form.get("row"), form.get("col")))
        except _Refused as e:
            return error(e.status, e.message)
        except ValueError as e:
            return error(400, str(e))

    @app.errorhandler(HTTPException)
    def http_error(e):
        if e.code == 413:
            return error(413, f"the upload is larger than the {max_upload / 2**20:g} MB limit; "
                              "send a smaller picture (a phone photo as JPEG is well under it).")
        return error(e.code, f"{e.name}: {e.description}")

    return app


def make_server(model_path, host=DEFAULT_HOST, port=DEFAULT_PORT, max_upload=MAX_UPLOAD):
    """Loads the model once and binds a threaded server; call `serve_forever()` on it.

    A digit model gets the drawing page; a model trained on your own images
    the same page for uploads and photos only, its bars named with the run's
    class names (`LoadedModel.class_names`).

    Args:
        model_path: str, a run directory or a `.keras` file.
        host: str, the address to listen on. Defaults to 127.0.0.1.
        port: int, the port; 0 for any free one. Defaults to 8000.
        max_upload: int, the largest request in bytes (larger: 413). Defaults to 5 MB.

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

    loaded = loading.load(model_path)
    predictor = Predictor(loaded.model, loaded.class_names, loaded.dataset)
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

