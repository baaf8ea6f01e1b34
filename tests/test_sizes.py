"""Sizes that fit the machine: the working-size cap, global pooling for your own images, the memory check.

A folder of 400x300 photos used to build a 62.4M-parameter model at 400x300;
now it works at 128x96 with a note, its model pools globally (a parameter
count that does not depend on the picture's size), and a run that cannot fit
the memory is refused with exit status 2 before anything is written.
MNIST's lecture models stay exactly as they were.
"""

import os

import numpy as np
import pytest
from PIL import Image

import train
from kerascnn.assemble import model_data_kwargs
from kerascnn.data import DataSpec, dataset_spec
from kerascnn.images import load_images
from kerascnn.loading import load_model_file
from kerascnn.memory import OutOfMemory, check_fits, estimate_bytes
from kerascnn.models import LectureCNN, create_model, list_models


def _photo_folder(root, width, height, per_class=10):
    rng = np.random.default_rng(0)
    for c, name in enumerate(["cat", "dog"]):
        os.makedirs(root / name)
        for i in range(per_class):
            base = np.full((height, width, 3), 60 + 120 * c, np.uint8)
            base[: height // 2] = rng.integers(0, 256, 3, dtype=np.uint8)
            Image.fromarray(base).save(root / name / f"{i}.png")
    return str(root)


def _small(name):
    return {"members": 2} if name in ("best", "ensemble") else {}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    notes = []
    data = load_images(_photo_folder(tmp_path_factory.mktemp("photos"), 400, 300), log=notes.append)
    return data, notes


def test_a_400x300_folder_is_worked_at_128x96_with_a_note(photos):
    data, notes = photos
    assert data.x_train.shape[1:] == (96, 128, 3) and data.spec.model_kwargs()["image_size"] == (96, 128)
    note = [n for n in notes if "400x300" in n]
    assert len(note) == 1 and "128x96" in note[0] and "--image-size" in note[0], notes
    assert not any("are not" in n for n in notes)  # every picture is the common size: no "resized" count


def test_small_pictures_keep_their_size_and_the_flag_wins(tmp_path):
    notes = []
    small = load_images(_photo_folder(tmp_path / "small", 40, 30, per_class=3), log=notes.append)
    assert small.x_train.shape[1:3] == (30, 40) and not any("--image-size" in n for n in notes)
    flagged = load_images(_photo_folder(tmp_path / "big", 400, 300, per_class=3), image_size=64, log=notes.append)
    assert flagged.x_train.shape[1:3] == (64, 64)


@pytest.mark.parametrize("name", list_models())
def test_a_400x300_folder_model_is_small_and_does_not_grow_with_the_picture(photos, name):
    data, _ = photos
    spec = data.spec
    counts = {}
    # The default (128x96) and other sizes of as many stages (4: 64 to 127 px on the shorter side), then
    # --image-size at the photo's size (5 stages, the most: kerascnn.basics.stage_count).
    for size in (None, (64, 80), (100, 120), (300, 400)):
        sized = DataSpec(spec.class_names, spec.image_shape, raw_pixels=True, image_size=size)
        counts[size] = create_model(name, **model_data_kwargs(name, sized), **_small(name)).count_params()
    assert counts[None] == counts[(64, 80)] == counts[(100, 120)], counts  # the picture's size adds nothing
    assert counts[(300, 400)] < 1_200_000 * _small(name).get("members", 1), counts  # was 62.4M for sequential


def test_an_own_image_model_saves_its_global_pool_and_old_files_load(tmp_path):
    spec = DataSpec(["a", "b", "c"], (300, 400, 3), raw_pixels=True, image_size=(96, 128))
    model = create_model("subclass", **spec.model_kwargs())
    assert model.get_config()["global_pool"] is True
    path = str(tmp_path / "own.keras")
    model.save(path)
    loaded = load_model_file(path)
    assert loaded.count_params() == model.count_params()
    x = np.random.default_rng(0).integers(0, 256, (2, 300, 400, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    # A file saved before the argument existed has no `global_pool` in its config: the lecture's flatten.
    old = {k: v for k, v in create_model("subclass").get_config().items() if k != "global_pool"}
    rebuilt = LectureCNN.from_config(old)
    rebuilt.build((None, 28, 28, 1))
    assert rebuilt.count_params() == 619786


@pytest.mark.parametrize("name", ["sequential", "functional", "subclass"])
def test_mnist_lecture_models_are_unchanged(name):
    assert dataset_spec().model_kwargs() == {}  # MNIST's models are built with the builders' defaults
    assert create_model(name).count_params() == 619786
    assert create_model(name, global_pool=False).count_params() == 619786
    assert create_model(name, global_pool=True).count_params() == 128266


def test_the_estimate_refuses_what_does_not_fit():
    needed = estimate_bytes(126786, (4096, 4096), 3, 100)
    assert needed > 100 * 2**30 and estimate_bytes(619786, (28, 28), 1, 100) < 100 * 2**20
    assert estimate_bytes(10**6, (28, 28), 1, 100, ema=True) > estimate_bytes(10**6, (28, 28), 1, 100)
    with pytest.raises(OutOfMemory, match=r"--image-size.*--batch-size, now 100\)") as e:
        check_fits(needed, 16 * 2**30, (4096, 4096), 100)
    assert e.value.exit_status == 2 and "16.0 GiB available" in str(e.value)
    check_fits(needed, 2 * needed, (4096, 4096), 100)  # fits: nothing said
    check_fits(needed, None, (4096, 4096), 100)  # memory unknown: nothing to check against


def test_a_huge_image_size_exits_2_before_a_run_dir(tmp_path, capsys):
    root = _photo_folder(tmp_path / "data", 8, 8, per_class=4)
    logdir = tmp_path / "logs"
    try:
        status = train.main(["--dataset", root, "--image-size", "4096", "--stream", "on", "--val-size", "2",
                             "--epochs", "1", "--logdir", str(logdir)])
    except SystemExit as e:
        status = e.code
    err = capsys.readouterr().err
    assert status == 2 and "--image-size" in err and "--batch-size" in err, err
    assert not logdir.exists()  # no run directory
