"""The live tab in a real browser: Chromium with a fake camera playing a clip this test writes (a
drawn face, happy for 3 s, then angry for 3 s, looping) against the app serving the shipped demo
model, which reads drawn faces. Annotated frames arrive, the top emotion follows the face from
happy to angry, the stream stops itself at its time limit, the snapshot is explained on the photo
tab, a third viewer waits for a place while two stream, and a browser without a camera is told
so. The median round trip (a frame leaving the
browser to its annotated frame decoded on the page) is printed; screenshots at 1280×800 and
390 px go to `test-artifacts/`."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.live import moving_face_frames, write_y4m

from .conftest import running
from .test_browser import ARTEFACTS, CHROMIUM, VIEWPORTS, _wait_for_the_page

pytestmark = pytest.mark.slow

CLIP_FPS, SECONDS_EACH = 10, 3
LIMIT_S = 15  # the stream's time limit for this test: room to see both emotions, then the stop
# Records when each frame leaves (the POST of its data to Gradio's stream route) and when each
# annotated frame the server sends back is decoded in the page.
TIMING_JS = """
window.__sent = []; window.__shown = [];
const realFetch = window.fetch;
window.fetch = function (url, options) {
  const address = String((url && url.url) || url);
  if (options && options.method === "POST" && /\\/stream\\/[^/]+$/.test(address)) {
    window.__sent.push(performance.now());
  }
  return realFetch.apply(this, arguments);
};
new MutationObserver(() => {
  const img = document.querySelector("#live-view img");
  if (img && img.src && img.src !== window.__lastSrc) {
    window.__lastSrc = img.src;
    img.decode().then(() => window.__shown.push(performance.now())).catch(() => {});
  }
}).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ["src"] });
"""


@pytest.fixture(scope="module")
def live_url(tmp_path_factory):
    log = tmp_path_factory.mktemp("browser-live") / "app.log"
    args = ["-m", "app", "--live-seconds", str(LIMIT_S), "--lime-samples", "64"]
    with running(args, log, env={"EMOTION_MODEL": ""}) as url:  # the shipped demo model
        yield url


@pytest.fixture(scope="module")
def camera_clip(tmp_path_factory) -> Path:
    frames = moving_face_frames(CLIP_FPS * SECONDS_EACH, "happy") + moving_face_frames(
        CLIP_FPS * SECONDS_EACH, "angry"
    )
    return write_y4m(frames, tmp_path_factory.mktemp("camera") / "happy-then-angry.y4m", CLIP_FPS)


@contextmanager
def chromium(*args: str) -> Iterator:
    """Debian's Chromium, launched with `args`, for the length of a `with` block."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(
            "The browser test drives Debian's Chromium: install it with `apt-get install -y chromium`."
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", *args])
        try:
            yield browser
        finally:
            browser.close()


def fake_camera(clip: Path) -> list[str]:
    """Chromium's flags for a camera that plays `clip`, granted without asking."""
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={clip}",
    ]


def _open_live_tab(page, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(url)
    _wait_for_the_page(page)
    tab = page.get_by_role("tab", name="Live")
    expect(tab, "the live tab is hidden (behind Gradio's '...' menu?)").to_be_visible()
    tab.click()


def _top_emotion(page) -> str | None:
    heading = page.locator("#live-probs h2")
    return heading.inner_text().strip() if heading.count() else None


def round_trips_ms(sent: list[float], shown: list[float]) -> list[float]:
    """For each annotated frame shown, the time since the latest frame sent before it: the frame
    the server was free for, as Gradio hands a stream its newest data."""
    trips = []
    for t in shown:
        before = [s for s in sent if s <= t]
        if before:
            trips.append(t - before[-1])
    return trips


def test_round_trips_pair_each_shown_frame_with_the_latest_sent_before_it():
    assert round_trips_ms([0, 100, 200], [40, 150, 260, 270]) == [40, 50, 60, 70]
    assert round_trips_ms([100], [50]) == []  # shown before anything was sent: no pair


def test_the_live_tab_follows_a_face_from_happy_to_angry_with_its_map(live_url, camera_clip):
    from playwright.sync_api import expect

    with chromium(*fake_camera(camera_clip)) as browser:
        page = browser.new_page(viewport=VIEWPORTS["desktop"])
        page.add_init_script(TIMING_JS)
        _open_live_tab(page, live_url)
        expect(page.locator("#no-camera")).to_have_text("")  # a camera is there: nothing said
        page.get_by_text("Click to Access Webcam").click()
        page.locator("#live-camera button.capture-button").click()  # Record
        started = time.monotonic()
        expect(page.locator("#live-view img")).to_be_visible(timeout=30_000)

        # The clip's face is happy, then angry: the page's top emotion follows it.
        seen: list[str] = []
        while time.monotonic() - started < LIMIT_S - 3 and not (
            "happy" in seen and "angry" in seen[seen.index("happy") :]
        ):
            top = _top_emotion(page)
            if top and (not seen or seen[-1] != top):
                seen.append(top)
            time.sleep(0.2)
        assert "happy" in seen and "angry" in seen[seen.index("happy") :], seen
        ARTEFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTEFACTS / "desktop-live.png"), full_page=True)
        page.set_viewport_size(VIEWPORTS["phone"])
        time.sleep(1)
        page.screenshot(path=str(ARTEFACTS / "phone-live.png"), full_page=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= VIEWPORTS["phone"]["width"], width

        # At its time limit the stream says so, and the camera stops sending.
        status = page.locator("#live-status")
        expect(status).to_contain_text("stopped after", timeout=(LIMIT_S + 15) * 1000)
        expect(page.locator('#live-camera [title="start recording"]')).to_be_visible(timeout=10_000)
        sent = page.evaluate("window.__sent.length")
        time.sleep(1.5)
        assert page.evaluate("window.__sent.length") == sent, "frames still leave after the stop"

        sent_ms, shown_ms = page.evaluate("[window.__sent, window.__shown]")
        trips = round_trips_ms(sent_ms, shown_ms)
        assert len(shown_ms) >= 20, f"only {len(shown_ms)} annotated frames shown"
        print(
            f"\nlive tab in Chromium (loopback): {len(sent_ms)} frames sent, {len(shown_ms)} annotated "
            f"frames shown, round trip median {statistics.median(trips):.0f} ms "
            f"(p90 {statistics.quantiles(trips, n=10)[-1]:.0f} ms)"
        )

        # The snapshot: the latest frame explained in full on the photo tab.
        page.set_viewport_size(VIEWPORTS["desktop"])
        page.locator("#live-snapshot").click()
        expect(page.locator("#maps-gradcam img")).to_have_count(5, timeout=120_000)
        expect(page.locator("#maps-lime img")).to_have_count(5, timeout=120_000)
        probs = page.locator(".emotion-probs").inner_text()
        assert "happy" in probs and "angry" in probs, probs


def test_a_third_viewer_waits_for_a_place_and_gets_it_when_a_stream_stops(live_url, camera_clip):
    # The page serves 2 streams at once (app.ui.LIVE_STREAMS); a third waits in the queue.
    from playwright.sync_api import expect

    from app.ui import LIVE_STREAMS

    with chromium(*fake_camera(camera_clip)) as browser:
        pages = [browser.new_context().new_page() for _ in range(LIVE_STREAMS + 1)]
        for page in pages:
            _open_live_tab(page, live_url)
            page.get_by_text("Click to Access Webcam").click()
        for page in pages:
            page.locator("#live-camera button.capture-button").click()  # Record
            page.wait_for_timeout(300)
        *served, third = pages
        for page in served:
            expect(page.locator("#live-view img")).to_be_visible(timeout=30_000)
        expect(third.locator("#live-camera .capture-button")).to_contain_text("Waiting")
        assert third.locator("#live-view img").count() == 0
        # once the first streams stop at their time limit, the third is served
        expect(third.locator("#live-view img")).to_be_visible(timeout=(LIMIT_S + 20) * 1000)


def test_without_a_camera_the_live_tab_says_so(live_url):
    from playwright.sync_api import expect

    with chromium() as browser:  # headless Chromium with no fake camera has none
        page = browser.new_page(viewport=VIEWPORTS["phone"])
        _open_live_tab(page, live_url)
        expect(page.locator("#no-camera")).to_contain_text("gives the page no camera", timeout=10_000)
