"""`python -m kerascnn serve`: the page in a real browser (headless Chromium), its API, and the command.

The server is the real one (`make_server`, threaded, on a free 127.0.0.1
port) with the small ensemble of `conftest.small_run`, loaded once for the
session. The browser draws a real handwritten 7 from the MNIST test set:
each row of its ink becomes one pointer stroke on the canvas. A second
server serves a model of your own images (32x32 RGB, three named classes,
untrained: the page's mechanics need no training), which takes uploads only.

    KERASCNN_SERVE_SCREENSHOT=docs/serve.png python -m pytest tests/test_serve.py -k seven
    KERASCNN_LAYERS_SCREENSHOT=docs/serve-layers.png python -m pytest tests/test_serve.py -k layer_view_of

also saves the page with the drawn 7 as the README's screenshot, and its
layer view (one channel chosen, with its kernel and dot product) as
docs/SERVE.md's.
"""

import base64
import concurrent.futures
import contextlib
import io
import json
import os
import socket
import threading

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("flask", reason="`serve` needs Flask: pip install -e '.[test]' (or '.[demo]')")

from kerascnn import loading  # noqa: E402
from kerascnn.commands.results import main  # noqa: E402
from kerascnn.predict import load_digit, prepare_as_trained, to_mnist  # noqa: E402
from kerascnn.serve import MAX_UPLOAD, host_warning, make_server  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1000,860", "--hide-scrollbars")
WAIT = 30  # seconds for the page to answer; a prediction takes milliseconds, the CPU is shared
OWN_NAMES = ["círculo", "квадрат", "三角形"]  # the own-image model's classes: unicode on purpose


@contextlib.contextmanager
def serving(model_path):
    """The real server for `model_path` on a free loopback port, answering in a thread until the block ends."""
    httpd = make_server(model_path, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    httpd.url = f"http://127.0.0.1:{httpd.server_port}/"
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="session")
def server(small_run):
    """The real server on a free loopback port; `server.loads` counts model loads since it started."""
    real_load, loads = loading.load, []

    def counting_load(path):
        loads.append(path)
        return real_load(path)

    loading.load = counting_load  # a counter around the real function: `make_server` loads through it
    try:
        with serving(small_run) as httpd:
            httpd.loads, httpd.loads_at_start = loads, list(loads)
            yield httpd
    finally:
        loading.load = real_load


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    """The run directory of a model of your own images: 32x32 RGB, `OWN_NAMES`, untrained, as training saves it."""
    from kerascnn import rundir
    from kerascnn.data import DataSpec
    from kerascnn.models import create_model

    spec = DataSpec(OWN_NAMES, (32, 32, 3), raw_pixels=True)
    run_dir = tmp_path_factory.mktemp("own_run")
    create_model("sequential", filters=8, dense_units=16, **spec.model_kwargs()).save(run_dir / loading.RUN_MODEL)
    (run_dir / rundir.DATA).write_text(json.dumps(spec.to_dict(), ensure_ascii=False), encoding="utf-8")
    return str(run_dir)


@pytest.fixture(scope="module")
def own_server(own_run):
    with serving(own_run) as httpd:
        yield httpd


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A 60x40 (wide) RGB PNG of coloured bands and noise: not the model's 32x32, so it is resized."""
    rng = np.random.default_rng(3)
    bands = np.linspace(0, 255, 60)[None, :, None] * np.array([1.0, 0.5, 0.2])
    picture = np.clip(bands + rng.integers(0, 60, (40, 60, 3)), 0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("photo") / "bands.png"
    Image.fromarray(picture).save(path)
    return str(path)


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package")
    if missing:
        pytest.skip(f"browser tests of `serve` skipped: {', '.join(missing)} not installed "
                    "(Debian: apt-get install chromium chromium-driver; pip install selenium)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, server):
    browser.get(server.url)
    assert browser.find_element("id", "app").get_attribute("data-state") == "idle"
    return browser


@pytest.fixture(scope="session")
def seven(mnist):
    """The first 7 of the MNIST test set, (28, 28) uint8."""
    return mnist.x_test[int(np.flatnonzero(mnist.y_test == 7)[0])].reshape(28, 28)


def row_strokes(digit, threshold=128):
    """Traces a digit into strokes: each run of ink in each pixel row, as ((x0, y), (x1, y)) in pixels."""
    strokes = []
    for y, row in enumerate(digit >= threshold):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(int), [0]])))
        strokes += [((x0, y), (x1 - 1, y)) for x0, x1 in zip(edges[::2], edges[1::2])]
    return strokes


def draw(driver, strokes, pointer="mouse"):
    """Replays strokes (28x28 pixel coordinates) on the pad with real pointer input."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    pad = driver.find_element("id", "pad")
    size = pad.size["width"]
    to_pad = lambda x, y: (round((x + 0.5) * size / 28 - size / 2), round((y + 0.5) * size / 28 - size / 2))
    kind = interaction.POINTER_TOUCH if pointer == "touch" else interaction.POINTER_MOUSE
    actions = ActionBuilder(driver, mouse=PointerInput(kind, pointer), duration=10)
    for start, end in strokes:
        actions.pointer_action.move_to(pad, *to_pad(*start)).pointer_down()
        actions.pointer_action.move_to(pad, *to_pad(*end)).pointer_up()
    actions.perform()


def answer(driver):
    """Waits for the page's answer to the latest change; returns what the page shows."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT).until(lambda d: d.find_element("id", "app").get_attribute("data-state") != "waiting")
    return driver.execute_script("""
        const bars = [...document.querySelectorAll('.bar')];
        const seen = document.getElementById('preview').getContext('2d').getImageData(0, 0, 28, 28).data;
        return {
          state: document.getElementById('app').dataset.state,
          error: document.getElementById('error').textContent,
          class: document.getElementById('class')?.textContent,
          probabilities: bars.map(b => +b.dataset.probability),
          shown: bars.map(b => b.querySelector('.value').textContent),
          widths: bars.map(b => b.querySelector('.fill').offsetWidth / b.querySelector('.track').offsetWidth),
          preview: [...seen].filter((v, i) => i % 4 === 0),
          votes: [...document.querySelectorAll('#votes li')].map(li => +li.dataset.class),
          voters: [...document.querySelectorAll('#votes li')].map(li => li.textContent.split(':')[0]),
          members: [...document.querySelectorAll('#member option')].map(o => 'member ' + o.textContent),
          heat: document.getElementById('heat').hidden ? null : [...document.getElementById('saliency')
                .getContext('2d').getImageData(0, 0, 28, 28).data].filter((v, i) => i % 4 === 0),
        };""")


def pad_ink(driver):
    """Share of the pad's pixels that are ink (darker than mid-grey)."""
    return driver.execute_script("""
        const pad = document.getElementById('pad');
        const data = pad.getContext('2d').getImageData(0, 0, pad.width, pad.height).data;
        let dark = 0;
        for (let i = 0; i < data.length; i += 4) dark += data[i] < 128;
        return dark / (pad.width * pad.height);""")


def png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def post(url, data, name="digit.png", fields=None, api="api/predict"):
    import requests

    response = requests.post(url + api, files={"image": (name, data)}, data=fields or {}, timeout=WAIT)
    return response.status_code, response.json()


def stage_maps(stage):
    """A layer-view stage's maps from the JSON: float32, (shown, H, W) or (units,)."""
    values = np.frombuffer(base64.b64decode(stage["maps"]), "<f2").astype(np.float32)
    return values.reshape([stage["shown"], *stage["shape"][:2]] if len(stage["shape"]) == 3 else [-1])


def model_probabilities(server, images):
    """What the served model gives for prepared (N, 28, 28, 1) images, called directly."""
    return server.predictor.model.predict(np.asarray(images, np.float32), verbose=0)


def test_drawn_seven_is_classified_and_the_page_shows_what_the_model_received(page, server, seven, tmp_path):
    page.execute_script("""window.moves = 0;
        for (const type of ['pointerdown', 'pointermove'])
          document.getElementById('pad').addEventListener(type, () => window.moves++);""")
    draw(page, row_strokes(seven))
    shown = answer(page)
    assert shown["state"] == "done", shown["error"]
    # Debounced: the model is asked when drawing pauses, not at every pointer event.
    moves, asked = page.execute_script("""return [window.moves, performance.getEntriesByType('resource')
        .filter(e => e.name.endsWith('/api/predict')).length]""")
    assert 1 <= asked < moves / 4, (asked, moves)
    # What the page shows is what the served model gives for the 28x28 image it shows.
    preview = np.asarray(shown["preview"], np.float32).reshape(1, 28, 28, 1) / 255.0
    assert 0.05 < (preview > 0.5).mean() < 0.5, "the 28x28 preview should show a digit, not be blank or full"
    expected = model_probabilities(server, preview)[0]
    np.testing.assert_allclose(shown["probabilities"], expected, atol=0.01)
    assert int(shown["class"]) == int(np.argmax(expected)) == 7
    assert shown["shown"][7] == f"{100 * shown['probabilities'][7]:.1f}%"
    np.testing.assert_allclose(shown["widths"], shown["probabilities"], atol=0.02)  # the bars as drawn
    # ...and the same as the API answers for the very picture the page sent (the canvas as PNG).
    canvas_png = page.execute_script("return document.getElementById('pad').toDataURL('image/png')")
    status, api = post(server.url, base64.b64decode(canvas_png.split(",", 1)[1]))
    assert status == 200 and api["class"] == 7
    np.testing.assert_allclose(shown["probabilities"], api["probabilities"], atol=1e-6)
    np.testing.assert_allclose(preview[0, ..., 0], api["image"], atol=1 / 255 + 1e-4)
    # The saliency map: shown, and concentrated on and around the strokes.
    saliency, ink = np.asarray(api["saliency"]), preview[0, ..., 0] > 0.2
    near = ink.copy()
    for _ in range(2):  # within 2 pixels of the ink
        near[1:] |= near[:-1].copy(); near[:-1] |= near[1:].copy()
        near[:, 1:] |= near[:, :-1].copy(); near[:, :-1] |= near[:, 1:].copy()
    assert saliency.shape == (28, 28) and saliency.max() == 1.0
    assert saliency[near].mean() > 1.5 * saliency[~near].mean()
    red = np.reshape(shown["heat"], (28, 28)) / 255.0
    np.testing.assert_allclose(red, np.maximum(0.35 * preview[0, ..., 0], saliency), atol=2 / 255)

    shot = os.environ.get("KERASCNN_SERVE_SCREENSHOT") or str(tmp_path / "serve.png")
    assert page.save_screenshot(shot)
    assert Image.open(shot).size[0] >= 800


def layer_panels(driver):
    """The layer view as the page shows it: one dict per stage panel."""
    return driver.execute_script("""
        return [...document.querySelectorAll('#stages .stage')].map(div => ({
          name: div.dataset.name, kind: div.dataset.kind, shape: div.dataset.shape,
          channels: +div.dataset.channels, shown: +div.dataset.shown,
          maps: div.querySelectorAll('canvas.map').length,
          title: div.querySelector('.stage-title').textContent, text: div.dataset.text,
        }));""")


def lecture_prefix(member, depth):
    """keras.Model(inputs, output) of a LectureCNN member's first `depth` conv+pool layers: an independent reading."""
    import keras

    inputs = keras.Input((28, 28, 1))
    x = inputs
    parts = [*member.preprocess, *member.augment]
    for conv, pooling in zip(member.convs, member.pools):
        parts += [conv, pooling]
    for layer in parts[:len(member.preprocess) + len(member.augment) + depth]:
        x = layer(x)
    return keras.Model(inputs, x)


def test_layer_view_of_a_drawn_seven_its_shapes_numbers_and_a_channels_kernel(page, server, seven):
    from selenium.webdriver.support.ui import WebDriverWait

    from kerascnn.explain import explain

    draw(page, row_strokes(seven))
    shown = answer(page)
    assert shown["state"] == "done" and shown["class"] == "7", shown["error"]
    received = np.asarray(shown["preview"], np.float32).reshape(28, 28, 1) / 255.0
    model = server.predictor.model
    truth = explain(model, received, member=1)
    panels = layer_panels(page)
    # One panel per stage, in order, with the model's shapes and channel counts; the lecture's arithmetic agrees.
    assert [p["name"] for p in panels] == [s.name for s in truth.stages]
    assert [p["kind"] for p in panels] == ["conv", "pool", "conv", "pool", "conv", "pool", "dense", "dense", "softmax"]
    assert [p["title"].split(" ")[0] for p in panels] == [f"{i}." for i in range(1, len(panels) + 1)]  # from 1
    assert [p["text"] for p in panels][-2:] == ["dense 10", "softmax 10"]  # the logits and the softmax, two stages
    assert [p["shape"] for p in panels] == ["x".join(map(str, s.shape)) for s in truth.stages]
    assert [p["shape"] for p in panels][:2] == ["28x28x16", "14x14x16"]  # filters=16 in the small run
    for p, stage in zip(panels, truth.stages):
        if stage.activations.ndim == 3:
            assert p["channels"] == stage.shape[-1] and p["maps"] == p["shown"] == min(stage.shape[-1], 64)
        else:
            assert p["maps"] == 1
    assert f"28x28x1 \u2192 {truth.stages[0].text} \u2192 28x28x16" in panels[0]["title"]
    assert truth.stages[0].text.startswith("conv 3x3/1 SAME, 16 filters")
    assert "28x28x16 \u2192 pool 2x2/2 SAME \u2192 14x14x16" in panels[1]["title"]
    assert "kerascnn.basics: 14x14x16" in panels[1]["title"]
    # The numbers behind a heat map (second conv stage, channel 3) are the layer's own output.
    values = page.execute_script("return Array.from(view.stages[2].values.subarray(3 * 14 * 14, 4 * 14 * 14))")
    member = model.members[0]
    direct = np.asarray(lecture_prefix(member, 3)(received[None]))[0, ..., 3]
    np.testing.assert_allclose(np.reshape(values, (14, 14)), direct, rtol=2e-3, atol=2e-3 * max(direct.max(), 1))
    # Grad-CAM is drawn beside the saliency map.
    assert page.find_element("id", "cam").is_displayed()
    # A click on a channel shows it large, with the kernel that made its strongest value and the dot product.
    page.find_element("css selector", '.stage[data-index="2"] canvas.map[data-channel="3"]').click()
    WebDriverWait(page, WAIT).until(lambda d: d.find_elements("css selector", "#neuron table.kernel"))
    detail = page.execute_script("""
        const n = document.getElementById('neuron');
        return {title: document.getElementById('big-title').textContent,
                kernels: [...n.querySelectorAll('table.kernel')].map(t => [...t.rows].map(r => [...r.cells].map(c => +c.textContent))),
                steps: [...n.querySelectorAll('.step')].map(d => d.textContent),
                value: +n.dataset.value, computed: +n.dataset.computed, chosen: chosen};""")
    assert detail["title"].startswith(f"stage 3 ({truth.stages[2].text}), channel 4 of 32 (14x14)")  # from 1
    # The large map and the dot product are brought into view: the page is about 2,000 px tall.
    assert page.execute_script("""const box = document.getElementById('detail').getBoundingClientRect();
                                  return box.top >= 0 && box.top < window.innerHeight;""")
    conv = getattr(member.convs[1], "conv", member.convs[1])  # Conv2D, or the one inside ConvBNReLU
    kernel = np.asarray(conv.kernel)[..., 3]  # (3, 3, 16): the page shows the first 4 inputs
    assert len(detail["kernels"]) == 4
    for k, shown_kernel in enumerate(detail["kernels"]):
        np.testing.assert_allclose(shown_kernel, kernel[..., k], atol=1e-3)
    row, col = detail["chosen"]["row"], detail["chosen"]["col"]
    assert direct[row, col] == direct.max()  # the strongest response is shown first
    words = [line.split(" ")[0] for line in detail["steps"]]
    assert words[0] == "\u03a3" and words[-2:] == ["ReLU", "the"]
    assert detail["computed"] == pytest.approx(detail["value"], abs=1e-3)
    # The preview is the image in 1/255 steps, the server's is not: the same value within that.
    assert detail["value"] == pytest.approx(float(direct[row, col]), abs=2e-3 * max(float(direct.max()), 1.0))
    shot = os.environ.get("KERASCNN_LAYERS_SCREENSHOT")
    if shot:  # the docs' picture of the layer view: the section alone, in a window tall enough for all of it
        size = page.get_window_size()
        page.set_window_size(1100, 2600)
        page.execute_script("document.getElementById('layers').scrollIntoView()")
        try:
            assert page.find_element("id", "layers").screenshot(shot)
        finally:
            page.set_window_size(size["width"], size["height"])
    # Member 2 of the ensemble: its own maps.
    from selenium.webdriver.support.ui import Select

    Select(page.find_element("id", "member")).select_by_value("2")
    WebDriverWait(page, WAIT).until(lambda d: d.execute_script("return view && view.member === 2"))
    assert answer(page)["state"] == "done"
    second = np.reshape(page.execute_script("return Array.from(view.stages[0].values.subarray(0, 784))"), (28, 28))
    own = np.asarray(lecture_prefix(model.members[1], 1)(received[None]))[0, ..., 0]
    np.testing.assert_allclose(second, own, rtol=2e-3, atol=2e-3 * max(own.max(), 1))


def test_undo_clear_and_a_finger_stroke(page, seven):
    strokes = row_strokes(seven)
    draw(page, strokes[:3], pointer="touch")
    assert answer(page)["state"] in ("done", "error")
    touched = pad_ink(page)
    assert touched > 0.01, "a touch stroke should draw on the pad"
    draw(page, strokes[3:])
    answer(page)
    full = pad_ink(page)
    page.find_element("id", "undo").click()
    assert answer(page)["state"] == "done"
    assert 0 < pad_ink(page) < full
    page.find_element("id", "clear").click()
    shown = answer(page)
    assert pad_ink(page) == 0 and shown["state"] == "idle" and shown["class"] is None and not shown["probabilities"]


def paper_photo(digit, path):
    """A photo-like picture: dark ink on light paper with a lighting gradient and noise, 400x300 JPEG."""
    rng = np.random.default_rng(0)
    page = 0.85 + rng.normal(0, 0.02, (400, 300)) + np.linspace(0, 0.1, 300)[None]
    ink = np.asarray(Image.fromarray(digit).resize((224, 224), Image.Resampling.BICUBIC), np.float64) / 255.0
    page[80:304, 40:264] -= 0.75 * ink
    rgb = np.stack([page, page * 0.97, page * 0.9], axis=-1)
    Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(path, quality=90)
    return str(path)


def test_uploaded_photo_and_each_members_vote(page, server, mnist, tmp_path):
    photo = paper_photo(mnist.x_test[1].reshape(28, 28), tmp_path / "two.jpg")  # a 2
    page.find_element("id", "upload").send_keys(photo)
    shown = answer(page)
    assert shown["state"] == "done", shown["error"]
    digit = load_digit(photo)  # the preparation of `python -m kerascnn predict`
    np.testing.assert_allclose(np.reshape(shown["preview"], (28, 28)) / 255.0, digit[..., 0], atol=1 / 255 + 1e-4)
    expected = model_probabilities(server, digit[None])[0]
    np.testing.assert_allclose(shown["probabilities"], expected, atol=1e-5)
    assert int(shown["class"]) == int(np.argmax(expected)) == mnist.y_test[1] == 2
    # One vote per member of the ensemble, each that member's own answer.
    members = server.predictor.model.members
    assert len(shown["votes"]) == len(members) == 2
    assert shown["votes"] == [int(np.argmax(m.predict(digit[None], verbose=0))) for m in members]
    # Numbered as the member selector numbers them (and as --member does): from 1.
    assert shown["voters"] == shown["members"] == ["member 1 of 2", "member 2 of 2"]


@pytest.fixture
def bad_uploads(tmp_path):
    (tmp_path / "notes.txt").write_text("this is not a picture\n")
    (tmp_path / "empty.png").write_bytes(b"")
    rng = np.random.default_rng(0)
    (tmp_path / "huge.png").write_bytes(png_bytes(rng.integers(0, 255, (1600, 1600, 3), np.uint8)))
    assert (tmp_path / "huge.png").stat().st_size > MAX_UPLOAD
    return {
        str(tmp_path / "notes.txt"): "notes.txt: not an image (a PNG or JPEG was expected)",
        str(tmp_path / "empty.png"): "empty.png: the file is empty (0 bytes)",
        str(tmp_path / "huge.png"): "larger than the 5 MB limit",
    }


def test_bad_uploads_show_an_error_and_drawing_still_works(page, seven, bad_uploads):
    for i, (path, message) in enumerate(bad_uploads.items()):
        page.find_element("id", ("upload", "camera")[i % 2]).send_keys(path)  # both file inputs
        shown = answer(page)
        assert shown["state"] == "error" and message in shown["error"], path
    draw(page, row_strokes(seven))
    shown = answer(page)
    assert shown["state"] == "done" and shown["error"] == "" and shown["class"] is not None


def test_page_loads_nothing_from_outside_the_server(page, server):
    assert "http://" not in page.page_source and "https://" not in page.page_source
    urls = page.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(url.startswith(server.url) for url in urls), urls


def test_api_errors_are_json_and_the_server_stays_up(server, seven):
    import requests

    from test_predict import png_claiming

    status, body = post(server.url, png_claiming(20000, 20000), "bomb.png")
    assert status == 422 and "too large to open safely" in body["error"]
    status, body = post(server.url, png_bytes(np.zeros((40, 40), np.uint8)), "black.png")
    assert status == 422 and "blank: no ink found" in body["error"]
    response = requests.post(server.url + "api/predict", files={"picture": ("a.png", b"x")}, timeout=WAIT)
    assert response.status_code == 400 and "form field `image`" in response.json()["error"]
    response = requests.post(server.url + "api/predict", files={"image": ("big.png", b"0" * (MAX_UPLOAD + 1))},
                             timeout=WAIT)
    assert response.status_code == 413 and "5 MB limit" in response.json()["error"]
    assert requests.get(server.url + "../etc/passwd", timeout=WAIT).status_code == 404
    status, body = post(server.url, png_bytes(255 - seven))
    assert status == 200 and body["class"] == 7


def test_twenty_requests_at_once_are_answered_correctly_by_one_loaded_model(server, mnist, small_run):
    from kerascnn.explain import Explainer

    digits = mnist.x_test[:20].reshape(20, 28, 28)
    pictures = [png_bytes(np.kron(255 - d, np.ones((4, 4), np.uint8))) for d in digits]  # 112x112, dark on light
    # Half of them ask for the layer view too, of member 1 or 2: one compiled pass each, under the same lock.
    fields = [None if k % 2 else {"layers": "1", "member": str(1 + k % 4 // 2)} for k in range(20)]
    loads = len(server.loads)
    barrier = threading.Barrier(20)

    def ask(job):
        barrier.wait()  # all 20 requests leave together
        return post(server.url, *job)

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(ask, [(p, "digit.png", f) for p, f in zip(pictures, fields)]))
    assert all(status == 200 for status, _ in answers), answers
    prepared = np.stack([to_mnist(np.asarray(Image.open(io.BytesIO(p)), np.float64) / 255.0) for p in pictures])
    expected = model_probabilities(server, prepared)
    np.testing.assert_allclose([body["probabilities"] for _, body in answers], expected, atol=1e-5)
    assert [body["class"] for _, body in answers] == list(np.argmax(expected, axis=1))
    explainers = {m: Explainer(server.predictor.model, m) for m in (1, 2)}
    for (_, body), asked, digit in zip(answers, fields, prepared):
        assert ("layers" in body) == (asked is not None)
        if asked:
            member = int(asked["member"])
            assert body["layers"]["member"] == member
            first = explainers[member](digit).stages[0].activations  # each answer is its own picture's, its own member's
            np.testing.assert_allclose(stage_maps(body["layers"]["stages"][0]), np.moveaxis(first, -1, 0),
                                       rtol=2e-3, atol=2e-3 * max(first.max(), 1))
    assert server.loads_at_start == [small_run]  # loaded once, at startup...
    assert len(server.loads) == loads  # ...and never while answering


def test_layer_view_api_its_neurons_and_its_refusals(server, seven):
    from kerascnn.explain import explain

    picture = png_bytes(255 - seven)
    status, body = post(server.url, picture, fields={"layers": "1", "member": "2"})
    assert status == 200
    view, digit = body["layers"], np.asarray(body["image"], np.float32)[..., None]
    truth = explain(server.predictor.model, digit, member=2)
    assert view["members"] == 2 and view["input"] == [28, 28, 1]
    assert [st["shape"] for st in view["stages"]] == [list(st.shape) for st in truth.stages]
    assert [st["expected"] for st in view["stages"][:6]] == [list(st.shape) for st in truth.stages[:6]]
    for sent, stage in zip(view["stages"], truth.stages):
        want = np.moveaxis(stage.activations, -1, 0) if stage.activations.ndim == 3 else stage.activations
        np.testing.assert_allclose(stage_maps(sent), want, rtol=2e-3, atol=2e-3 * max(float(np.abs(want).max()), 1))
        assert sent["lo"] == pytest.approx(float(want.min()), rel=1e-4, abs=1e-5)  # the image came back rounded to 1e-4
    np.testing.assert_allclose(view["gradcam"], truth.gradcam, atol=2e-3)
    # Without `layers=1` the answer is what it always was.
    assert "layers" not in post(server.url, picture)[1]
    # One value of the first conv stage, in the corner: SAME padding puts zeros under the kernel's first row.
    status, n = post(server.url, picture, fields={"member": "2", "stage": "0", "channel": "5", "row": "0", "col": "0"},
                     api="api/neuron")
    assert status == 200, n
    window, kernel = np.asarray(n["window"]), np.asarray(n["kernel"])
    assert window.shape == kernel.shape == (1, 3, 3) and n["origin"] == [-1, -1]
    assert not window[0, 0].any() and not window[0, :, 0].any()
    np.testing.assert_allclose(window[0, 1:, 1:], digit[:2, :2, 0], atol=1e-4)
    assert n["steps"][0][1] == pytest.approx(float((window * kernel).sum()) + n["bias"], abs=1e-4)
    assert n["steps"][-1][1] == pytest.approx(n["value"], abs=1e-4)
    assert n["value"] == pytest.approx(float(truth.stages[0].activations[0, 0, 5]), abs=1e-5)
    # Bad fields: 400 with the field named; the server stays up.
    for fields, message in [({"layers": "1", "member": "3"}, "`member` must be an integer from 1 to 2"),
                            ({"layers": "1", "member": "one"}, "Received: member='one'")]:
        status, refused = post(server.url, picture, fields=fields)
        assert status == 400 and message in refused["error"], refused
    for fields, message in [({"stage": "1", "channel": "0", "row": "0", "col": "0"}, "`stage` must be the index of a conv stage, one of [0, 2, 4]"),
                            ({"stage": "0", "channel": "0", "row": "28", "col": "0"}, "`row` must be an integer from 0 to 27"),
                            ({"stage": "0", "channel": "x", "row": "0", "col": "0"}, "`channel` must be an integer")]:
        status, refused = post(server.url, picture, fields=fields, api="api/neuron")
        assert status == 400 and message in refused["error"], refused
    assert post(server.url, picture)[0] == 200


# --- a model trained on your own images: uploads only, its size and colours, its classes' names ---------------------

def test_own_image_model_answers_an_upload_as_predict_prepares_the_file(own_server, photo):
    import tensorflow as tf

    model = own_server.predictor.model
    prepared = prepare_as_trained(photo, model)  # as `python -m kerascnn predict` prepares the same file
    decoded = np.asarray(Image.open(photo), np.float32)  # an independent reading: Pillow, resized bilinearly
    np.testing.assert_allclose(prepared, tf.image.resize(decoded, (32, 32)).numpy(), atol=1e-3)
    expected = model.predict(prepared[None], verbose=0)[0]
    with open(photo, "rb") as f:
        data = f.read()
    status, body = post(own_server.url, data, "bands.png", fields={"layers": "1"})
    assert status == 200, body
    np.testing.assert_allclose(body["probabilities"], expected, atol=1e-5)
    assert body["class"] == int(np.argmax(expected)) and body["names"] == OWN_NAMES
    np.testing.assert_allclose(body["image"], prepared / 255.0, atol=1e-4)  # 32 rows of 32 [r, g, b]
    # The saliency: |d p(winner) / d pixel|, the largest over the pixel's three channels.
    x = tf.constant(prepared[None])
    with tf.GradientTape() as tape:
        tape.watch(x)
        top = tf.reduce_max(model(x, training=False)[0])
    gradient = np.abs(tape.gradient(top, x).numpy()[0]).max(axis=-1)
    np.testing.assert_allclose(body["saliency"], gradient / gradient.max(), atol=1e-3)
    # The layer view starts at the model's size, and a conv value is explained on the picture it received.
    view = body["layers"]
    assert view["input"] == [32, 32, 3] and np.shape(view["gradcam"]) == (32, 32)
    assert [stage["shape"] for stage in view["stages"][:2]] == [[32, 32, 8], [16, 16, 8]]
    status, n = post(own_server.url, data, "bands.png", api="api/neuron",
                     fields={"member": "1", "stage": "0", "channel": "2", "row": "1", "col": "1"})
    assert status == 200, n
    np.testing.assert_allclose(np.moveaxis(n["window"], 0, -1), prepared[:3, :3] / 255.0, atol=1e-5)  # rescaled
    first = stage_maps(view["stages"][0])[2, 1, 1]
    assert n["value"] == pytest.approx(float(first), abs=2e-3 * max(abs(float(first)), 1))


def test_own_image_model_refuses_bad_uploads_with_json_errors(own_server, photo):
    import requests

    from test_predict import png_claiming

    with open(photo, "rb") as f:
        data = f.read()
    tiff = io.BytesIO()
    Image.open(photo).save(tiff, "TIFF")  # read by the one decoder, as in training
    for name, bad, message in [("broken.png", data[: len(data) // 2], "broken.png: truncated or corrupt"),
                               ("bomb.png", png_claiming(20000, 20000), "bomb.png: too many pixels to decode safely"),
                               ("notes.txt", b"not a picture", "notes.txt: not an image"),
                               ("empty.png", b"", "empty.png: the file is empty (0 bytes)")]:
        status, body = post(own_server.url, bad, name)
        assert status == 422 and message in body["error"], (name, body)
    response = requests.post(own_server.url + "api/predict", files={"image": ("big.png", b"0" * (MAX_UPLOAD + 1))},
                             timeout=WAIT)
    assert response.status_code == 413 and "5 MB limit" in response.json()["error"]
    assert post(own_server.url, data)[0] == 200
    assert post(own_server.url, tiff.getvalue(), "scan.tiff")[0] == 200


def test_own_image_page_takes_uploads_only_and_names_the_classes(browser, own_server, photo):
    page = browser
    page.get(own_server.url)
    # No drawing for this model, and the page says why; upload and photo stay.
    assert not any(page.find_element("id", name).is_displayed() for name in ("pad", "undo", "clear"))
    assert "Drawing is for digit models" in page.find_element("id", "no-drawing").text
    assert [label.is_displayed() for label in page.find_elements("css selector", "label.button")] == [True, True]
    page.find_element("id", "upload").send_keys(photo)
    shown = answer(page)
    assert shown["state"] == "done", shown["error"]
    model = own_server.predictor.model
    prepared = prepare_as_trained(photo, model)
    expected = model.predict(prepared[None], verbose=0)[0]
    np.testing.assert_allclose(shown["probabilities"], expected, atol=1e-5)
    labels, size, rgba = page.execute_script("""
        const preview = document.getElementById('preview'), ink = preview.getContext('2d');
        return [[...document.querySelectorAll('.bar .label')].map(l => l.textContent), [preview.height, preview.width],
                [...ink.getImageData(0, 0, preview.width, preview.height).data]];""")
    assert labels == OWN_NAMES and shown["class"] == OWN_NAMES[int(np.argmax(expected))]
    assert size == [32, 32]  # the preview at the model's size, in colour, as the model received it
    np.testing.assert_allclose(np.reshape(rgba, (32, 32, 4))[..., :3], prepared, atol=1)
    assert "32x32 RGB" in page.find_element("id", "received").text
    # The layer view, from the model's own input shape.
    panels = layer_panels(page)
    assert [p["shape"] for p in panels][:2] == ["32x32x8", "16x16x8"] and panels[-1]["kind"] == "softmax"
    assert "32x32x3 \u2192 conv 3x3/1 SAME, 8 filters, ReLU \u2192 32x32x8" in panels[0]["title"]
    assert page.find_element("id", "heat").is_displayed() and page.find_element("id", "cam").is_displayed()


def test_layer_view_caps_channels_and_a_model_without_conv_gets_a_note():
    import keras

    from kerascnn.models import create_model
    from kerascnn.serve import MAX_CHANNELS, Predictor

    digit = np.zeros((28, 28, 1), np.float32)
    digit[6:22, 12:16] = 1.0
    predictor = Predictor(create_model("sequential"))  # 32, 64 and 128 channels
    capped = predictor.predict(digit, member=1)["layers"]["stages"]
    full = predictor.predict(digit, member=1, all_channels=True)["layers"]["stages"]
    assert [st["channels"] for st in capped][:6] == [32, 32, 64, 64, 128, 128]
    assert [st["shown"] for st in capped][:6] == [32, 32, 64, 64, MAX_CHANNELS, MAX_CHANNELS]
    assert [st["shown"] for st in full][:6] == [32, 32, 64, 64, 128, 128]
    np.testing.assert_array_equal(stage_maps(full[4])[:MAX_CHANNELS], stage_maps(capped[4]))

    dense = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    plain = Predictor(dense)
    answer = plain.predict(digit, member=1)
    assert answer["layers"] == {"error": plain.layer_note} and "no convolution layer" in plain.layer_note
    assert len(answer["probabilities"]) == 10
    with pytest.raises(ValueError, match="no convolution layer"):
        plain.neuron(digit, 1, 0, 0, 0, 0)


def test_bad_command_lines_exit_2(tmp_path, small_run, capsys):
    cases = [(["serve", str(tmp_path / "missing")], f"{tmp_path / 'missing'}: no such file or directory"),  # named
             (["serve", small_run, "--port", "70000"], "must be an integer from 0 to 65535. Received: '70000'"),
             (["serve", small_run, "--port", "http"], "Received: 'http'")]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cases.append((["serve", small_run, "--port", str(taken.getsockname()[1])], "cannot listen on 127.0.0.1"))
        for argv, message in cases:
            with pytest.raises(SystemExit) as e:
                main(argv)
            assert e.value.code == 2
            assert message in capsys.readouterr().err, argv


def test_a_single_model_is_its_own_only_member():
    from kerascnn.models import create_model
    from kerascnn.serve import Predictor

    model = create_model("sequential")
    digit = to_mnist(np.eye(28)[::-1])  # a diagonal stroke, bright on black
    result = Predictor(model).predict(digit)
    expected = model.predict(digit[None], verbose=0)[0]
    np.testing.assert_allclose(result["probabilities"], expected, atol=1e-5)
    only = {"class": int(np.argmax(expected)), "probability": pytest.approx(float(expected.max()))}
    assert result["members"] == [only]


@pytest.mark.parametrize("host, warned", [("127.0.0.1", False), ("localhost", False), ("::1", False),
                                          ("0.0.0.0", True), ("192.168.1.20", True), ("myhost", True)])
def test_a_warning_when_not_listening_on_loopback(host, warned):
    assert (host_warning(host) is not None) == warned
    if warned:
        assert f"listening on {host}, not on loopback" in host_warning(host)


def test_page_ships_with_the_package():
    import configparser
    from importlib import resources

    assert os.path.getsize(resources.files("kerascnn") / "static" / "serve.html") > 1000
    setup = configparser.ConfigParser()
    setup.read(os.path.join(os.path.dirname(__file__), "..", "setup.cfg"))
    assert "static/serve.html" in setup["options.package_data"]["kerascnn"].split()
    assert "flask" in setup["options.extras_require"]["demo"].lower()
