"""TensorBoard: a real `tensorboard` server shows the run's scalars, images and text; the callback's content."""

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import keras
import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, free_port
from kerascnn import figures
from kerascnn.callbacks import make_callbacks, schedule_callbacks
from kerascnn.commands.train import main as train_main
from kerascnn.config import TrainConfig
from kerascnn.data import split
from kerascnn.explain import explain
from kerascnn.layers import ConvBNReLU
from kerascnn.loading import load
from kerascnn.models import create_model
from kerascnn.summaries import TensorBoardSummaries, config_markdown
from kerascnn.training import train
from tools.screenshot import tensorboard_server


def get(url, **params):
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(url + query, timeout=10) as response:
        return response.read()


@contextlib.contextmanager
def tensorboard(logdir, log_path):
    """`tensorboard --logdir` on a free 127.0.0.1 port; yields its URL once it answers."""
    port = free_port()
    with open(log_path, "w") as log, tensorboard_server(logdir, port, log, reload_interval=1) as server:
        yield f"http://127.0.0.1:{port}", server


def wait_for(url, path, ready, server, log_path, timeout=90):
    """Polls `url + path` (JSON) until `ready(answer)`; TensorBoard loads event files asynchronously."""
    deadline, answer = time.time() + timeout, None
    while time.time() < deadline:
        assert server.poll() is None, open(log_path).read()
        try:
            answer = json.loads(get(url + path))
            if ready(answer):
                return answer
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"TensorBoard never served what was expected at {path}; last answer: {answer}\n{open(log_path).read()}")


def test_tensorboard_serves_scalars_images_and_text(small_run, tmp_path):
    logdir, name = os.path.split(small_run)
    runs = {part: f"{name}/{part}" for part in ("train", "validation", "validation/member_0", "validation/member_1")}
    with tensorboard(logdir, tmp_path / "tb.log") as (url, server):
        scalars = wait_for(url, "/data/plugin/scalars/tags", lambda a: set(runs.values()) <= set(a),
                           server, tmp_path / "tb.log")
        # Train and validation share tags, so TensorBoard draws them on the same charts; the members too.
        assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= set(scalars[runs["train"]])
        assert {"epoch_loss", "epoch_accuracy"} <= set(scalars[runs["validation"]])
        for member in ("validation/member_0", "validation/member_1"):
            assert set(scalars[runs[member]]) == {"epoch_accuracy"}

        history = list(csv_rows(os.path.join(small_run, "history.csv")))
        points = json.loads(get(f"{url}/data/plugin/scalars/scalars", run=runs["validation"], tag="epoch_accuracy"))
        assert [p[1] for p in points] == [0, 1]  # steps are 0-based epochs
        assert [p[2] for p in points] == pytest.approx([float(r["val_accuracy"]) for r in history])
        for member in ("validation/member_0", "validation/member_1"):
            points = json.loads(get(f"{url}/data/plugin/scalars/scalars", run=runs[member], tag="epoch_accuracy"))
            assert [p[1] for p in points] == [0, 1] and all(0.5 < p[2] <= 1 for p in points)

        images = json.loads(get(f"{url}/data/plugin/images/tags"))
        tags = set(images[runs["validation"]])
        maps = sorted(tag for tag in tags if tag.startswith("feature_maps/"))
        assert tags == {"confusion_matrix", "misclassified", "filters", *maps}
        # Member 1's input, then its three conv and three pooling stages, numbered in the network's order.
        assert maps[0] == "feature_maps/00_input" and [t[13:16] for t in maps] == [f"{i:02d}_" for i in range(7)]
        for tag in sorted(tags):
            entries = json.loads(get(f"{url}/data/plugin/images/images", run=runs["validation"], tag=tag))
            assert [e["step"] for e in entries] == [0, 1]  # image_every=1; the end of training adds no duplicate
            png = get(f"{url}/data/plugin/images/individualImage?{entries[-1]['query']}")
            picture = Image.open(io.BytesIO(png))
            assert picture.format == "PNG" and min(picture.size) > (40 if tag == "filters" else 50)

        text = json.loads(get(f"{url}/data/plugin/text/tags"))
        assert text[runs["train"]] == ["config"]
        config = json.loads(get(f"{url}/data/plugin/text/text", run=runs["train"], tag="config"))
        assert "<td><code>model</code></td>\n<td><code>ensemble</code></td>" in config[0]["text"]  # rendered


def csv_rows(path):
    import csv

    with open(path) as f:
        yield from csv.DictReader(f)


def test_screenshot_of_the_scalars_dashboard(small_run, tmp_path):
    if not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")):
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")
    out = tmp_path / "scalars.png"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "screenshot.py"), os.path.dirname(small_run),
                             str(out), "--width", "1000", "--height", "700"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    shot = np.asarray(Image.open(out).convert("RGB"))
    assert shot.shape == (700, 1000, 3)
    assert tuple(shot[10, 10]) == pytest.approx((245, 124, 0), abs=12)  # TensorBoard's orange header
    assert shot[100:, 300:].std() > 10  # charts drawn, not an empty page


def read_events(directory):
    """tag -> [(step, value)] of one event directory; images as decoded arrays, text as str."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    events = EventAccumulator(str(directory), size_guidance={"tensors": 0})
    events.Reload()
    found = {}
    for tag in events.Tags()["tensors"]:
        for event in events.Tensors(tag):
            value = tensor_util.make_ndarray(event.tensor_proto)
            if value.dtype == object and value.size == 3:  # an image: width, height, PNG bytes
                value = np.asarray(Image.open(io.BytesIO(value[2])).convert("RGB"))
            elif value.dtype == object:
                value = value.item().decode()
            found.setdefault(tag, []).append((event.step, value))
    return found


def test_callback_writes_what_the_model_gets_wrong(small_run, mnist, tmp_path):
    model = load(small_run).model
    x, y = mnist.x_test[:300], mnist.y_test[:300]
    callback = TensorBoardSummaries(tmp_path, x, y, config={"model": "ensemble", "lr": 0.001}, image_every=2)
    callback.set_model(model)
    callback.on_train_begin()
    for epoch in range(3):
        callback.on_epoch_end(epoch)
    callback.on_train_end()

    scaled = x.astype("float32") / 255.0
    members = [m.predict(scaled, verbose=0) for m in model.members]
    for i, p in enumerate(members):
        written = read_events(tmp_path / "validation" / f"member_{i}")["epoch_accuracy"]
        assert [s for s, _ in written] == [0, 1, 2]
        assert all(float(v) == pytest.approx(np.mean(p.argmax(1) == y), abs=1e-6) for _, v in written)

    images = read_events(tmp_path / "validation")
    assert [s for s, _ in images["confusion_matrix"]] == [1, 2]  # every 2nd epoch (index 1), and the end
    probabilities = np.mean(members, axis=0)
    cm = figures.confusion_matrix(y, probabilities.argmax(1))
    accuracy = np.trace(cm) / len(y)
    expected = figures.draw_confusion_matrix(cm, f"validation, epoch 3: accuracy {accuracy:.4f}")
    np.testing.assert_array_equal(images["confusion_matrix"][-1][1], expected)
    np.testing.assert_array_equal(images["misclassified"][-1][1], figures.draw_misclassified(x, y, probabilities))

    text = read_events(tmp_path / "train")["config"]
    assert text == [(0, config_markdown({"model": "ensemble", "lr": 0.001}))]
    assert "| `lr` | `0.001` |" in text[0][1]


def test_a_single_model_gets_images_but_no_member_runs(small_run, mnist, tmp_path):
    member = load(small_run).model.members[0]
    callback = TensorBoardSummaries(tmp_path, mnist.x_test[:100], mnist.y_test[:100])
    callback.set_model(member)
    callback.on_train_begin()
    callback.on_epoch_end(0)  # image_every=0: nothing until the end
    assert not (tmp_path / "validation").exists()
    callback.on_train_end()
    assert sorted(os.listdir(tmp_path)) == ["validation"]  # no config given: no text; no members
    assert [s for s, _ in read_events(tmp_path / "validation")["misclassified"]] == [0]


def first_conv_kernel(model):
    conv = next(layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, ConvBNReLU)))
    return np.asarray((conv.conv if isinstance(conv, ConvBNReLU) else conv).kernel)


def inside_tags(images):
    return sorted(tag for tag in images if tag == "filters" or tag.startswith("feature_maps/"))


def test_a_real_run_shows_the_filters_forming(mnist, tmp_path):
    config = TrainConfig(model="sequential", filters=12, dense_units=16, epochs=2, subset=1000, val_size=100,
                         batch_size=50, image_every=1, precision="float32", logdir=str(tmp_path))
    result = train(config, verbose=0)
    images = read_events(os.path.join(result.run_dir, "validation"))
    stages = [s for s in explain(result.model, np.zeros((28, 28, 1), "float32")).stages if s.kind in ("conv", "pool")]
    assert [s.kind for s in stages] == ["conv", "pool"] * 3
    assert inside_tags(images) == ["feature_maps/00_input"] + [
        f"feature_maps/{i:02d}_{s.name}" for i, s in enumerate(stages, start=1)] + ["filters"]
    for tag in inside_tags(images):
        assert [step for step, _ in images[tag]] == [0, 1], tag  # each epoch, at its scalars' step

    # 12 filters of 3x3, 8 a row: two rows of 24-pixel tiles, 1-pixel gaps; the 4 empty cells are blue.
    (_, before), (_, after) = images["filters"]
    assert after.shape == (2 * 24 + 1, 8 * 24 + 7, 3)
    assert tuple(after[30, 4 * 25 + 5]) == (0x1F, 0x60, 0xB4) and tuple(after[30, 3 * 25 + 5]) != (0x1F, 0x60, 0xB4)
    np.testing.assert_array_equal(after, figures.draw_filters(first_conv_kernel(result.model)))  # as training left it
    assert (before != after).any()  # an epoch of Adam moved the weights: the filters are forming

    # Validation image 0, 28 x 28 enlarged twice, then each stage's first (at most) 16 maps for it, 8 a row,
    # every map about 56 pixels a side (28x28 twice, 14x14 4 times, 7x7 8 times, 4x4 14 times).
    image = split(mnist, config.val_size, config.subset, config.split_seed).x_val[0].astype("float32") / 255.0
    shown = images["feature_maps/00_input"][-1][1]
    np.testing.assert_array_equal(shown, figures.tile_grid(image[None, ..., 0], scale=2))
    explained = {s.name: s for s in explain(result.model, image).stages}
    for tag in inside_tags(images)[1:-1]:
        stage = explained[tag[len("feature_maps/00_"):]]
        channels = min(16, stage.shape[-1])
        picture = images[tag][-1][1]
        assert picture.shape == (-(-channels // 8) * 57 - 1, min(channels, 8) * 57 - 1, 3), tag
        assert np.abs(picture.astype(int) - figures.draw_feature_maps(stage.activations)).max() <= 1, tag


def run_callback(model, x, y, tmp_path, epochs=1):
    """The callback through `epochs` epochs' ends and the end of training, images every epoch."""
    callback = TensorBoardSummaries(tmp_path, x, y, image_every=1)
    callback.set_model(model)
    callback.on_train_begin()
    for epoch in range(epochs):
        callback.on_epoch_end(epoch)
    callback.on_train_end()
    return read_events(tmp_path / "validation")


def test_an_ensemble_shows_member_1(small_run, mnist, tmp_path):
    model = load(small_run).model
    x, y = mnist.x_test[:50], mnist.y_test[:50]
    images = run_callback(model, x, y, tmp_path)
    first, second = (figures.draw_filters(np.asarray(m.convs[0].kernel)) for m in model.members)
    assert first.shape == (2 * 25 - 1, 8 * 25 - 1, 3)  # 16 filters of 3x3: two rows of eight 24-pixel tiles
    (step, filters), = images["filters"]
    assert step == 0 and (first != second).any()
    np.testing.assert_array_equal(filters, first)
    for i, stage in enumerate([s for s in explain(model, x[0] / 255.0, member=1).stages if s.kind in ("conv", "pool")]):
        (_, picture), = images[f"feature_maps/{i + 1:02d}_{stage.name}"]
        assert np.abs(picture.astype(int) - figures.draw_feature_maps(stage.activations)).max() <= 1, stage.name
    assert len(inside_tags(images)) == 1 + 1 + 6  # filters, the input, 3 conv and 3 pooling stages


def test_a_model_without_conv_gets_the_other_images_only(mnist, tmp_path):
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", jit_compile=False)
    x, y = mnist.x_test[:40], mnist.y_test[:40]
    callback = TensorBoardSummaries(tmp_path, x, y, image_every=1)
    model.fit(x / 255.0, y, epochs=2, batch_size=20, verbose=0, callbacks=[callback])  # a real fit: nothing fails
    images = read_events(tmp_path / "validation")
    assert sorted(images) == ["confusion_matrix", "misclassified"]
    assert [step for step, _ in images["misclassified"]] == [0, 1]


def test_a_model_on_raw_pixels_is_explained_on_raw_pixels(mnist, tmp_path):
    model = create_model("sequential", filters=4, dense_units=8, batchnorm=True, rescale=1 / 255)
    # Random weights, batch norm's shift too: a conv stage with no shift draws x and x / 255 alike.
    rng = np.random.default_rng(3)
    noise = [rng.normal(0.0, 0.3, v.shape).astype("float32") for v in model.weights]
    model.set_weights([np.abs(w) if "variance" in v.path else w for v, w in zip(model.weights, noise)])
    x, y = mnist.x_test[:20], mnist.y_test[:20]
    images = run_callback(model, x, y, tmp_path)
    conv = next(layer for layer in model.layers if isinstance(layer, ConvBNReLU))  # batch norm: the kernel is inside
    np.testing.assert_array_equal(images["filters"][0][1], figures.draw_filters(np.asarray(conv.conv.kernel)))
    (_, maps), = images[f"feature_maps/01_{conv.name}"]
    raw, scaled = (explain(model, x[0].astype("float32") / d).stages[0].activations for d in (1.0, 255.0))
    assert np.abs(maps.astype(int) - figures.draw_feature_maps(raw)).max() <= 1
    assert np.abs(maps.astype(int) - figures.draw_feature_maps(scaled)).max() > 10  # what scaling twice would show


@pytest.mark.parametrize("kwargs,message", [
    (dict(image_every=-1), "`image_every` must be an integer >= 0. Received: image_every=-1"),
    (dict(image_every=1.5), "`image_every` must be an integer >= 0. Received: image_every=1.5"),
    (dict(batch_size=0), "`batch_size` must be an integer >= 1. Received: batch_size=0"),
    (dict(y_val=np.zeros(3)), r"same length. Received: len\(x_val\)=5, len\(y_val\)=3"),
    (dict(config="lr=1"), "`config` must be a dict or None. Received: config=str"),
])
def test_callback_arguments_are_validated(tmp_path, kwargs, message):
    args = {"x_val": np.zeros((5, 28, 28, 1), np.uint8), "y_val": np.zeros(5), **kwargs}
    with pytest.raises(ValueError, match=message):
        TensorBoardSummaries(tmp_path, **args)


def test_make_callbacks_adds_the_summaries_given_validation_data(tmp_path):
    config = TrainConfig(image_every=3)
    (tmp_path / "config.json").write_text(json.dumps({**config.to_dict(), "precision": "float32"}))
    validation = (np.zeros((4, 28, 28, 1), np.uint8), np.zeros(4))
    callbacks = make_callbacks(config, str(tmp_path), schedule_callbacks(config), validation=validation)
    summaries = [c for c in callbacks if isinstance(c, TensorBoardSummaries)]
    assert len(summaries) == 1 and summaries[0].image_every == 3 and summaries[0].log_dir == str(tmp_path)
    assert summaries[0].config["precision"] == "float32"  # the resolved config from config.json
    assert not any(isinstance(c, TensorBoardSummaries) for c in make_callbacks(config, str(tmp_path), []))


def test_image_every_flag(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train_main(["--image-every", "-2", "--logdir", str(tmp_path / "logs")])
    assert e.value.code == 2
    assert "argument --image-every: expected an integer >= 0, received '-2'" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()
