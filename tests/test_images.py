"""Your own images (kerascnn/images.py), end to end, on real files the tests write.

MNIST digits as a PNG folder, scikit-learn's 8x8 digits as train/ and
test/ folders, coloured shapes with unicode class names as RGB PNGs, an
`.npz`; and every kind of bad data, each refused with exit status 2, a
message naming the file or folder, and nothing written.
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

import train
import tune
from kerascnn.commands.results import main as results_main
from kerascnn.data import DataError, split
from kerascnn.pipeline import load_dataset
from kerascnn.images import load_images, stratified_test_indices

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SHAPES = ["círculo", "квадрат", "三角形"]  # unicode class names, on purpose


def call(main, argv, capsys):
    """Runs a command's main in this process: (exit status, stdout, stderr)."""
    try:
        status = main(argv)
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def run_dir_of(out):
    return out.strip().splitlines()[-1].split("run_dir=")[1]


def write_digit_folder(root, images, labels):
    """MNIST digits as <root>/<name>/<i>.png, the class folders named in words."""
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = os.path.join(root, DIGIT_NAMES[label])
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(image[..., 0]).save(os.path.join(folder, f"{i}.png"))
    return str(root)


def draw_shape(kind, size, rng):
    """A coloured circle, square or triangle on a coloured background, at a random place and size."""
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(size * 0.35, size * 0.65, 2)
    r = rng.uniform(size * 0.2, size * 0.3)
    if kind == 0:
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
    elif kind == 1:
        mask = (abs(yy - cy) <= r * 0.8) & (abs(xx - cx) <= r * 0.8)
    else:
        mask = (yy - cy + r >= 0) & (yy - cy <= r) & (abs(xx - cx) <= (yy - cy + r) / 2)
    background = rng.integers(0, 90, 3)
    colour = rng.integers(150, 256, 3)
    picture = np.where(mask[..., None], colour, background) + rng.integers(0, 20, (size, size, 3))
    return np.clip(picture, 0, 255).astype(np.uint8)


def write_shapes(root, per_class=100, size=32, seed=0):
    rng = np.random.default_rng(seed)
    for label, name in enumerate(SHAPES):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            Image.fromarray(draw_shape(label, size, rng)).save(os.path.join(root, name, f"{i}.png"))
    return str(root)


# --- MNIST digits as a PNG folder ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digit_run(mnist, tmp_path_factory):
    base = tmp_path_factory.mktemp("digits")
    folder = write_digit_folder(base / "digits", mnist.x_train[:3000], mnist.y_train[:3000])
    held = []
    for i in range(20):  # held-out test digits: never in the folder
        path = str(base / f"held_{i}.png")
        Image.fromarray(mnist.x_test[i, ..., 0]).save(path)
        held.append((path, DIGIT_NAMES[mnist.y_test[i]]))
    return {"folder": folder, "held": held, "logdir": str(base / "logs")}


def test_a_png_folder_trains_sequential_and_predict_prints_class_names(digit_run, capsys):
    status, out, err = call(train.main, ["--dataset", digit_run["folder"], "--model", "sequential", "--epochs", "3",
                                         "--logdir", digit_run["logdir"], "--verbose", "0"], capsys)
    assert status == 0, err
    run_dir = run_dir_of(out)
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert metrics["test_accuracy"] >= 0.85  # 2,160 training pictures, 3 epochs
    data = json.load(open(os.path.join(run_dir, "data.json"), encoding="utf-8"))
    assert data["class_names"] == sorted(DIGIT_NAMES)  # Keras' order: the folder names, sorted
    assert data["image_shape"] == [28, 28, 1] and data["color_mode"] == "grayscale"
    assert data["layout"] == "one folder" and len(data["test_files"]) == 600  # a stratified 20% of each class
    assert metrics["train_images"] == 2160  # 2,400 left, a tenth of them validates
    status, out, err = call(results_main, ["predict", run_dir, *[p for p, _ in digit_run["held"]]], capsys)
    assert status == 0, err
    printed = [line.split(": ")[1].split(" ")[0] for line in out.strip().splitlines()]
    assert set(printed) <= set(DIGIT_NAMES)
    assert np.mean([p == want for p, (_, want) in zip(printed, digit_run["held"])]) >= 0.8


def test_a_png_folder_trains_the_best_recipe(digit_run, tmp_path, capsys):
    status, out, err = call(train.main, ["--dataset", digit_run["folder"], "--model", "best", "--members", "1",
                                         "--epochs", "3", "--logdir", str(tmp_path), "--verbose", "0"], capsys)
    assert status == 0, err
    metrics = json.load(open(os.path.join(run_dir_of(out), "metrics.json")))
    assert metrics["test_accuracy"] >= 0.85  # augmented, batch-normalised: slower to start than sequential


def test_the_carved_test_split_is_stratified_and_seeded():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    test = stratified_test_indices(labels, 0.2, 7)
    assert np.bincount(labels[test]).tolist() == [2, 4, 6, 8]
    assert stratified_test_indices(labels, 0.2, 7).tolist() == test.tolist()
    assert stratified_test_indices(labels, 0.2, 8).tolist() != test.tolist()


# --- scikit-learn's 8x8 digits as train/ and test/ ----------------------------------------------------------------

@pytest.fixture(scope="module")
def sklearn_digits(tmp_path_factory):
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = tmp_path_factory.mktemp("sk") / "digits8"
    for i, (image, label) in enumerate(zip(digits.images, digits.target)):
        part = "test" if i % 5 == 0 else "train"
        folder = root / part / f"digit_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255 / 16).round().astype(np.uint8)).save(folder / f"{i}.png")
    return str(root)


def test_sklearn_8x8_digits_train_end_to_end_and_evaluate_reports_names(sklearn_digits, tmp_path, capsys):
    status, out, err = call(train.main, ["--dataset", sklearn_digits, "--epochs", "8", "--batch-size", "32",
                                         "--logdir", str(tmp_path), "--verbose", "0"], capsys)
    assert status == 0, err
    run_dir = run_dir_of(out)
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert metrics["test_accuracy"] >= 0.85
    assert json.load(open(os.path.join(run_dir, "data.json")))["layout"] == "train/test"
    status, out, err = call(results_main, ["evaluate", run_dir], capsys)
    assert status == 0, err
    assert "(360 images)" in out  # every fifth of the 1,797: the test/ folder
    assert f"test_accuracy={metrics['test_accuracy']:.4f}" in out  # the same test set the run was scored on
    table = out.split("per-class accuracy:")[1]
    for c in range(10):
        assert f"  digit_{c}: " in table


# --- coloured shapes: RGB, unicode class names, export -------------------------------------------------------------

@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("shapes")
    folder = write_shapes(base / "shapes")
    status = train.main(["--dataset", folder, "--epochs", "6", "--batch-size", "20", "--logdir", str(base / "logs"),
                         "--precision", "float32", "--verbose", "0"])
    assert status == 0
    run_dir = os.path.join(base / "logs", os.listdir(base / "logs")[0])
    return {"folder": folder, "run_dir": run_dir, "base": base}


def test_rgb_shapes_train_and_predict_prints_unicode_names(shapes_run, capsys):
    metrics = json.load(open(os.path.join(shapes_run["run_dir"], "metrics.json")))
    assert metrics["test_accuracy"] >= 0.8
    data = json.load(open(os.path.join(shapes_run["run_dir"], "data.json"), encoding="utf-8"))
    assert data["class_names"] == sorted(SHAPES) and data["image_shape"] == [32, 32, 3]
    rng = np.random.default_rng(99)
    paths = []
    for label in range(3):
        path = str(shapes_run["base"] / f"new_{label}.png")
        Image.fromarray(draw_shape(label, 48, rng)).save(path)  # another size: the model resizes it
        paths.append(path)
    status, out, err = call(results_main, ["predict", shapes_run["run_dir"], "--json", *paths], capsys)
    assert status == 0, err
    names = [r["name"] for r in json.loads(out)]
    assert set(names) <= set(SHAPES) and sum(n == s for n, s in zip(names, SHAPES)) >= 2
    (shapes_run["base"] / "broken.png").write_text("not a picture")
    status, out, err = call(results_main, ["predict", shapes_run["run_dir"], paths[0],
                                           str(shapes_run["base"] / "broken.png")], capsys)
    assert status == 1 and out.startswith(f"{paths[0]}: ")  # the good one still classified, by name
    assert "broken.png: error: not an image" in err  # (a missing path is bad usage: tests/test_predict.py)


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_exported_model_matches_keras_on_raw_pixels(shapes_run, fmt, tmp_path, capsys):
    from kerascnn.loading import load

    out = str(tmp_path / f"shapes.{fmt}")
    status, _, err = call(results_main, ["export", shapes_run["run_dir"], "--format", fmt, "--out", out], capsys)
    assert status == 0, err
    rng = np.random.default_rng(5)
    raw = np.stack([draw_shape(k % 3, 32, rng) for k in range(6)]).astype(np.float32)  # 0..255, no scaling
    want = load(shapes_run["run_dir"]).model.predict(raw, verbose=0)
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(out, providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: raw})[0]
    else:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=out)
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, raw.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, raw)
        interpreter.invoke()
        got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_evaluate_refuses_a_folder_whose_classes_differ(shapes_run, tmp_path, capsys):
    other = tmp_path / "other"
    write_shapes(other, per_class=5)
    os.rename(other / SHAPES[0], other / "oval")
    status, _, err = call(results_main, ["evaluate", shapes_run["run_dir"], "--dataset", str(other)], capsys)
    assert status == 2
    assert f"{other}: its classes differ from the model" in err and "missing ['círculo'], extra ['oval']" in err


def test_serve_classifies_uploaded_shapes_by_name_as_predict_does(shapes_run):
    pytest.importorskip("flask")
    import threading

    import requests

    from kerascnn.predict import classify
    from kerascnn.serve import make_server

    rng = np.random.default_rng(7)
    paths = []
    for label in range(3):
        paths.append(str(shapes_run["base"] / f"upload_{label}.png"))
        Image.fromarray(draw_shape(label, 48, rng)).save(paths[-1])  # another size: resized as in training
    server = make_server(shapes_run["run_dir"], "127.0.0.1", 0)  # uploads only: drawing is for digit models
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        answers = []
        for path in paths:
            with open(path, "rb") as f:
                response = requests.post(f"http://127.0.0.1:{server.server_port}/api/predict",
                                         files={"image": (os.path.basename(path), f)}, timeout=30)
            assert response.status_code == 200, response.text
            answers.append(response.json())
    finally:
        server.shutdown()
        server.server_close()
    expected = classify(server.predictor.model, paths, class_names=sorted(SHAPES))  # `python -m kerascnn predict`
    assert [a["names"][a["class"]] for a in answers] == [r["name"] for r in expected]
    assert [a["probability"] for a in answers] == pytest.approx([r["probability"] for r in expected], abs=1e-5)
    assert sum(a["names"][a["class"]] == shape for a, shape in zip(answers, SHAPES)) >= 2


def test_tune_searches_a_folder(shapes_run, tmp_path, capsys):
    status, out, err = call(tune.main, ["--dataset", shapes_run["folder"], "--tuner", "random", "--max-trials", "2",
                                        "--max-epochs", "1", "--val-size", "30", "--precision", "float32",
                                        "--image-size", "24", "--stream", "on", "--directory", str(tmp_path)], capsys)
    assert status == 0, err
    trials = [d for d in os.listdir(tmp_path / "shapes-best") if d.startswith("trial_")]
    assert len(trials) == 2
    best = json.load(open(tmp_path / "shapes-best" / "best_hparams.json"))
    assert best["dataset"] == shapes_run["folder"] and best["model"] == "best"
    assert best["image_size"] == 24 and "color_mode" not in best  # train.py --hparams reads the data as the search did


# --- streaming from disk: the same pictures and batches as in memory, an optional decoded cache ----------------------

@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
    """Three classes of small RGB pictures, a few of another size, some in a nested folder."""
    root = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        os.makedirs(root / name / "sub")
        for i in range(30):
            size = (12, 12) if i % 7 else (15, 10)
            sub = "sub/" if i % 5 == 0 else ""
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / name / f"{sub}{i}.png")
    return str(root)


def _batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_streamed_pictures_are_the_same_pixels_split_and_batches_as_in_memory(mixed_folder):
    import keras

    from kerascnn.images import ImageFiles
    from kerascnn.pipeline import epoch_variable, make_dataset

    memory = load_images(mixed_folder, stream="off", log=lambda note: None)
    disk = load_images(mixed_folder, stream="on", log=lambda note: None)
    assert isinstance(disk.x_train, ImageFiles) and isinstance(memory.x_train, np.ndarray)
    assert disk.x_train.shape == memory.x_train.shape == (72, 12, 12, 3)
    np.testing.assert_array_equal(np.asarray(disk.x_train), memory.x_train)
    # Decoded as Keras' own loader decodes: its float pixels, rounded, in the scan's order.
    keras_ds = keras.utils.image_dataset_from_directory(
        mixed_folder, batch_size=None, image_size=(12, 12), color_mode="rgb", shuffle=False, interpolation="bilinear")
    by_path = dict(zip(keras_ds.file_paths, (np.clip(np.rint(x), 0, 255).astype(np.uint8) for x, _ in keras_ds)))
    np.testing.assert_array_equal(np.stack([by_path[p] for p in disk.x_train.paths]), memory.x_train)
    np.testing.assert_array_equal(np.asarray(disk.x_test), memory.x_test)
    np.testing.assert_array_equal(disk.y_train, memory.y_train)
    assert disk.spec.record["test_files"] == memory.spec.record["test_files"]
    assert disk.spec.record["streamed"] and not memory.spec.record["streamed"]
    epoch = epoch_variable()
    pipelines = [make_dataset(d.x_train, d.y_train, 16, shuffle=True, seed=3, epoch=epoch, scale=False)
                 for d in (memory, disk)]
    first = [_batches(ds) for ds in pipelines]
    epoch.assign(1)
    second = [_batches(ds) for ds in pipelines]
    for a, b in (first, second):  # each epoch, the same batches in the same order
        assert len(a) == len(b) == 5
        for (xa, ya), (xb, yb) in zip(a, b):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(first[1][0][1], second[1][0][1])  # and a new order each epoch


def test_the_decoded_cache_is_written_once_and_replays_each_epochs_order(mixed_folder, tmp_path):
    from kerascnn.pipeline import epoch_variable, make_dataset

    disk = load_images(mixed_folder, stream="on", log=lambda note: None)
    cache = tmp_path / "cache"
    prefix = disk.x_train.cache_file(str(cache))
    open(prefix + ".lockfile", "w").close()  # left by a run stopped in its first pass: cleared
    prefix = disk.x_train.cache_file(str(cache))
    assert not os.path.exists(prefix + ".lockfile")
    epoch = epoch_variable()
    ds = make_dataset(disk.x_train, disk.y_train, 16, shuffle=True, seed=3, epoch=epoch, scale=False, cache=str(cache))
    orders = []
    for value in (0, 1, 0):
        epoch.assign(value)
        orders.append(np.concatenate([x for x, _ in _batches(ds)]).astype(np.uint8))
    assert os.path.exists(prefix + ".index")  # written on the first pass
    os.utime(disk.x_train.paths[0], ns=(0, 0))  # a picture changed: a new cache
    assert disk.x_train.cache_file(str(cache)) != prefix
    np.testing.assert_array_equal(orders[0], orders[2])  # an epoch's order is a function of (seed, epoch)
    assert not np.array_equal(orders[0], orders[1])
    key = lambda images: sorted(map(bytes, images.reshape(len(images), -1)))
    assert key(orders[1]) == key(np.asarray(disk.x_train))  # every picture once, decoded as without a cache


def test_stream_auto_reads_into_memory_unless_the_pictures_would_crowd_it():
    from kerascnn.images import streams_from_disk

    notes = []
    assert not streams_from_disk("auto", 2**20, notes.append) and not notes
    assert streams_from_disk("auto", 2**50, notes.append) and "stream from disk" in notes[0]
    assert streams_from_disk("on", 1, notes.append) and not streams_from_disk("off", 2**50, notes.append)


def test_a_streamed_folder_trains_with_a_cache_and_evaluates(mixed_folder, tmp_path, capsys):
    logdir, cache = str(tmp_path / "logs"), str(tmp_path / "cache")
    status, out, err = call(train.main, ["--dataset", mixed_folder, "--model", "sequential", "--epochs", "2",
                                         "--stream", "on", "--cache-dir", cache, "--logdir", logdir, "--verbose", "0"],
                            capsys)
    assert status == 0, err
    run_dir = run_dir_of(out)
    assert json.load(open(os.path.join(run_dir, "data.json")))["streamed"] is True
    assert any(name.endswith(".index") for name in os.listdir(cache))
    status, out, err = call(results_main, ["evaluate", run_dir], capsys)
    assert status == 0, err
    assert "test (18 images)" in out and "per-class accuracy" in out


def test_stream_takes_only_its_choices(tmp_path, capsys):
    status, _, err = call(train.main, ["--stream", "sometimes", "--logdir", str(tmp_path)], capsys)
    assert status == 2 and "--stream" in err and "sometimes" in err


# --- an .npz -----------------------------------------------------------------------------------------------------

def test_an_npz_of_any_shape_with_class_names(tmp_path):
    rng = np.random.default_rng(0)
    path = str(tmp_path / "mine.npz")
    np.savez(path, x_train=rng.integers(0, 256, (40, 12, 10, 3), dtype=np.uint8), y_train=np.arange(40) % 4,
             x_test=rng.integers(0, 256, (8, 12, 10, 3), dtype=np.uint8), y_test=np.arange(8) % 4,
             class_names=np.array(["a", "b", "c", "d"]))
    data = load_dataset(path, image_size=16, color_mode="grayscale")
    assert data.x_train.shape == (40, 12, 10, 1) and data.spec.class_names == ["a", "b", "c", "d"]
    kwargs = data.spec.model_kwargs()
    assert kwargs["input_shape"] == (12, 10, 1) and kwargs["image_size"] == (16, 16) and kwargs["num_classes"] == 4


# --- sizes, colours and skipped files: converted, with a note -------------------------------------------------------

def test_mixed_sizes_and_grey_rgb_rgba_are_converted_with_notes(tmp_path):
    rng = np.random.default_rng(0)
    for i, (name, mode, size) in enumerate([("a", "L", 20), ("a", "RGB", 20), ("a", "RGB", 20), ("b", "RGBA", 24),
                                            ("b", "RGB", 20), ("b", "RGB", 20)]):  # 3 a class: one per split
        os.makedirs(tmp_path / name, exist_ok=True)
        channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
        pixels = rng.integers(0, 256, (size, size, channels), dtype=np.uint8).squeeze()
        Image.fromarray(pixels, mode).save(tmp_path / name / f"{mode}{i}.png")
    (tmp_path / "a" / "notes.txt").write_text("not a picture")
    notes = []
    data = load_images(str(tmp_path), log=notes.append)
    assert data.x_train.shape[1:] == (20, 20, 3) and data.spec.record["color_mode"] == "rgb"
    text = "\n".join(notes)
    assert "1 of 6 images are not 20x20 and are resized to it" in text
    assert "1 grey images are read as RGB" in text and "1 images have transparency" in text
    assert "1 files without an image extension" in text and "notes.txt" in text


# --- bad data: exit 2, the file or folder named, nothing written ------------------------------------------------------

def _tiny_png(path, value=0):
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)


def _two_classes(root):
    for name in ("a", "b"):
        os.makedirs(root / name, exist_ok=True)
        for i in range(3):
            _tiny_png(root / name / f"{i}.png", 40 * i)
    return root


def _png_claiming(width, height):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + \
        chunk(b"IEND", b"")


def _make_empty(root):
    return root, f"{root} has no class subfolders"


def _make_one_class(root):
    (root / "only").mkdir()
    _tiny_png(root / "only" / "x.png")
    return root, f"{root} has only one class ('only')"


def _make_class_without_images(root):
    _two_classes(root)
    (root / "c").mkdir()
    (root / "c" / "readme.txt").write_text("nothing here")
    return root, f"{root / 'c'}: the class folder 'c' has no images"


def _make_not_an_image(root):
    _two_classes(root)
    (root / "a" / "fake.png").write_text("I am text")
    return root, f"{root / 'a' / 'fake.png'}: not an image, though its name says so"


def _make_truncated(root):
    _two_classes(root)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(noise).save(root / "b" / "1.png")
    data = (root / "b" / "1.png").read_bytes()
    (root / "b" / "1.png").write_bytes(data[: len(data) // 2])  # the header whole, the pixels cut
    return root, f"{root / 'b' / '1.png'}: truncated or corrupt"


def _make_bomb(root):
    _two_classes(root)
    (root / "a" / "bomb.png").write_bytes(_png_claiming(30000, 30000))
    return root, f"{root / 'a' / 'bomb.png'}: too many pixels to decode safely"


def _make_symlink_loop(root):
    _two_classes(root)
    os.symlink(root, root / "a" / "again")
    return root, f"{root / 'a' / 'again'}: a symbolic link loop: it points to {root}"


def _make_self_link(root):
    _two_classes(root)
    os.symlink(root / "b" / "self", root / "b" / "self")
    return root, f"{root / 'b' / 'self'}: a symbolic link loop"


@pytest.mark.parametrize("make", [_make_empty, _make_one_class, _make_class_without_images, _make_not_an_image,
                                  _make_truncated, _make_bomb, _make_symlink_loop, _make_self_link])
def test_bad_data_exits_2_naming_it_and_writes_nothing(make, tmp_path, capsys):
    root = tmp_path / "data"
    root.mkdir()
    root, message = make(root)
    logdir = tmp_path / "logs"
    before = sorted(p.name for p in root.rglob("*") if not p.is_symlink())
    status, _, err = call(train.main, ["--dataset", str(root), "--epochs", "1", "--logdir", str(logdir)], capsys)
    assert status == 2 and message in err, err
    assert not logdir.exists()  # nothing written
    assert sorted(p.name for p in root.rglob("*") if not p.is_symlink()) == before  # nothing lost


def test_unicode_class_names_are_read(tmp_path):
    for name in ("猫", "Hund", "éclair"):
        (tmp_path / name).mkdir()
        for i in range(3):
            _tiny_png(tmp_path / name / f"{i}.png", 50 * i)
    data = load_images(str(tmp_path))
    assert data.spec.class_names == sorted(["猫", "Hund", "éclair"])


def test_a_missing_npz_is_refused_at_the_flag(tmp_path, capsys):
    status, _, err = call(train.main, ["--dataset", str(tmp_path / "none.npz")], capsys)
    assert status == 2 and "no such file" in err
    with pytest.raises(DataError, match="must hold uint8 pixels"):
        path = str(tmp_path / "f.npz")
        np.savez(path, x_train=np.zeros((4, 8, 8)), y_train=np.arange(4) % 2, x_test=np.zeros((2, 8, 8)),
                 y_test=np.arange(2))
        load_dataset(path)


# --- layouts people use: split folders by any common name, junk skipped, one spelling of a class -------------------

def _pictures(folder, classes, count=4):
    """`count` tiny PNGs per class under folder/<class>/ (count: an int or a {class: int})."""
    for name in classes:
        os.makedirs(os.path.join(folder, name), exist_ok=True)
        for i in range(count if isinstance(count, int) else count[name]):
            _tiny_png(os.path.join(folder, name, f"{i}.png"), (17 * i) % 256)


@pytest.mark.parametrize("folders, given_val, layout", [
    (("train", "val"), True, "train/val"), (("Train", "Test"), False, "Train/Test"),
    (("training", "testing"), False, "training/testing"), (("train", "valid", "test"), True, "train/valid/test"),
    (("TRAIN", "Validation", "Testing"), True, "TRAIN/Validation/Testing"), (("train", "dev"), True, "train/dev"),
])
def test_split_folders_are_recognised_by_any_common_name_and_case(folders, given_val, layout, tmp_path):
    for folder in folders:
        _pictures(str(tmp_path / folder), ["cat", "dog"], 5)
    data = load_images(str(tmp_path), log=lambda _: None)
    assert data.spec.class_names == ["cat", "dog"]  # never the split folders
    assert data.spec.record["layout"] == layout
    splits = split(data, seed=1)
    if given_val:  # the validation folder IS the validation set
        assert len(splits.y_val) == 10 and np.array_equal(splits.x_val, data.x_val)
    for part in (splits.y_train, splits.y_val, splits.y_test):
        assert np.bincount(part, minlength=2).min() >= 1


def test_a_run_on_train_valid_test_validates_on_valid_and_reports_each_class(tmp_path, capsys):
    for folder, count in (("train", 6), ("valid", 2), ("test", 3)):
        _pictures(str(tmp_path / "data" / folder), ["cat", "dog"], count)
    status, out, err = call(train.main, ["--dataset", str(tmp_path / "data"), "--model", "sequential", "--epochs", "1",
                                         "--logdir", str(tmp_path / "logs"), "--verbose", "1"], capsys)
    assert status == 0, err
    assert "images: 12 train, 4 validation, 6 test" in out
    metrics = json.load(open(os.path.join(run_dir_of(out), "metrics.json")))
    assert list(metrics["per_class_accuracy"]) == ["cat", "dog"]
    assert all(v["images"] == 3 for v in metrics["per_class_accuracy"].values())
    assert "  cat: " in out and " of 3" in out


@pytest.mark.parametrize("folders, found", [
    (("val", "test"), "no training folder"),
    (("train", "test", "cats"), "other folders beside them: ['cats']"),
    (("train", "Training", "test"), "2 train folders"),
])
def test_split_folders_that_make_no_layout_exit_2_saying_what_was_found(folders, found, tmp_path, capsys):
    for folder in folders:
        _pictures(str(tmp_path / "data" / folder), ["cat", "dog"], 3)
    status, _, err = call(train.main, ["--dataset", str(tmp_path / "data"), "--epochs", "1",
                                       "--logdir", str(tmp_path / "logs")], capsys)
    assert status == 2 and "look like split folders but make no layout" in err and found in err, err
    assert "Received: folders=" in err and not (tmp_path / "logs").exists()


def test_hidden_files_and_macos_metadata_are_skipped_with_one_note(tmp_path):
    _pictures(str(tmp_path), ["a", "b"], 3)
    (tmp_path / "a" / "._0.png").write_bytes(b"\x00\x05\x16\x07 resource fork")  # AppleDouble, not a PNG
    (tmp_path / ".DS_Store").write_bytes(b"Bud1")
    (tmp_path / "a" / ".DS_Store").write_bytes(b"Bud1")
    _pictures(str(tmp_path / ".thumbnails"), ["x"], 1)  # would become a class
    _pictures(str(tmp_path / "b" / ".cache"), ["y"], 1)
    (tmp_path / "__MACOSX" / "a").mkdir(parents=True)
    (tmp_path / "__MACOSX" / "a" / "._1.png").write_bytes(b"\x00\x05\x16\x07")
    notes = []
    data = load_images(str(tmp_path), log=notes.append)
    assert data.spec.class_names == ["a", "b"] and len(data.y_train) + len(data.y_test) == 6
    hidden = [n for n in notes if "hidden" in n]
    assert len(hidden) == 1 and hidden[0].startswith("note: 6 hidden files and folders and macOS metadata"), notes


def test_nfc_and_nfd_spellings_of_a_class_are_one_class(tmp_path):
    import unicodedata

    nfc, nfd = unicodedata.normalize("NFC", "chat_é"), unicodedata.normalize("NFD", "chat_é")
    _pictures(str(tmp_path / "train"), [nfc, "chien"], 4)
    _pictures(str(tmp_path / "test"), [nfd, "chien"], 2)  # as a macOS zip stores it
    data = load_images(str(tmp_path), log=lambda _: None)
    assert data.spec.class_names == ["chat_é", "chien"] and data.spec.class_names[0] == nfc
    assert np.bincount(data.y_test).tolist() == [2, 2]


# --- every class in every split ------------------------------------------------------------------------------------

def test_a_class_too_small_for_every_split_exits_2_naming_it(tmp_path, capsys):
    _pictures(str(tmp_path / "data"), ["big", "small"], {"big": 20, "small": 2})
    status, _, err = call(train.main, ["--dataset", str(tmp_path / "data"), "--epochs", "1", "--split-seed", "54",
                                       "--logdir", str(tmp_path / "logs")], capsys)
    assert status == 2 and "'small' (2)" in err and "at least 3" in err, err
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("seed", [54, 0, 1, 2, 3])
def test_three_pictures_put_a_class_in_every_split_and_validation_is_stratified(seed, tmp_path):
    _pictures(str(tmp_path), ["big", "small"], {"big": 40, "small": 3})
    splits = split(load_images(str(tmp_path), seed=seed, log=lambda _: None), seed=seed)
    assert [np.bincount(y, minlength=2)[1] for y in (splits.y_train, splits.y_val, splits.y_test)] == [1, 1, 1]
    again = split(load_images(str(tmp_path), seed=seed, log=lambda _: None), seed=seed)
    assert np.array_equal(splits.y_val, again.y_val) and np.array_equal(splits.x_val, again.x_val)  # seeded
    assert splits.spec.record["class_counts"]["validation"] == np.bincount(splits.y_val).tolist()


def test_built_in_validation_split_is_the_plain_seeded_sample_as_before(mnist):
    s = split(mnist, val_size=5000, seed=777)
    order = np.random.default_rng(777).permutation(len(mnist.y_train))
    assert np.array_equal(s.y_val, mnist.y_train[np.sort(order[:5000])])  # the numbers measured stay comparable


def test_a_run_on_imbalanced_classes_warns_at_the_start_and_scores_each_class(tmp_path, capsys):
    _pictures(str(tmp_path / "data"), ["many", "few"], {"many": 66, "few": 4})
    status, out, err = call(train.main, ["--dataset", str(tmp_path / "data"), "--model", "sequential", "--epochs",
                                         "1", "--logdir", str(tmp_path / "logs"), "--verbose", "1"], capsys)
    assert status == 0, err
    assert "warning: the classes are imbalanced 16 to 1 ('many': 66 pictures, 'few': 4)" in out
    metrics = json.load(open(os.path.join(run_dir_of(out), "metrics.json")))
    assert metrics["per_class_accuracy"]["few"]["images"] == 1 and "  few: " in out


# --- npz faults: exit 2 with what was received, before any run directory -------------------------------------------

def _npz_fault(kind):
    x = np.zeros((6, 8, 8), np.uint8)
    y = np.arange(6) % 3
    arrays = {"x_train": x, "y_train": y, "x_test": x[:3], "y_test": y[:3]}
    if kind == "string labels":
        arrays.update(y_train=np.array(["a", "b", "c"] * 2), y_test=np.array(["a", "b", "c"]))
    elif kind == "one-hot":
        arrays.update(y_train=np.eye(3, dtype=np.float32)[y], y_test=np.eye(3, dtype=np.float32)[y[:3]])
    elif kind == "length mismatch":
        arrays.update(y_train=y[:5])
    elif kind == "labels from 1":
        arrays.update(y_train=y + 1, y_test=y[:3] + 1)
    elif kind == "class_names too short":
        arrays.update(class_names=np.array(["a", "b"]))
    return arrays


@pytest.mark.parametrize("kind, message", [
    ("string labels", "must hold integer class numbers (names go in `class_names`"),
    ("one-hot", "looks one-hot"),
    ("length mismatch", "len(x_train)=6, len(y_train)=5"),
    ("labels from 1", "the labels skip class 0: no image has it (labels that start at 1?"),
    ("class_names too short", "`class_names` must name each class, 0..2"),
])
def test_npz_faults_exit_2_with_what_was_received_before_any_run_directory(kind, message, tmp_path, capsys):
    path = str(tmp_path / "mine.npz")
    np.savez(path, **_npz_fault(kind))
    status, _, err = call(train.main, ["--dataset", path, "--epochs", "1", "--logdir", str(tmp_path / "logs")], capsys)
    assert status == 2 and message in err and "Received:" in err, err
    assert not (tmp_path / "logs").exists()
