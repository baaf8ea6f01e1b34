"""The streaming benchmark's parts (its numbers come from `python tools/stream_bench.py`, not tests)."""

import json
import os
import time

from conftest import MNIST_DIR
from tools.docblock import markers, write_block
from tools.stream_bench import BATCH, render, worker, write_folder


def test_write_folder_writes_digits_by_class_once(tmp_path):
    root = write_folder(str(tmp_path / "png"), 250, MNIST_DIR)
    counts = {d: len(os.listdir(os.path.join(root, d))) for d in os.listdir(root)}
    assert sorted(counts) == [str(d) for d in range(10)] and sum(counts.values()) == 250
    stamp = os.stat(os.path.join(root, os.listdir(root)[0])).st_mtime_ns
    write_folder(root, 250, MNIST_DIR)  # already there: left as it is
    assert os.stat(os.path.join(root, os.listdir(root)[0])).st_mtime_ns == stamp


def test_worker_streams_a_folder_through_its_cache_and_reports_the_input_wait(tmp_path, capsys):
    root = write_folder(str(tmp_path / "png"), 300, MNIST_DIR)
    started = time.perf_counter()
    worker(root, "on", str(tmp_path / "cache"), steps=3, warmup=1)
    slowest = 3 * BATCH / (time.perf_counter() - started)  # as if the 3 timed steps had taken the whole call
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["train_images"] == 216  # 300 less the 20% test share, less the 10% validation share
    assert 0 <= result["input_wait_share"] <= 1
    assert result["images_per_s"] >= slowest and result["input_images_per_s"] >= slowest
    assert any(name.endswith(".index") for name in os.listdir(tmp_path / "cache"))


def test_the_table_goes_between_the_markers_and_replaces_the_last(tmp_path):
    class Args:
        argv, steps, warmup = ["--sizes", "10"], 5, 1

    result = {"train_images": 55000, "open_seconds": 1.2, "images_per_s": 4000.0, "input_wait_share": 0.031,
              "input_images_per_s": 90000.0, "peak_rss_mb": 900.0, "policy": "float32"}
    table = render([("MNIST, in memory", None, result)], "a machine", "today", Args)
    assert "| MNIST, in memory | 55,000 | 1 | 4,000 | 3% | 90,000 | 900 |" in table
    doc = tmp_path / "IMAGES.md"
    doc.write_text("# Images\n\nbefore\n")
    write_block(str(doc), "stream_bench", "first")
    write_block(str(doc), "stream_bench", table)
    text = doc.read_text()
    assert text.startswith("# Images\n\nbefore\n") and "first" not in text
    begin, end = markers("stream_bench")
    assert text.count(begin) == text.count(end) == 1 and table in text
