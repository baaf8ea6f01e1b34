"""`python -m kerascnn serve`: the page in a real browser (headless Chromium), its API, and the command.

The server is the real one (`make_server`, threaded, on a free 127.0.0.1
port) with the small ensemble of `conftest.small_run`, loaded once for the
session. The browser draws a real handwritten 7 from the MNIST test set:
each row of its ink becomes one pointer stroke on the canvas.

    KERASCNN_SERVE_SCREENSHOT=docs/serve.png python -m pytest tests/test_serve.py -k seven

also saves the page with the drawn 7 as the README's screenshot.
"""

import base64
import concurrent.futures
import io
import os
import socket
import threading

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("flask", reason="`serve` needs Flask: pip install -e '.[test]' (or '.[demo]')")

from kerascnn import loading  # noqa: E402
from kerascnn.commands.results import main  # noqa: E402
from kerascnn.predict import load_digit, to_mnist  # noqa: E402
from kerascnn.serve import MAX_UPLOAD, host_warning, make_server  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1000,860", "--hide-scrollbars")
WAIT = 30  # seconds for the page to answer; a prediction takes milliseconds, the CPU is shared


@pytest.fixture(scope="session")
def server(small_run):
    """The real server on a free loopback port; `server.loads` counts model loads since it started."""
    real_load, loads = loading.load, []

    def counting_load(path):
        loads.append(path)
        return real_load(path)

    loading.load = counting_load  # a counter around the real function: `make_server` loads through it
    try:
        httpd = make_server(small_run, "127.0.0.1", 0)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        httpd.url = f"http://127.0.0.1:{httpd.server_port}/"
        httpd.loads, httpd.loads_at_start = loads, list(loads)
        yield httpd
    finally:
        loading.load = real_load
    httpd.shutdown()
    httpd.server_close()


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


def post(url, data, name="digit.png"):
    import requests

    response = requests.post(url + "api/predict", files={"image": (name, data)}, timeout=WAIT)
    return response.status_code, response.json()


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
    digits = mnist.x_test[:20].reshape(20, 28, 28)
    pictures = [png_bytes(np.kron(255 - d, np.ones((4, 4), np.uint8))) for d in digits]  # 112x112, dark on light
    loads = len(server.loads)
    barrier = threading.Barrier(20)

    def ask(data):
        barrier.wait()  # all 20 requests leave together
        return post(server.url, data)

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(ask, pictures))
    assert all(status == 200 for status, _ in answers), answers
    prepared = np.stack([to_mnist(np.asarray(Image.open(io.BytesIO(p)), np.float64) / 255.0) for p in pictures])
    expected = model_probabilities(server, prepared)
    np.testing.assert_allclose([body["probabilities"] for _, body in answers], expected, atol=1e-5)
    assert [body["class"] for _, body in answers] == list(np.argmax(expected, axis=1))
    assert server.loads_at_start == [small_run]  # loaded once, at startup...
    assert len(server.loads) == loads  # ...and never while answering


def test_bad_command_lines_exit_2(tmp_path, small_run, capsys):
    cases = [(["serve", str(tmp_path / "missing")], "no such file or directory"),
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
