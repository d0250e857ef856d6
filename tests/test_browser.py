"""The page in a real browser: Playwright (the pip package) driving Debian's Chromium, installed
by `.ci/run` with apt (`apt-get install -y chromium`; Playwright's own browser download does not
work here). Screenshots at 1280×800 and at a phone's 390 px are saved in `test-artifacts/` for
people to look at: a layout can be broken while every assertion holds. The video tab runs on a
short clip made here (bench.video's two drifting faces)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import pytest

from bench.video import FRAME_SIZE, synthetic_stream
from emotion import EMOTIONS
from emotion.explainers.registry import default_methods

from .conftest import ROOT, served_untrained_app

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTEFACTS = ROOT / "test-artifacts"
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
ANSWER_S = 180  # an explanation on 2 busy cores, with the model's first calls


@pytest.fixture(scope="module")
def page_url(untrained_folder, tmp_path_factory):
    log = tmp_path_factory.mktemp("browser") / "app.log"
    with served_untrained_app(untrained_folder, log, "--lime-samples", "64") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "The browser test drives Debian's Chromium: install it with `apt-get install -y chromium`."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _wait_for_the_page(page) -> None:
    # Not "networkidle": a page with per-session state keeps Gradio's heartbeat connection open.
    page.wait_for_load_state("load")
    page.get_by_role("button", name="Explain", exact=True).wait_for(timeout=60_000)


def _explain_and_wait(page, before: str | None = None) -> str:
    """Press Explain; return the timings line once a new answer is on the page."""
    page.get_by_role("button", name="Explain").click()
    timings = page.get_by_text(re.compile(r"ms\s+in all")).first
    timings.wait_for(timeout=ANSWER_S * 1000)
    if before is not None:
        page.wait_for_function(
            "([old]) => ![...document.querySelectorAll('p')].some(p => p.innerText === old)"
            " && [...document.querySelectorAll('p')].some(p => p.innerText.includes('in all'))",
            arg=[before],
            timeout=ANSWER_S * 1000,
        )
        timings = page.get_by_text(re.compile(r"ms\s+in all")).first
    # The page answers in two steps: the first one's summary says what is to follow. Wait for the
    # second, so no gallery is still being replaced when the answer is read.
    page.wait_for_function(
        "() => ![...document.querySelectorAll('p')].some(p => p.innerText.includes('to follow'))",
        timeout=ANSWER_S * 1000,
    )
    return timings.inner_text()


def _check_answer(page) -> None:
    probs = page.locator(".emotion-probs").inner_text()
    for emotion in EMOTIONS:
        assert re.search(rf"{emotion}\s+\d+(\.\d+)?%", probs), (emotion, probs)
    from playwright.sync_api import expect

    maps = page.locator(".emotion-maps img")
    # Grad-CAM and LIME, five emotions each; the images arrive after the text: wait for them.
    expect(maps).to_have_count(5 * len(default_methods()), timeout=30_000)
    captions = page.locator(".emotion-maps .caption-label").all_inner_texts()
    assert len(captions) == maps.count()
    for caption in captions:
        assert re.search(r"\d+ % background", caption), caption  # each map's figure
    assert sum("R²" in c for c in captions) == 5  # LIME's fit, under its five maps
    assert page.locator(".colour-scale-bar").is_visible()


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_the_page_explains_a_photo_then_an_example_in_a_real_browser(page_url, browser, viewport):
    page = browser.new_page(viewport=VIEWPORTS[viewport])
    try:
        page.goto(page_url)
        _wait_for_the_page(page)
        page.set_input_files("input[type=file]", str(ROOT / "app/examples/astronaut.jpg"))
        first = _explain_and_wait(page)
        _check_answer(page)
        ARTEFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTEFACTS / f"{viewport}.png"), full_page=True)
        # The drawn sad face among the examples: it replaces the photo, and explains.
        page.locator("button.gallery-item").nth(2).click()
        _explain_and_wait(page, before=first)
        _check_answer(page)
        page.screenshot(path=str(ARTEFACTS / f"{viewport}-example.png"), full_page=True)
        # Nothing runs off the side of a phone.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= VIEWPORTS[viewport]["width"], width
    finally:
        page.close()


# Records, in the page, when each method's gallery first holds its five maps and how many maps
# the other gallery held then: the order a person sees them in, whatever Playwright's polling misses.
WATCH_GALLERIES = """() => {
  window.seen = {};
  const count = (name) => document.querySelectorAll(`#maps-${name} img`).length;
  new MutationObserver(() => {
    for (const [name, other] of [["gradcam", "lime"], ["lime", "gradcam"]]) {
      if (window.seen[name] === undefined && count(name) >= 5) {
        window.seen[name] = {at: performance.now(), other: count(other)};
      }
    }
  }).observe(document.body, {subtree: true, childList: true, attributes: true});
}"""


def test_the_page_shows_grad_cam_first_then_lime_then_the_whole_result(page_url, browser):
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    try:
        page.goto(page_url)
        _wait_for_the_page(page)
        page.set_input_files("input[type=file]", str(ROOT / "app/examples/astronaut.jpg"))
        page.evaluate(WATCH_GALLERIES)
        page.get_by_role("button", name="Explain").click()
        page.wait_for_function("() => window.seen.lime !== undefined", timeout=ANSWER_S * 1000)
        seen = page.evaluate("window.seen")
        assert seen["gradcam"]["other"] == 0, seen  # Grad-CAM's five maps while LIME's were not there
        assert seen["gradcam"]["at"] < seen["lime"]["at"], seen
        assert seen["lime"]["other"] == 5, seen  # and still there when LIME's came
        _check_answer(page)  # then the whole result: probabilities, ten maps, their figures
        assert "to follow" not in page.locator("body").inner_text()
    finally:
        page.close()


CLIP_FPS, CLIP_FRAMES = 12, 30  # 2.5 s: about 13 analysed frames (5 a second), two faces each


def _write_clip(folder: Path) -> tuple[Path, bool]:
    """bench.video's two drifting faces as a clip in `folder`: VP8 WebM, which Chromium plays,
    where this OpenCV can write it, else MPEG-4 Part 2 in .mp4 (uploads and is read, but the
    browser cannot play it). Returns its path and whether it is the WebM."""
    frames = synthetic_stream(CLIP_FRAMES).frames
    for fourcc, suffix in (("VP80", ".webm"), ("mp4v", ".mp4")):
        path = folder / f"drifting-faces{suffix}"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), CLIP_FPS, FRAME_SIZE)
        if not writer.isOpened():
            continue
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
        if path.stat().st_size > 0:
            return path, suffix == ".webm"
    pytest.fail("This OpenCV build writes neither VP8 (.webm) nor mp4v (.mp4).")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_the_page_explains_a_video_in_a_real_browser(page_url, browser, viewport, tmp_path):
    from playwright.sync_api import expect

    clip, playable = _write_clip(tmp_path)
    page = browser.new_page(viewport=VIEWPORTS[viewport])
    try:
        page.goto(page_url)
        _wait_for_the_page(page)
        video_tab = page.get_by_role("tab", name="Video")
        expect(video_tab, "the video tab is hidden (behind Gradio's '...' menu?)").to_be_visible()
        video_tab.click()
        tab = page.locator("[role=tabpanel]:visible")  # the photo tab has a file input of its own
        run = tab.get_by_role("button", name="Explain video")
        run.wait_for()
        tab.locator("input[type=file]").set_input_files(str(clip))
        player = tab.locator("video")
        player.wait_for(timeout=30_000)
        if playable:  # Chromium reads the WebM: its metadata loads, without a media error
            page.wait_for_function(
                "v => v.readyState >= 1 || v.error !== null", arg=player.element_handle(), timeout=30_000
            )
            assert player.evaluate("v => v.error === null && v.duration > 2"), "the clip does not play"
        run.click()
        errors = page.locator(".toast-body.error")
        answer = tab.get_by_text(re.compile(r"ms\s+in all")).first
        answer.or_(errors.first).wait_for(timeout=ANSWER_S * 1000)
        assert errors.count() == 0, errors.all_inner_texts()
        # The outputs arrive together but the images load after the text: wait for them.
        expect(tab.locator(".timeline img")).to_be_visible(timeout=30_000)
        summary = tab.get_by_text(re.compile(r"^Face 1: seen")).first.inner_text()
        assert re.search(r"dominant emotion \w+ \d+%", summary), summary
        keys = tab.locator(".emotion-maps img")
        expect(keys.first).to_be_visible(timeout=30_000)
        captions = tab.locator(".emotion-maps .caption-label").all_inner_texts()
        assert len(captions) == keys.count()
        for caption in captions:  # "0:00.0 · face 1\nhappy 76% · start: happy"
            assert re.fullmatch(r"\d+:\d\d\.\d · face \d+\n\w+ \d+% · .+", caption.strip()), caption
        download = tab.locator("a[download$='-timeline.csv']")
        assert download.get_attribute("download") == f"{clip.stem}-timeline.csv"
        assert download.get_attribute("href")
        ARTEFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTEFACTS / f"{viewport}-video.png"), full_page=True)
        # Nothing runs off the side of a phone (the timeline plot scrolls inside its own box).
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= VIEWPORTS[viewport]["width"], width
    finally:
        page.close()
