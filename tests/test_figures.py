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


def test_tile_grid_scales_each_tile_to_its_own_range_and_leaves_gaps():
    pattern = np.arange(6, dtype=float).reshape(2, 3)
    tiles = np.stack([pattern, 100 + 10 * pattern, np.full((2, 3), 7.0)])
    grid = figures.tile_grid(tiles, columns=2, scale=2, gap=1, gap_colour=(1, 2, 3))
    assert grid.shape == (2 * 4 + 1, 2 * 6 + 1, 3) and grid.dtype == np.uint8
    first, second = grid[:4, :6], grid[:4, 7:]
    np.testing.assert_array_equal(first, second)  # the same pattern at another scale: the same tile
    assert first[0, 0].tolist() == [0, 0, 0] and first[-1, -1].tolist() == [255, 255, 255]
    np.testing.assert_array_equal(first[::2, ::2], first[1::2, 1::2])  # each value is 2 x 2 pixels
    assert (grid[5:, :6] == 0).all()  # a flat tile: all lowest
    gaps = [grid[4], grid[:, 6], grid[5:, 7:]]  # between the rows, between the columns, the empty cell
    assert all((g == (1, 2, 3)).all() for g in gaps)
    heat = figures.tile_grid(tiles, colour_map="viridis")
    assert heat.shape == (2, 3 * 3 + 2, 3) and (heat[..., 0] != heat[..., 2]).any()  # coloured, one row
    with pytest.raises(ValueError, match=r"Received: tiles.shape=\(3, 2\)"):
        figures.tile_grid(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="`scale` must be an integer >= 1. Received: scale=0"):
        figures.tile_grid(tiles, scale=0)


def test_filters_of_grey_and_colour_pictures():
    kernel = np.zeros((3, 3, 3, 2))
    kernel[1, 1, 0, 0] = 1.0  # filter 0: red at its centre
    kernel[0, 0, :, 1] = -1.0  # filter 1: dark in its top-left corner, all colours
    picture = figures.draw_filters(kernel)
    assert picture.shape == (24, 2 * 24 + 1, 3)
    assert picture[12, 12].tolist() == [255, 0, 0] and picture[2, 2].tolist() == [0, 0, 0]
    assert picture[2, 27].tolist() == [0, 0, 0] and picture[20, 45].tolist() == [255, 255, 255]
    assert picture[5, 24].tolist() == [0x1F, 0x60, 0xB4]  # the blue gap
    two = figures.draw_filters(np.concatenate([kernel[:, :, :1], -kernel[:, :, :1]], axis=2))  # 2 inputs: the mean
    assert two.shape == (24, 49, 3) and (two[:, :24] == 0).all() and (two[:, 25:] == 0).all()  # flat: they cancel
    with pytest.raises(ValueError, match=r"Received: kernel.shape=\(3, 3, 2\)"):
        figures.draw_filters(np.zeros((3, 3, 2)))


def test_feature_maps_are_the_first_channels_at_about_the_same_size():
    maps = np.random.default_rng(0).random((7, 7, 20))
    picture = figures.draw_feature_maps(maps)
    assert picture.shape == (2 * 57 - 1, 8 * 57 - 1, 3)  # 16 of 20 channels, 7 x 7 enlarged 8 times
    assert figures.draw_feature_maps(np.zeros((28, 28, 3))).shape == (56, 3 * 57 - 1, 3)  # 28 x 28 twice
    first = figures.tile_grid(maps[None, ..., 0], scale=8, colour_map="viridis")
    np.testing.assert_array_equal(picture[:56, :56], first)


def test_tile_grid_with_a_value_range_keeps_each_tiles_brightness():
    from kerascnn.figures import tile_grid

    dim, bright = np.full((2, 2), 0.25), np.full((2, 2), 0.75)
    own = tile_grid(np.stack([dim, bright]), gap=0)
    shared = tile_grid(np.stack([dim, bright]), gap=0, value_range=(0.0, 1.0))
    assert own[0, 0, 0] == own[0, 2, 0] == 0  # each flat tile on its own scale: both drawn black
    assert (shared[0, 0, 0], shared[0, 2, 0]) == (64, 191)  # one scale: a quarter and three quarters grey
