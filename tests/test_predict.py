"""`python -m kerascnn predict`: people's own pictures, prepared as the model's dataset, and every way a file can be bad.

Pictures are made from real MNIST test digits drawn the way people's
pictures look (dark ink on off-white paper, photographed as JPEG; chalk on a
board; a transparent PNG; a 16-bit scan; a 12-megapixel photo), so the
preparation can be checked against the digit MNIST itself holds. A model
trained on real Fashion-MNIST (Debian's dataset-fashion-mnist) gets the
dataset's own test pictures back, pixel for pixel; a 32x32x3 model (CIFAR-10's
shape; no copy of CIFAR-10 here) keeps a picture's colours.
"""

import json
import os
import re
import shutil
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from kerascnn.commands.results import main
from kerascnn.data import DATASETS, PREPARATIONS
from kerascnn.loading import load
from kerascnn.predict import (ImageError, classify, load_digit, prepare, prepare_bytes, preparation, read_grey,
                              to_mnist)

DIGITS = range(10)  # the first ten MNIST test images: 7 2 1 0 4 1 4 9 5 9


def ink(digit, size):
    """The 28x28 uint8 digit scaled up smoothly to `size` px: ink strength in [0, 1]."""
    return np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC), np.float64) / 255.0


def paper_photo(digit, path, seed=0):
    """Dark ink on off-white paper with a lighting gradient and noise, off-centre, colour JPEG."""
    rng = np.random.default_rng(seed)
    page = 0.85 + rng.normal(0, 0.02, (400, 300)) + np.linspace(0, 0.1, 300)[None]
    page[60 + 3 * seed : 284 + 3 * seed, 30 + 4 * seed : 254 + 4 * seed] -= 0.75 * ink(digit, 224)
    rgb = np.stack([page, page * 0.97, page * 0.9], axis=-1)
    Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(path, quality=85)
    return path


def chalkboard(digit, path):
    """Light ink on a dark board, grey PNG, a wide picture."""
    board = np.full((200, 500), 0.15)
    board[20:180, 250:410] += 0.8 * ink(digit, 160)
    Image.fromarray((np.clip(board, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


def transparent(digit, path):
    """Black ink on a transparent sheet: RGBA PNG whose transparent pixels are (0, 0, 0, 0)."""
    alpha = (ink(digit, 140) * 255).astype(np.uint8)
    rgba = np.zeros((140, 140, 4), np.uint8)
    rgba[..., 3] = alpha
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def scan16(digit, path):
    """A 16-bit grey scan: dark ink on white."""
    page = 65535 * (1 - 0.9 * ink(digit, 112))
    Image.fromarray(page.astype(np.uint16)).save(path)
    return path


def large_photo(digit, path):
    """A 4000x3000 photo (12 megapixels) with a small digit in one corner."""
    image = Image.new("L", (4000, 3000), 230)
    patch = Image.fromarray((230 - 200 * ink(digit, 600)).astype(np.uint8))
    image.paste(patch, (2900, 300))
    image.convert("RGB").save(path, quality=90)
    return path


STYLES = {"paper.jpg": paper_photo, "chalk.png": chalkboard, "rgba.png": transparent,
          "scan16.png": scan16, "large.jpg": large_photo}


def correlation(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@pytest.mark.parametrize("style", sorted(STYLES))
def test_preparation_recovers_the_mnist_digit(mnist, tmp_path, style):
    for i in (0, 1, 3):  # a 7, a 2 and a 0
        digit = mnist.x_test[i, :, :, 0]
        path = STYLES[style](digit, str(tmp_path / f"{i}-{style}"))
        prepared = load_digit(path)
        assert prepared.shape == (28, 28, 1) and prepared.dtype == np.float32
        assert prepared.min() >= 0 and prepared.max() == pytest.approx(1, abs=0.02)
        assert correlation(prepared, digit) > 0.9, (style, i)


@pytest.mark.parametrize("shape", [(300, 40), (40, 300), (90, 90)])
def test_longer_side_is_20_and_centre_of_mass_at_14(shape):
    page = np.ones((400, 400))
    page[50 : 50 + shape[0], 20 : 20 + shape[1]] = 0.0  # a dark bar on white, far from the centre
    digit = to_mnist(page)[..., 0]
    rows, cols = np.nonzero(digit > 0.5)
    assert max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == 20
    centre = [np.average(idx, weights=digit[rows, cols]) for idx in (rows, cols)]
    assert centre == pytest.approx([14, 14], abs=0.6)


def test_uniform_picture_is_blank():
    with pytest.raises(ImageError, match=r"blank: no ink found"):
        to_mnist(np.full((50, 50), 0.93))
    with pytest.raises(ImageError, match=r"blank"):
        to_mnist(0.9 + 0.02 * np.random.default_rng(0).random((50, 50)))  # paper grain is not ink


@pytest.fixture(scope="module")
def model(small_run):
    return load(small_run).model


@pytest.fixture
def photos(mnist, tmp_path):
    return [paper_photo(mnist.x_test[i, :, :, 0], str(tmp_path / f"photo{i}.jpg"), seed=i) for i in DIGITS]


def test_predict_prints_one_line_per_picture(small_run, mnist, photos, capsys):
    assert main(["predict", small_run, *photos]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(photos)
    pattern = re.compile(r"^(.+): (\d) \(probability (0\.\d{4}|1\.0000)\); runner-up (\d) \((0\.\d{4})\)$")
    predicted = []
    for path, line in zip(photos, lines):
        match = pattern.match(line)
        assert match and match.group(1) == path, line
        assert match.group(2) != match.group(4) and float(match.group(3)) >= float(match.group(5))
        predicted.append(int(match.group(2)))
    assert np.mean(np.array(predicted) == mnist.y_test[: len(photos)]) >= 0.8  # the model scores ~93%


def test_predict_json_matches_the_model(small_run, model, photos, capsys):
    assert main(["predict", small_run, "--json", *photos[:4]]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in results] == photos[:4]
    probabilities = model.predict(np.stack([load_digit(p) for p in photos[:4]]), verbose=0)
    for r, p in zip(results, probabilities):
        assert set(r) == {"file", "class", "name", "probability", "runner_up"}
        assert r["name"] == str(r["class"])  # a digit model's class names are its digits
        assert r["class"] == int(np.argmax(p)) and r["probability"] == pytest.approx(float(p.max()), abs=1e-6)
        assert r["runner_up"]["class"] == int(np.argsort(p)[-2])
        assert r["runner_up"]["probability"] == pytest.approx(float(np.sort(p)[-2]), abs=1e-6)


def png_claiming(width, height):
    """A PNG header for a width x height image, with no pixel data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")


@pytest.fixture
def bad_pictures(tmp_path):
    """name -> (path, the message its line must carry)."""
    def write(name, content):
        (tmp_path / name).write_bytes(content)
        return str(tmp_path / name)

    Image.new("L", (1, 1), 0).save(tmp_path / "pixel.png")
    Image.new("RGB", (300, 200), (245, 245, 240)).save(tmp_path / "blank.jpg")
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    Image.new("L", (200, 200), 255).save(tmp_path / "full.png")
    full = (tmp_path / "full.png").read_bytes()
    return {
        "missing": (str(tmp_path / "missing.png"), "no such file"),
        "empty": (write("empty.png", b""), "the file is empty (0 bytes)"),
        "text": (write("notes.jpg", b"this is not a picture\n"), "not an image (a PNG or JPEG was expected)"),
        "truncated": (write("truncated.png", full[: len(full) // 2]), "truncated or corrupt"),
        "bomb": (write("huge.png", png_claiming(20000, 20000)), "too large to open safely"),
        "1x1": (str(tmp_path / "pixel.png"), "blank: no ink found"),
        "blank": (str(tmp_path / "blank.jpg"), "blank: no ink found"),
        "transparent": (str(tmp_path / "clear.png"), "blank: no ink found"),
        "directory": (str(tmp_path), "is a directory, not an image"),
    }


def test_bad_pictures_get_their_own_line_and_the_rest_are_classified(small_run, photos, bad_pictures, capsys):
    there = {kind: case for kind, case in bad_pictures.items() if kind != "missing"}  # missing: bad usage, below
    bad = [path for path, _ in there.values()]
    argv = ["predict", small_run, photos[0], *bad, photos[1]]
    assert main(argv) == 1
    captured = capsys.readouterr()
    good_lines = captured.out.splitlines()
    assert [l.split(":")[0] for l in good_lines] == [photos[0], photos[1]]
    errors = captured.err.splitlines()
    for path, message in there.values():
        line = next(l for l in errors if l.startswith(f"{path}: error: "))
        assert message in line, line
    assert errors[-1] == f"python -m kerascnn predict: {len(bad)} of {len(bad) + 2} pictures could not be classified."


@pytest.mark.parametrize("command", ["predict", "explain"])
def test_a_missing_picture_is_bad_usage_named_before_anything_runs(small_run, photos, tmp_path, capsys, command):
    missing = str(tmp_path / "no-such-seven.png")
    pictures = [photos[0], missing] if command == "predict" else [missing]
    with pytest.raises(SystemExit) as exit:
        main([command, small_run, *pictures])
    assert exit.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing classified, no page drawn (explain prints the PNG's path)
    assert f"python -m kerascnn {command}: error: no such picture file: {missing}." in captured.err


def test_bad_pictures_in_json(small_run, photos, bad_pictures, capsys):
    path, _ = bad_pictures["text"]
    assert main(["predict", small_run, "--json", path, photos[2]]) == 1
    results = json.loads(capsys.readouterr().out)
    assert results[0] == {"file": path, "error": "not an image (a PNG or JPEG was expected)."}
    assert results[1]["file"] == photos[2] and set(results[1]) == {"file", "class", "name", "probability", "runner_up"}


def test_classify_keeps_the_order_of_the_files(model, photos, bad_pictures):
    paths = [bad_pictures["missing"][0], photos[3], bad_pictures["blank"][0], photos[4]]
    results = classify(model, paths)
    assert [r["file"] for r in results] == paths
    assert ["error" in r for r in results] == [True, False, True, False]


def test_grey_reading_of_colour_and_alpha(tmp_path):
    Image.new("RGB", (4, 4), (255, 0, 0)).save(tmp_path / "red.png")
    assert read_grey(tmp_path / "red.png") == pytest.approx(np.full((4, 4), 76 / 255), abs=1 / 255)  # ITU-R 601 luma
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[1:3, 1:3] = (255, 255, 255, 255)  # white ink on a transparent sheet: put on black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "white_on_clear.png")
    grey = read_grey(tmp_path / "white_on_clear.png")
    assert grey[0, 0] == 0 and grey[1, 1] == 1


# --- the preparation follows the dataset the model was trained on ----------------------------------------------------

FASHION_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_dataset_names_how_its_pictures_are_prepared(name):
    from kerascnn.models import create_model

    assert DATASETS[name]["prepare"] in PREPARATIONS  # a dataset added without it fails here
    model = create_model("sequential", input_shape=DATASETS[name]["shape"], num_classes=len(DATASETS[name]["classes"]))
    assert preparation(model, name) == DATASETS[name]["prepare"]


def test_unknown_dataset_names_the_built_in_ones():
    from kerascnn.models import create_model

    with pytest.raises(ValueError, match=r"one of \['cifar10', 'fashion_mnist', 'mnist'\].*Received: dataset='svhn'"):
        preparation(create_model("sequential"), "svhn")


@pytest.fixture(scope="module")
def fashion():
    from kerascnn.data import load_dataset

    if not os.path.isdir(FASHION_DIR):
        pytest.skip(f"needs Debian's dataset-fashion-mnist ({FASHION_DIR})")
    return load_dataset("fashion_mnist", FASHION_DIR, download=False)


@pytest.fixture(scope="module")
def fashion_run(fashion, tmp_path_factory):
    """A run directory of a small model trained one epoch on 2,000 real Fashion-MNIST images (a few seconds)."""
    import keras

    from kerascnn.config import TrainConfig
    from kerascnn.training import train

    config = TrainConfig(model="sequential", dataset="fashion_mnist", data_dir=FASHION_DIR, filters=8,
                         dense_units=32, epochs=1, subset=2000, val_size=200, precision="float32",
                         logdir=str(tmp_path_factory.mktemp("fashion_logs")))
    try:
        return train(config, verbose=0).run_dir
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def test_a_fashion_picture_is_prepared_to_the_datasets_own_pixels(fashion, fashion_run, tmp_path, capsys):
    loaded = load(fashion_run)
    assert loaded.dataset == "fashion_mnist" and loaded.class_names == list(DATASETS["fashion_mnist"]["classes"])
    pictures = []
    for i in range(8):
        pictures.append(str(tmp_path / f"item{i}.png"))
        Image.fromarray(fashion.x_test[i, :, :, 0]).save(pictures[-1])
    expected = fashion.x_test[:8].astype(np.float32) / 255.0
    prepared = np.stack([prepare(p, loaded.model, loaded.dataset) for p in pictures])
    assert prepared.shape == (8, 28, 28, 1)
    assert np.abs(prepared - expected).max() <= 1 / 255  # neither boxed nor centred: the frame as it is
    assert np.abs(to_mnist(expected[0, :, :, 0]) - expected[0]).max() > 0.5  # which MNIST-style framing would change

    assert main(["predict", fashion_run, "--json", *pictures]) == 0
    results = json.loads(capsys.readouterr().out)
    probabilities = loaded.model.predict(expected, verbose=0)
    for r, p in zip(results, probabilities):
        assert r["name"] == DATASETS["fashion_mnist"]["classes"][r["class"]]  # "Ankle boot", not "9"
        assert r["class"] == int(np.argmax(p)) and r["probability"] == pytest.approx(float(p.max()), abs=1e-4)
    assert main(["predict", fashion_run, pictures[0]]) == 0
    assert re.match(rf"^{re.escape(pictures[0])}: [A-Z][a-z/ -]+ \(probability", capsys.readouterr().out)


def test_a_photo_of_a_garment_on_a_light_background_is_inverted_not_boxed(fashion, fashion_run, tmp_path):
    item = fashion.x_test[0, :, :, 0]  # an ankle boot, light on black
    big = np.asarray(Image.fromarray(item).resize((140, 140), Image.Resampling.BICUBIC), np.float64) / 255.0
    photo = 0.94 - 0.85 * big  # dark on off-white paper, in colour, as a photo is
    rgb = np.stack([photo, photo * 0.98, photo * 0.95], axis=-1)
    Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(tmp_path / "boot.png")
    loaded = load(fashion_run)
    prepared = prepare(tmp_path / "boot.png", loaded.model, loaded.dataset)
    assert prepared.shape == (28, 28, 1)
    assert np.median(np.concatenate([prepared[0], prepared[-1]])) < 0.02  # the background is black, as the dataset's
    assert correlation(prepared, item) > 0.97  # the boot where the dataset has it, at its size


def test_a_colour_picture_for_a_32x32x3_model_stays_colour_and_is_resized(tmp_path, capsys):
    from kerascnn.models import create_model

    model = create_model("sequential", input_shape=(32, 32, 3), num_classes=10, filters=4, dense_units=8)
    run = tmp_path / "cifar-run"
    run.mkdir()
    model.save(run / "best.keras")
    picture = np.zeros((96, 64, 3), np.uint8)
    picture[:, :32] = (230, 20, 20)  # red on the left, blue on the right, a light border all round
    picture[:, 32:] = (20, 20, 230)
    picture[:4], picture[-4:] = 250, 250
    Image.fromarray(picture).save(tmp_path / "colour.png")

    alone = load(run / "best.keras")  # a .keras file alone: its dataset unknown, its input 32x32x3
    assert alone.dataset is None and preparation(alone.model) == "whole"
    (run / "config.json").write_text(json.dumps({"dataset": "cifar10"}))
    loaded = load(run)
    assert loaded.dataset == "cifar10" and loaded.class_names == list(DATASETS["cifar10"]["classes"])
    for dataset in (None, "cifar10"):
        prepared = prepare(tmp_path / "colour.png", model, dataset)
        assert prepared.shape == (32, 32, 3) and prepared.dtype == np.float32
        assert prepared[16, 4] == pytest.approx([230 / 255, 20 / 255, 20 / 255], abs=1 / 255)  # colour, not grey,
        assert prepared[16, 28] == pytest.approx([20 / 255, 20 / 255, 230 / 255], abs=1 / 255)  # and not inverted
        assert prepared[0, 16] == pytest.approx([250 / 255] * 3, abs=2 / 255)  # the whole frame: no crop

    assert main(["predict", str(run), str(tmp_path / "colour.png")]) == 0
    name = capsys.readouterr().out.split(": ", 1)[1].split(" (")[0]
    assert name in DATASETS["cifar10"]["classes"]


def test_a_digit_model_alone_is_still_prepared_mnist_style(small_run, photos, tmp_path):
    assert load(small_run).dataset == "mnist"
    shutil.copy(os.path.join(small_run, "best.keras"), tmp_path / "digits.keras")
    alone = load(tmp_path / "digits.keras")  # no data.json, no config.json: a 28x28x1 input is a digit model's
    assert alone.dataset is None and preparation(alone.model) == "digit"
    assert np.array_equal(prepare(photos[0], alone.model), load_digit(photos[0]))


def test_the_page_prepares_as_predict_does(fashion, fashion_run, photos, small_run, tmp_path):
    from kerascnn.serve import Predictor

    Image.fromarray(fashion.x_test[1, :, :, 0]).save(tmp_path / "pullover.png")
    for run, picture in ((fashion_run, str(tmp_path / "pullover.png")), (small_run, photos[0])):
        loaded = load(run)
        predictor = Predictor(loaded.model, loaded.class_names, loaded.dataset)
        assert predictor.digits == (loaded.dataset == "mnist")
        with open(picture, "rb") as f:
            data = f.read()
        assert np.array_equal(predictor.prepare(data), prepare(picture, loaded.model, loaded.dataset))
    answer = predictor.predict(prepare_bytes(data, loaded.model, loaded.dataset))
    assert len(answer["image"]) == 28


def test_a_bad_picture_for_a_fashion_model_is_its_own_error(fashion, fashion_run, tmp_path, capsys):
    (tmp_path / "notes.png").write_bytes(b"this is not a picture\n")
    Image.fromarray(fashion.x_test[2, :, :, 0]).save(tmp_path / "trouser.png")
    assert main(["predict", fashion_run, str(tmp_path / "notes.png"), str(tmp_path / "trouser.png")]) == 1
    captured = capsys.readouterr()
    # training's decoder says it (kerascnn.images.decode), as for a model trained on your own images
    assert f"{tmp_path / 'notes.png'}: error: not an image, though its name says so" in captured.err
    assert captured.out.startswith(f"{tmp_path / 'trouser.png'}: ")
