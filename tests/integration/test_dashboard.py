"""The dashboard in a real headless Chromium against a real redis-server filled by a real replay.

Screenshots go to ``$DASHBOARD_SCREENSHOT_DIR`` when it is set (``docs/`` refreshes the ones the
docs show), else to the test's temporary folder. ``$DASHBOARD_SCREENSHOT_CARD`` (e.g.
``models/sbi_b0.toml``) serves that trained model instead of the random-weight test model, so
the screenshots show real scores; the assertions do not depend on the model.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--window-size=1300,1150")
PAGE_TIMEOUT_S = 60
UPLOAD_TIMEOUT_S = 150   # the first upload loads TensorFlow and the model


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser():
    found = _chromium()
    if found is None:
        pytest.skip("no Chromium here: install Debian's chromium and chromium-driver "
                    "(listed in scripts/apt-packages.txt) to run the browser tests")
    webdriver = pytest.importorskip("selenium.webdriver",
                                    reason="selenium is missing: pip install -e '.[test]'")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=found[1]), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT_S)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The random-weight test model, or the card named by $DASHBOARD_SCREENSHOT_CARD under its name."""
    card = os.environ.get("DASHBOARD_SCREENSHOT_CARD")
    if not card:
        return tiny_model_dir
    card_path = Path(card).resolve()
    folder = tmp_path_factory.mktemp("screenshot-model")
    lines = []
    for line in card_path.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "name":
            line = 'name = "tiny_b0"'
        elif key.strip() in ("weights", "tflite"):
            line = f'{key.strip()} = "{card_path.parent / value.strip().strip(chr(34))}"'
        lines.append(line)
    (folder / "tiny_b0.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def screenshot_dir(tmp_path_factory) -> Path:
    folder = os.environ.get("DASHBOARD_SCREENSHOT_DIR")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def served(app):
    """Serve a Dash app on a free loopback port in a thread; yields its URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        thread.join(10)


def dashboard_config(tiny_model_dir: Path, prefix: str, max_upload_mb: float = 1.0):
    from detector.config import config_from_dict

    return config_from_dict({
        "model": {"name": "tiny_b0", "dir": str(tiny_model_dir)},
        "workers": {"count": 1, "max_batch": 8, "max_wait_ms": 20},
        "faces": {"detector": "haar"},
        "redis": {"embedded_port": 0, "prefix": prefix},
        "metrics": {"enabled": False},
        "dashboard": {"max_upload_mb": max_upload_mb, "thumbnail_interval_s": 0.1},
    })


def wait_for(driver, predicate, timeout_s: float, message: str):
    """Poll the page until ``predicate(driver)`` is truthy; fail with the page's text."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = predicate(driver)
        except Exception:  # noqa: BLE001 - stale or not-yet-rendered elements: poll again
            value = None
        if value:
            return value
        time.sleep(0.2)
    body = driver.find_element("tag name", "body").text
    raise AssertionError(f"timed out after {timeout_s} s waiting for {message}; page:\n{body[:2000]}")


def text_of(driver, css: str) -> str:
    return driver.find_element("css selector", css).text


@pytest.fixture(scope="module")
def replayed(tiny_model_dir, face_video, redis_server, tmp_path_factory):
    """A real replay of the face video into Redis under a prefix of its own."""
    from app.replay import run_replay

    config = dashboard_config(tiny_model_dir, f"dash{uuid.uuid4().hex[:8]}")
    report = tmp_path_factory.mktemp("replay") / "report.json"
    code = run_replay(config, [str(face_video)], redis_url=redis_server.url,
                      report_path=report, show_progress=False)
    assert code == 0, report.read_text() if report.exists() else "no report"
    return config


@pytest.fixture(scope="module")
def live_url(replayed, redis_server):
    from app.dashboard import dashboard_app

    with served(dashboard_app(replayed, redis_server.url, refresh_interval_ms=300)) as url:
        yield url


@pytest.fixture
def live_page(live_url, browser):
    """The dashboard of the replayed stream, freshly loaded; the test fails on console errors."""
    with opened(browser, live_url):
        yield browser


@contextmanager
def opened(driver, url: str):
    """Load ``url``; afterwards check that no callback failed in the browser (a failing
    callback logs a SEVERE console entry) and leave the page before its server stops."""
    driver.get(url)
    driver.get_log("browser")   # the console log starts here
    yield driver
    severe = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    driver.get("about:blank")
    driver.get_log("browser")
    assert not severe, "\n".join(severe)


@pytest.fixture(scope="module")
def face_image(face_video, tmp_path_factory) -> Path:
    """Frame 0 of the face video as a JPEG."""
    import cv2

    from producers.file_source import FileSource

    source = FileSource(face_video)
    try:
        frame = next(iter(source.frames()))
    finally:
        source.close()
    path = tmp_path_factory.mktemp("images") / "face.jpg"
    cv2.imwrite(str(path), frame.image_bgr)
    return path


def upload(driver, path: Path) -> None:
    field = wait_for(driver, lambda d: d.find_element("css selector", "#upload input[type=file]"),
                     PAGE_TIMEOUT_S, "the upload field")   # dcc.Upload's code loads lazily
    field.send_keys(str(path))


def test_the_replayed_stream_appears_with_its_score_history_and_thumbnail(
        live_page, replayed, redis_server, screenshot_dir):
    # given a replay of driving.mp4 in Redis; when the page is open
    rows = wait_for(live_page, lambda d: d.find_elements("css selector", "tr.stream-row"),
                    PAGE_TIMEOUT_S, "the stream row")
    # then its row shows the final state
    assert len(rows) == 1
    wait_for(live_page, lambda d: "finished" in text_of(d, "tr.stream-row .col-status"),
             PAGE_TIMEOUT_S, "status finished")
    assert text_of(live_page, "tr.stream-row .col-stream") == "driving"
    assert text_of(live_page, "tr.stream-row .col-verdict") in ("REAL", "FAKE")
    assert text_of(live_page, "tr.stream-row .col-scored") == "11"
    assert "Connected to Redis" in text_of(live_page, "#connection-banner")
    # and the chart has one dot per scored frame with a face, and the threshold line
    points = wait_for(live_page, lambda d: d.find_elements(
        "css selector", "#history-chart .scatterlayer .trace:first-child .point"),
        PAGE_TIMEOUT_S, "chart points")
    assert 1 <= len(points) <= 11
    from detector.worker import load_card

    threshold = load_card(replayed).threshold
    assert f"threshold {threshold:.2f}" in text_of(live_page, "#history-chart")
    # and the selected stream's latest frame is shown
    wait_for(live_page, lambda d: d.find_elements("css selector", "#thumbnail-image"),
             PAGE_TIMEOUT_S, "the thumbnail")
    assert "frame 40" in text_of(live_page, "#thumbnail-panel")
    live_page.save_screenshot(str(screenshot_dir / "dashboard-live.png"))


def test_new_history_points_reach_the_open_page_without_a_reload(live_page, replayed, redis_server):
    import redis

    from detector.redis_keys import RedisKeys

    # given the open page showing driving's chart
    wait_for(live_page, lambda d: d.find_elements("css selector", "#history-chart .point"),
             PAGE_TIMEOUT_S, "chart points")
    before = len(live_page.find_elements("css selector", "#history-chart .scatterlayer .trace:first-child .point"))
    # when the service appends a scored frame
    client = redis.Redis.from_url(redis_server.url)
    client.xadd(RedisKeys(replayed.redis.prefix).history("driving"),
                {"frame_index": 44, "capture_time": time.time(), "frame_score": "0.9",
                 "rolling_score": "0.6", "verdict": "FAKE", "faces": 1, "latency_ms": "12.0"})
    client.close()
    # then the chart grows by one point
    wait_for(live_page, lambda d: len(d.find_elements(
        "css selector", "#history-chart .scatterlayer .trace:first-child .point")) == before + 1,
        10, "the new point")


def test_an_uploaded_image_gets_a_verdict_its_face_crop_and_a_heat_map(
        live_page, face_image, screenshot_dir):
    # when a face photo is uploaded
    upload(live_page, face_image)
    # then the page shows a verdict, the crop that drove it and its Grad-CAM map
    verdict = wait_for(live_page, lambda d: d.find_element("css selector", "#upload-verdict").text,
                       UPLOAD_TIMEOUT_S, "the upload verdict")
    assert verdict.split()[0] in ("REAL", "FAKE")
    assert live_page.find_elements("css selector", "#upload-crops img.face-crop")
    assert live_page.find_elements("css selector", "#upload-why img.gradcam")
    assert "face.jpg" in text_of(live_page, "#upload-report")


def test_an_uploaded_video_gets_a_verdict_and_a_per_frame_chart(
        live_page, face_video, screenshot_dir):
    upload(live_page, face_video)
    wait_for(live_page, lambda d: "driving.mp4" in d.find_element("css selector", "#upload-report").text,
             UPLOAD_TIMEOUT_S, "the video's report")
    assert text_of(live_page, "#upload-verdict").split()[0] in ("REAL", "FAKE")
    assert "11 sampled frames" in text_of(live_page, "#upload-report")
    assert live_page.find_elements("css selector", "#upload-chart .scatterlayer .point")
    section = live_page.find_element("css selector", "#upload-section")
    live_page.execute_script("arguments[0].scrollIntoView();", section)
    section.screenshot(str(screenshot_dir / "dashboard-upload.png"))


@pytest.mark.parametrize("name, content, message", [
    ("notes.txt", b"hello", "unsupported file type .txt"),
    ("clip.mp4", b"this is not a video at all", "not a readable video"),
    ("big.mp4", b"\0" * 1_500_000, "the limit is 1 MB"),
    ("photo.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "not a readable image"),
    # a decompression bomb: 40000×40000 declared in 100 bytes, refused from its header
    ("bomb.png", None, "40000×40000 pixels is over the limit"),
])
def test_a_bad_upload_shows_a_clear_message(live_page, tmp_path, screenshot_dir, name, content, message):
    if content is None:
        from tests.unit.test_upload import png_header

        content = png_header(40000, 40000)
    path = tmp_path / name
    path.write_bytes(content)
    upload(live_page, path)
    error = wait_for(live_page, lambda d: d.find_element("css selector", "#upload-error").text,
                     UPLOAD_TIMEOUT_S, "the upload error")
    assert message in error and name in error
    if name == "big.mp4":
        live_page.find_element("css selector", "#upload-section").screenshot(
            str(screenshot_dir / "dashboard-upload-error.png"))


def test_attach_and_detach_go_through_the_control_channel_and_hide_credentials(
        live_page, replayed, redis_server, screenshot_dir):
    import redis

    from app.control import ControlServer
    from detector.redis_keys import RedisKeys

    # given a service answering the control channel
    received = []

    def attach(stream_id, url, stride):
        received.append((stream_id, url, stride))
        return f"attached {stream_id} ({url})"

    def detach(stream_id):
        from detector.errors import DetectorError

        raise DetectorError(f"no stream with id {stream_id!r}")

    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    client.set(RedisKeys(replayed.redis.prefix).service, '{"pid": 1}', ex=120)  # its heartbeat
    control = ControlServer(client, RedisKeys(replayed.redis.prefix), attach, detach).start()
    try:
        # when an RTSP URL with a password is attached from the form
        field = wait_for(live_page, lambda d: d.find_element("css selector", "#attach-url"),
                         PAGE_TIMEOUT_S, "the form")
        field.clear()
        field.send_keys("rtsp://admin:s3cret@10.0.0.5:554/live")
        live_page.find_element("css selector", "#attach-stride").send_keys("2")
        live_page.find_element("css selector", "#attach-button").click()
        reply = wait_for(live_page, lambda d: d.find_element("css selector", "#control-message").text,
                         30, "the attach reply")
        # then the service got the real URL, and the page shows neither the password nor the user
        assert received == [("live", "rtsp://admin:s3cret@10.0.0.5:554/live", 2)]
        assert "attached live" in reply and "s3cret" not in reply and "admin" not in reply
        assert live_page.find_element("css selector", "#attach-url").get_attribute("value") == ""
        assert "s3cret" not in live_page.find_element("tag name", "body").get_attribute("innerHTML")
        section = live_page.find_element("css selector", "#control-section")
        live_page.execute_script("arguments[0].scrollIntoView();", section)
        section.screenshot(str(screenshot_dir / "dashboard-attach.png"))
        # when an unknown stream is detached, the refusal is shown
        live_page.find_element("css selector", "#attach-id").send_keys("nope")
        live_page.find_element("css selector", "#detach-button").click()
        wait_for(live_page, lambda d: "no stream with id 'nope'" in
                 d.find_element("css selector", "#control-message").text, 30, "the detach refusal")
        # when a file that does not exist is attached, the form refuses it with the reason
        field = live_page.find_element("css selector", "#attach-url")
        field.clear()
        field.send_keys("/nonexistent/clip.mp4")
        live_page.find_element("css selector", "#attach-button").click()
        wait_for(live_page, lambda d: "/nonexistent/clip.mp4: file not found" in
                 d.find_element("css selector", "#control-message").text, 30, "the attach refusal")
        assert len(received) == 1, "nothing was sent to the service"
    finally:
        control.stop()
        client.close()


def test_an_empty_redis_shows_the_no_streams_yet_state(tiny_model_dir, redis_server, browser,
                                                        screenshot_dir):
    from app.dashboard import dashboard_app

    config = dashboard_config(tiny_model_dir, f"empty{uuid.uuid4().hex[:8]}")
    with served(dashboard_app(config, redis_server.url, refresh_interval_ms=300)) as url, \
            opened(browser, url):
        text = wait_for(browser, lambda d: d.find_element("css selector", "#empty-state").text,
                        PAGE_TIMEOUT_S, "the empty state")
        assert "No streams yet" in text
        wait_for(browser, lambda d: "Connected to Redis" in text_of(d, "#connection-banner"),
                 PAGE_TIMEOUT_S, "connected banner")
        assert "no service running" in text_of(browser, "#connection-banner")
        browser.save_screenshot(str(screenshot_dir / "dashboard-empty.png"))


def start_redis_server(port: int) -> subprocess.Popen:
    """A plain redis-server on ``port`` (it sets SO_REUSEADDR, so a restart on the same port
    works while old connections linger in TIME_WAIT)."""
    import redis

    from detector.embedded_redis import find_redis_server

    process = subprocess.Popen(
        [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answers():
        try:
            return redis.Redis(port=port, socket_timeout=1).ping()
        except redis.ConnectionError:
            assert process.poll() is None, "redis-server exited at start"
            return False

    wait_until(answers, 10, message="redis-server to answer")
    return process


def test_redis_going_away_shows_disconnected_and_the_page_recovers(tiny_model_dir, browser,
                                                                   screenshot_dir):
    import redis

    from app.dashboard import dashboard_app
    from detector.embedded_redis import find_redis_server, free_port
    from detector.errors import RedisUnavailableError

    try:
        find_redis_server()
    except RedisUnavailableError as exc:
        pytest.skip(str(exc))
    config = dashboard_config(tiny_model_dir, "deepfake")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    process = start_redis_server(port)
    try:
        client = redis.Redis.from_url(url)
        client.hset("deepfake:streams", "cam1", json.dumps(
            {"status": "running", "source": "rtsp://***@cam/live", "kind": "live",
             "rolling_score": 0.2, "verdict": "REAL", "fps": 7.5, "frames_scored": 30,
             "frames_dropped": 4, "latency_ms": 85.0}))
        client.close()
        with served(dashboard_app(config, url, refresh_interval_ms=300)) as page_url, \
                opened(browser, page_url):
            wait_for(browser, lambda d: "cam1" in text_of(d, "#streams-table"), PAGE_TIMEOUT_S,
                     "the stream row")
            # when Redis goes away
            process.terminate()
            process.wait(10)
            wait_for(browser, lambda d: "Disconnected" in text_of(d, "#connection-banner"), 20,
                     "the disconnected banner")
            assert "cam1" in text_of(browser, "#streams-table")   # the last known state stays
            browser.save_screenshot(str(screenshot_dir / "dashboard-disconnected.png"))
            # then, when it is back on the same port, the page recovers without a reload
            process = start_redis_server(port)
            wait_for(browser, lambda d: "Connected to Redis" in text_of(d, "#connection-banner"),
                     20, "the connected banner")
            wait_for(browser, lambda d: d.find_elements("css selector", "#empty-state"), 20,
                     "the (now empty) table")
    finally:
        process.terminate()
        process.wait(10)


def _write_config(tmp_path: Path, tiny_model_dir: Path, prefix: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[model]\nname = "tiny_b0"\ndir = "{tiny_model_dir}"\n[faces]\ndetector = "haar"\n'
        f'[workers]\ncount = 1\n[redis]\nembedded_port = 0\nprefix = "{prefix}"\n'
        '[metrics]\nenabled = false\n[dashboard]\nthumbnail_interval_s = 0.1\n', encoding="utf-8")
    return path


def test_a_file_attached_from_the_form_is_scored_by_the_running_service(
        tmp_path, tiny_model_dir, face_video, redis_server, browser):
    import redis

    from app.dashboard import dashboard_app
    from detector.config import load_config

    # given `deepfake-detector run` serving the control channel
    prefix = f"svc{uuid.uuid4().hex[:8]}"
    config_path = _write_config(tmp_path, tiny_model_dir, prefix)
    service = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", "--config", str(config_path),
         "--redis-url", redis_server.url],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    client = redis.Redis.from_url(redis_server.url)
    try:
        wait_until(lambda: client.exists(f"{prefix}:service"), 90, message="service heartbeat")
        app = dashboard_app(load_config(config_path), redis_server.url, refresh_interval_ms=300)
        with served(app) as url, opened(browser, url):
            wait_for(browser, lambda d: "service running" in text_of(d, "#connection-banner"),
                     PAGE_TIMEOUT_S, "the service in the banner")
            # when the face video is attached from the form
            browser.find_element("css selector", "#attach-url").send_keys(str(face_video))
            browser.find_element("css selector", "#attach-id").send_keys("cam1")
            browser.find_element("css selector", "#attach-button").click()
            reply = wait_for(browser, lambda d: d.find_element("css selector", "#control-message").text,
                             30, "the attach reply")
            assert "attached cam1" in reply
            # then the stream shows up and is scored to the end, live on the page
            wait_for(browser, lambda d: any(
                "cam1" in row.text and "finished" in row.text
                for row in d.find_elements("css selector", "tr.stream-row")), 120, "cam1 finished")
            wait_for(browser, lambda d: len(d.find_elements(
                "css selector", "#history-chart .scatterlayer .trace:first-child .point")) >= 1,
                PAGE_TIMEOUT_S, "cam1's chart")
    finally:
        client.close()
        service.send_signal(signal.SIGINT)
        output, _ = service.communicate(timeout=60)
    assert service.returncode == 0, output


def _sigint_ignored() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("stop_signal, start_with_sigint_ignored", [
    (signal.SIGINT, False),
    # as from a non-interactive shell's background job (`cmd &`), where Python installs no
    # KeyboardInterrupt: the dashboard's own handler must still stop it
    (signal.SIGINT, True),
    (signal.SIGTERM, False),
], ids=["ctrl_c", "ctrl_c_started_with_sigint_ignored", "sigterm"])
def test_the_dashboard_subcommand_serves_the_page_and_stops_on_ctrl_c(
        tmp_path, tiny_model_dir, stop_signal, start_with_sigint_ignored):
    import urllib.request

    from detector.embedded_redis import free_port

    port = free_port()
    config_path = _write_config(tmp_path, tiny_model_dir, "deepfake")
    # Redis is down on purpose: the page must still come up (and say "disconnected").
    # -X faulthandler: if it ever fails to stop, SIGABRT makes it print every thread's stack.
    process = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-m", "app.cli", "dashboard", "--config",
         str(config_path), "--redis-url", "redis://127.0.0.1:1/0", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=_sigint_ignored if start_with_sigint_ignored else None)

    def layout():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_dash-layout", timeout=2) as r:
                return r.read().decode()
        except OSError:
            assert process.poll() is None, process.communicate()[0]
            return None

    try:
        page = wait_until(layout, 60, interval_s=0.3, message="the dashboard to serve")
        assert "Live streams" in page and "Upload a video or image" in page
    finally:
        process.send_signal(stop_signal)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            output, _ = process.communicate(timeout=30)
            pytest.fail(f"the dashboard did not stop within 30 s of {stop_signal.name}; "
                        f"its threads:\n{output}")
    assert process.returncode == 0, output
    assert "Traceback" not in output
    # the address is printed once (Dash's own "Dash is running on" no longer doubles it)
    assert output.count(f"http://127.0.0.1:{port}/") == 1, output
    assert "Dash is running" not in output


def click_point_and_read_why(driver, point: int) -> str:
    """Click the ``point``-th point of the history chart; the text of the "why" panel."""
    from selenium.webdriver.common.action_chains import ActionChains

    points = wait_for(driver, lambda d: d.find_elements(
        "css selector", "#history-chart .scatterlayer .trace:first-child .point"),
        PAGE_TIMEOUT_S, "chart points")
    ActionChains(driver).move_to_element(points[point]).click().perform()
    return wait_for(driver, lambda d: d.find_element("css selector", "#frame-why").text,
                    UPLOAD_TIMEOUT_S, "the frame's explanation")


def test_clicking_a_point_of_a_file_stream_explains_that_frame(live_page, screenshot_dir):
    # given the replayed stream's chart, when its third point is clicked, then that frame is
    # decoded again from the file and its face gets a heat map
    why = click_point_and_read_why(live_page, 2)
    assert "driving frame 8" in why
    assert live_page.find_elements("css selector", "#frame-why-tiles img.gradcam")
    live_page.find_element("css selector", "#live-section").screenshot(
        str(screenshot_dir / "dashboard-why-frame.png"))


@pytest.fixture(scope="module")
def live_stream_url(tiny_model_dir, face_image, redis_server):
    """A dashboard over a live stream whose results and kept frames a real collector wrote."""
    import cv2
    import redis

    from app.dashboard import dashboard_app
    from detector.collector import Collector
    from detector.redis_keys import RedisKeys
    from detector.redis_sink import RedisSink
    from detector.wire import FaceResult, FrameMessage, ResultMessage

    config = dashboard_config(tiny_model_dir, f"live{uuid.uuid4().hex[:8]}")
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    collector = Collector(RedisSink(client, RedisKeys(config.redis.prefix), 100), threshold=0.5,
                          window=4, model_id="tiny_b0@test")
    collector.register("lobby", "rtsp://127.0.0.1:8554/lobby", "live")
    frame = cv2.imread(str(face_image))
    for index in range(0, 24, 4):
        now = time.time()
        nonce = collector.stream("lobby").nonce
        message = FrameMessage("lobby", index, None, now, frame, want_thumbnail=True, nonce=nonce)
        collector.ledger.sent(message, keep=False)
        collector.keep_frame(message)
        collector.handle_result(ResultMessage(
            "lobby", index, None, now, (FaceResult((10.0, 10.0, 90.0, 90.0), 0.9, 0.3),), "w0", 1,
            {}, thumbnail_jpeg=cv2.imencode(".jpg", frame)[1].tobytes(), nonce=nonce))
    with served(dashboard_app(config, redis_server.url, refresh_interval_ms=300)) as url:
        yield url
    client.close()


def test_clicking_a_point_of_a_live_stream_explains_its_latest_kept_frame(live_stream_url, browser):
    with opened(browser, live_stream_url):
        why = click_point_and_read_why(browser, 1)
        assert "lobby frame 20, the live stream's latest kept frame" in why
        assert browser.find_elements("css selector", "#frame-why-tiles img.gradcam")


def test_the_page_opens_on_the_most_active_stream_and_never_shows_unscored_streams_as_no_face(
        tiny_model_dir, redis_server, browser, screenshot_dir):
    import redis

    from app.dashboard import dashboard_app

    # given a camera that never delivered a frame (first alphabetically), a failed file, an
    # ended stream past its expiry, and a stream with fresh scores and a four-digit latency
    prefix = f"active{uuid.uuid4().hex[:8]}"
    now = time.time()
    client = redis.Redis.from_url(redis_server.url)
    client.hset(f"{prefix}:streams", mapping={
        "aaa-door": json.dumps({"status": "reconnecting", "kind": "live", "frames_scored": 0,
                                "verdict": "NO_FACE", "updated_at": now}),
        "bbb-file": json.dumps({"status": "failed", "kind": "file", "frames_scored": 0,
                                "error": "not a video file", "updated_at": now - 5}),
        "ccc-old": json.dumps({"status": "finished", "kind": "file", "frames_scored": 9,
                               "verdict": "REAL", "ended_at": now - 100, "expires_at": now - 1}),
        "zzz-busy": json.dumps({"status": "running", "kind": "live", "frames_scored": 40,
                                "rolling_score": 0.2, "verdict": "REAL", "fps": 7.0,
                                "latency_ms": 1375.0, "scored_at": now - 1, "updated_at": now - 1}),
    })
    client.close()
    config = dashboard_config(tiny_model_dir, prefix)
    with served(dashboard_app(config, redis_server.url, refresh_interval_ms=300)) as url, \
            opened(browser, url):
        browser.set_window_size(800, 900)   # a narrow window: numbers must still not wrap
        wait_for(browser, lambda d: "zzz-busy" in text_of(d, "#streams-table"), PAGE_TIMEOUT_S,
                 "the stream rows")
        rows = {row.find_element("css selector", ".col-stream").text: row
                for row in browser.find_elements("css selector", "tr.stream-row")}
        # then the expired stream is not listed, and unscored streams are PENDING / FAILED
        assert sorted(rows) == ["aaa-door", "bbb-file", "zzz-busy"]
        assert rows["aaa-door"].find_element("css selector", ".col-verdict").text == "PENDING"
        assert rows["bbb-file"].find_element("css selector", ".col-verdict").text == "FAILED"
        # and the latency stays on one line
        latency = rows["zzz-busy"].find_element("css selector", ".col-latency")
        assert latency.text == "1375 ms"
        assert latency.value_of_css_property("white-space") == "nowrap"
        fps = rows["zzz-busy"].find_element("css selector", ".col-fps")
        assert latency.size["height"] <= fps.size["height"] + 1
        # and the page opened on the stream with the latest scores, not the first name
        selected = wait_for(browser, lambda d: d.find_element(
            "css selector", "#stream-select input:checked").get_attribute("value"),
            PAGE_TIMEOUT_S, "a selected stream")
        assert selected == "zzz-busy"
        browser.save_screenshot(str(screenshot_dir / "dashboard-pending.png"))


def test_the_dashboard_on_a_taken_port_is_one_sentence(tmp_path, tiny_model_dir):
    import socket

    config_path = _write_config(tmp_path, tiny_model_dir, "deepfake")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", "dashboard", "--config", str(config_path),
             "--redis-url", "redis://127.0.0.1:1/0", "--port", str(port)],
            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in result.stderr


def test_two_face_tracks_draw_two_lines_in_the_history_chart(tiny_model_dir, redis_server, browser):
    import redis

    from app.dashboard import dashboard_app
    from detector.records import ScoreRecord, StatusRecord

    # given a stream whose history (written by the records the service writes) has two tracks
    prefix = f"tracks{uuid.uuid4().hex[:8]}"
    now = time.time()
    client = redis.Redis.from_url(redis_server.url)
    client.hset(f"{prefix}:streams", "two-faces", StatusRecord(
        "two-faces", "running", "rtsp://cam/live", "live", updated_at=now, frames_scored=6,
        rolling_score=0.8, verdict="FAKE", scored_at=now).to_redis())
    for step in range(6):
        tracks = [{"track_id": 1, "rolling_score": 0.2, "status": "live"}]
        if step >= 2:
            tracks.append({"track_id": 2, "rolling_score": 0.8, "status": "live"})
        record = ScoreRecord("two-faces", step * 4, 0.8 if step >= 2 else 0.2, 0.8, "FAKE",
                             capture_time=now, latency_ms=10.0, tracks=tuple(tracks))
        client.xadd(f"{prefix}:history:two-faces", record.history_entry().to_redis())
    client.close()
    config = dashboard_config(tiny_model_dir, prefix)
    with served(dashboard_app(config, redis_server.url, refresh_interval_ms=300)) as url, \
            opened(browser, url):
        # when the page shows it; then the chart has one line per track, named after it
        names = wait_for(browser, lambda d: [e.text for e in d.find_elements(
            "css selector", "#history-chart .legend .legendtext")] or None,
            PAGE_TIMEOUT_S, "the chart legend")
        assert [n for n in names if n.startswith("track")] == ["track 1", "track 2"]
        lines = [e for e in browser.find_elements(
            "css selector", "#history-chart .scatterlayer .trace path.js-line")
            if e.get_attribute("d")]
        assert len(lines) == 2
