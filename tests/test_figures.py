"""The pictures: sizes, and colours where the numbers say they should be."""

import os

import numpy as np
import pytest
from PIL import Image

from kerascnn import figures


def reddish(picture):
    r, g, b = (picture[..., i].astype(int) for i in range(3))
    return (r - np.maximum(g, b)) > 12


def blueish(picture):
    r, g, b = (picture[..., i].astype(int) for i in range(3))
    return (b - np.maximum(r, g)) > 60


def test_confusion_matrix_is_blue_on_the_diagonal_and_red_only_for_mistakes():
    right = np.diag([50, 60, 70])
    picture = figures.draw_confusion_matrix(right)
    assert picture.shape == (520, 520, 3) and picture.dtype == np.uint8
    assert blueish(picture).sum() > 3 * 80 * 80  # three solid diagonal cells
    assert not reddish(picture).any()  # nothing wrong, nothing red

    wrong = right.copy()
    wrong[2, 0] = 30
    assert reddish(figures.draw_confusion_matrix(wrong)).sum() > 80 * 80  # the mistake's cell
    titled = figures.draw_confusion_matrix(wrong, "epoch 3")
    assert titled.shape == (520, 520, 3) and (titled != figures.draw_confusion_matrix(wrong)).any()
    assert figures.draw_confusion_matrix(wrong, size=(300, 200)).shape == (200, 300, 3)


def test_misclassified_grid_shows_each_mistake():
    images = np.zeros((10, 28, 28), np.uint8)  # black digits on the white figure
    labels = np.arange(10)
    probabilities = np.eye(10)[(labels + np.array([1] * 8 + [0, 0])) % 10] * 0.9 + 0.01  # first 8 wrong
    picture = figures.draw_misclassified(images, labels, probabilities)
    assert picture.shape == (2 * 130, 6 * 110, 3)  # 8 mistakes, 6 a row
    assert (picture.max(axis=2) < 30).sum() > 8 * 60 * 60  # eight black squares
    assert reddish(picture).any()  # the captions
    assert figures.draw_misclassified(images, labels, probabilities, limit=3).shape == (130, 3 * 110, 3)
    notice = figures.draw_misclassified(images, labels, np.eye(10))
    assert notice.shape == (60, 320, 3) and (notice < 128).any()  # some text on it


def test_save_png_replaces_a_picture_whole_or_not_at_all(tmp_path):
    path = str(tmp_path / "cm.png")
    first = figures.draw_confusion_matrix(np.diag([5, 6]))
    assert figures.save_png(first, path) == path
    with pytest.raises(TypeError):  # Pillow cannot write seven channels: the earlier picture stays
        figures.save_png(np.zeros((4, 4, 7)), path)
    np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), first)
    assert os.listdir(tmp_path) == ["cm.png"]
