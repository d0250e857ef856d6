"""The overlays and the page's colour bar come from one colour map."""

from __future__ import annotations

import re

import numpy as np

from emotion.explainers.render import blend, colour_scale_html, heat_colours


def test_the_colour_bar_shows_the_overlays_colours_from_low_to_high():
    stops = [tuple(map(int, m)) for m in re.findall(r"rgb\((\d+),(\d+),(\d+)\)", colour_scale_html(stops=5))]
    assert stops == [tuple(c) for c in heat_colours(np.linspace(0, 1, 5, dtype=np.float32)[None])[0]]
    assert stops[0][2] > stops[0][0] and stops[-1][0] > stops[-1][2]  # blue for 0, red for 1


def test_a_full_overlay_is_the_colour_bars_colour():
    grey = np.full((4, 4, 3), 128, np.uint8)
    high = blend(grey, np.ones((4, 4), np.float32), alpha=1.0)
    assert tuple(high[0, 0]) == tuple(heat_colours(np.ones((1, 1), np.float32))[0, 0])
