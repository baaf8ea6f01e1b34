"""Augmentation policies (kerascnn/layers/policy.py): chosen from the data, active in training only, sized by share."""

import json
import os

import keras
import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from kerascnn import data as data_lib
from kerascnn.assemble import build_model, load_splits
from kerascnn.config import TrainConfig, resolve
from kerascnn.layers import augmentation
from kerascnn.layers.policy import amounts, choose
from tools.shapes import write_folder

FASHION = "/usr/share/datasets/fashion-mnist"
needs_fashion = pytest.mark.skipif(not os.path.isdir(FASHION), reason="dataset-fashion-mnist not installed")


def grey_folder(root, images, labels):
    """`images` (uint8, n x h x w x 1) as grey PNGs in class subfolders of `root`."""
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = os.path.join(root, f"class{label}")
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(image[..., 0], "L").save(os.path.join(folder, f"{i}.png"))
    return str(root)


def resolved_with_data(config):
    """`config` resolved as a run resolves it: with its data read."""
    splits = load_splits(config)
    return resolve(resolve(config), splits.spec, splits.x_train)


def test_auto_picks_digits_for_mnist_and_photos_for_fashion_mnist_and_an_rgb_folder(tmp_path):
    mnist = resolve(TrainConfig(model="best"))
    fashion = resolve(TrainConfig(model="best", dataset="fashion_mnist"))
    assert (mnist.augment, mnist._augment_why) == ("digits", "MNIST is handwritten digits")
    assert (fashion.augment, fashion.flip, fashion.shift) == ("photos", True, 2.8)
    write_folder(tmp_path / "shapes", size=32, per_class=4)
    rgb = resolved_with_data(TrainConfig(model="best", dataset=str(tmp_path / "shapes"), val_size=6))
    assert (rgb.augment, rgb._augment_why) == ("photos", "colour pictures")
    assert (rgb.flip, rgb.shift, rgb.rotation, rgb.zoom, rgb.brightness, rgb.contrast) == \
        (True, 3.2, 0.0, 0.0, 0.0, 0.0)  # a flip and a tenth of 32 px, nothing else
    # A model that does not augment by default stays unaugmented under auto, on any data.
    assert resolve(TrainConfig(model="sequential", dataset="fashion_mnist")).augment == "none"


def test_auto_tells_a_grey_folder_of_written_marks_from_one_of_shaded_pictures(mnist, tmp_path):
    digits = grey_folder(tmp_path / "digits", mnist.x_train[:60], mnist.y_train[:60])
    chosen = resolved_with_data(TrainConfig(model="best", dataset=digits, val_size=10))
    assert chosen.augment == "digits" and chosen._augment_why.startswith("one channel, written marks")
    assert (chosen.rotation, chosen.shift, chosen.flip) == (15.0, 2.0, False)  # MNIST's numbers at 28 px
    write_folder(tmp_path / "shapes", size=32, per_class=10)
    grey = np.stack([np.asarray(Image.open(p).convert("L"))[..., None]
                     for p in sorted(map(str, (tmp_path / "shapes").glob("*/*.png")))])
    shaded = grey_folder(tmp_path / "grey", grey, np.repeat(np.arange(6), 10))
    chosen = resolved_with_data(TrainConfig(model="best", dataset=shaded, val_size=12))
    assert chosen.augment == "photos" and chosen._augment_why.startswith("one channel, shaded pictures")


def test_each_built_in_dataset_names_its_policy_in_its_data_entry(monkeypatch):
    """`choose` reads a built-in dataset's policy from `kerascnn.data.DATASETS`, so a new dataset cannot lack one."""
    from kerascnn.layers.policy import TABLE

    for name, entry in data_lib.DATASETS.items():
        policy, why = entry["policy"]
        assert policy in TABLE and why and choose(name, entry["shape"][-1]) == (policy, why)
    monkeypatch.setitem(data_lib.DATASETS["mnist"], "policy", ("photos", "a test's word"))
    assert choose("mnist", 1) == ("photos", "a test's word")


@needs_fashion
def test_the_written_marks_test_separates_mnist_from_fashion_mnist_pictures(mnist):
    fashion = data_lib.load_dataset("fashion_mnist", FASHION)
    assert choose("a folder", 1, mnist.x_train)[0] == "digits"
    assert choose("a folder", 1, fashion.x_train)[0] == "photos"


@pytest.mark.parametrize("policy, channels", [("digits", 1), ("photos", 1), ("photos", 3)])
def test_each_policy_changes_a_training_batch_and_leaves_inference_alone(policy, channels, mnist, tmp_path):
    keras.utils.set_random_seed(1)
    batch = np.repeat(mnist.x_train[:16].astype("float32") / 255.0, channels, axis=-1)
    stage = augmentation(**amounts(policy, 28, channels), size=28)
    trained = inferred = batch
    for layer in stage:
        trained = layer(trained, training=True)
        inferred = layer(inferred, training=False)
    trained = keras.ops.convert_to_numpy(trained)
    assert np.array_equal(keras.ops.convert_to_numpy(inferred), batch)
    changed = np.abs(trained - batch).reshape(16, -1).max(axis=1) > 0.1
    assert changed.mean() >= 0.75, f"{policy}: only {changed.sum()} of 16 pictures changed"
    # The whole model: the same inference twice (no random layer acts), and a training call that differs.
    spec = data_lib.DataSpec(class_names=list("0123456789"), image_shape=(28, 28, channels), raw_pixels=True)
    config = TrainConfig(model="best", members=1, augment=policy, dataset=str(tmp_path), precision="float32")
    model = build_model(config, spec)
    pixels = batch * 255.0  # a folder's model takes raw pixels
    assert np.array_equal(model.predict(pixels, verbose=0), model.predict(pixels, verbose=0))
    member = model.members[0]
    assert [type(layer).__name__ for layer in member.augment] == [type(layer).__name__ for layer in stage]


def test_none_policy_has_no_augmentation_layers():
    assert augmentation(**amounts("none", 28, 3), size=28) == []


def test_a_fractional_shift_moves_a_28_and_a_96_pixel_picture_by_the_same_share():
    shares = {}
    for size in (28, 96):
        shift = amounts("photos", size, 1)["shift"]
        assert shift == pytest.approx(0.1 * size)
        dot = np.zeros((256, size, size, 1), "float32")
        middle = size // 2
        dot[:, middle - 1 : middle + 1, middle - 1 : middle + 1] = 1.0  # a 2x2 dot at the centre
        (layer,) = augmentation(rotation=0.0, shift=shift, zoom=0.0, size=size)
        keras.utils.set_random_seed(3)
        moved = keras.ops.convert_to_numpy(layer(dot, training=True))[..., 0]
        ys, xs = np.indices((size, size))
        weight = moved.sum(axis=(1, 2))
        dx = (moved * xs).sum(axis=(1, 2)) / weight - (middle - 0.5)
        dy = (moved * ys).sum(axis=(1, 2)) / weight - (middle - 0.5)
        shares[size] = np.abs(np.concatenate([dx, dy])) / size
    for size, share in shares.items():
        assert share.max() <= 0.1 + 1.0 / size, size  # never past a tenth of the side (plus the dot's half-pixel)
        assert share.max() >= 0.08, size  # and uses it: 512 uniform draws reach near the limit
    assert abs(shares[28].mean() - shares[96].mean()) < 0.01  # the same share on average (both about 0.05)


def test_mnist_config_is_unchanged_by_the_policies():
    resolved = resolve(TrainConfig(model="best", precision="float32"))
    # The values every MNIST result was measured with (config.json before policies existed).
    before = {"rotation": 15.0, "shift": 2.0, "zoom": 0.0, "elastic": 0.0, "members": 2, "member": "lecture",
              "label_smoothing": 0.1, "epochs": 28, "checkpoint": "last", "filters": 32, "dense_units": 256,
              "dropout": 0.4, "batchnorm": True, "tta": 0, "ema": 0.0}
    assert {k: getattr(resolved, k) for k in before} == before
    assert (resolved.augment, resolved.flip, resolved.brightness, resolved.contrast) == ("digits", False, 0.0, 0.0)
    model = build_model(resolved)
    member = model.members[0]
    assert [type(layer).__name__ for layer in member.augment] == ["RandomRotation", "RandomTranslation"]
    assert member.augment[1].height_factor == member.augment[1].width_factor == 2.0 / 28
    assert (member.stages, member.global_pool, model.count_params()) == (3, False, 1_242_452)


def test_flags_override_the_policy_and_a_model_without_augmentation_refuses_one(capsys):
    config = resolve(TrainConfig(model="best", dataset="fashion_mnist", flip=False, shift=1.0))
    assert (config.augment, config.flip, config.shift, config.rotation, config.zoom) == ("photos", False, 1.0, 0.0, 0.0)
    # A model that does not augment by default augments by the amounts its flags set, and says so.
    lecture = resolve(TrainConfig(model="functional", rotation=10.0))
    assert (lecture.augment, lecture.rotation, lecture.shift) == ("none", 10.0, 0.0)
    assert lecture._augment_why == "functional does not augment by default; amounts as set"
    import train

    with pytest.raises(SystemExit) as exited:
        train.main(["--model", "ensemble", "--augment", "photos", "--epochs", "1"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "`augment` must be auto or none for model ensemble" in err and "Received: augment='photos'" in err


def test_an_rgb_folder_trains_best_for_one_epoch_with_the_photos_policy(tmp_path):
    folder = tmp_path / "shapes"
    write_folder(folder, size=64, per_class=5)
    result = run_cli("train.py", "--model", "best", "--dataset", str(folder), "--epochs", "1", "--val-size", "6",
                     "--logdir", str(tmp_path / "logs"), "--verbose", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "augmentation: photos (colour pictures): flip, shift 6.4 px" in out
    run_dir = out.strip().splitlines()[-1].split("run_dir=")[1]
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    assert {k: config[k] for k in ("augment", "flip", "shift", "brightness")} == \
        {"augment": "photos", "flip": True, "shift": 6.4, "brightness": 0.0}
    model = keras.saving.load_model(os.path.join(run_dir, "best.keras"))
    member = model.members[0]
    assert (member.stages, member.global_pool) == (4, True)  # 64 -> 32 -> 16 -> 8 -> 4, then pooled
    assert [type(layer).__name__ for layer in member.augment] == \
        ["RandomFlip", "RandomTranslation"]
