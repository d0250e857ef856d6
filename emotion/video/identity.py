"""Faces followed across the frames of a video: the same person keeps the same number.

The cascade finds boxes frame by frame and knows nothing of identity. Between two analysed
frames a face moves little compared with its size, so each new box joins the track whose last
box it overlaps most (greedily, best overlap first). A track that has not been seen for
`max_gap` analysed frames ends: a face that comes back after that is a new track.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emotion.photo.faces import Box


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    w = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    h = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    inter = max(w, 0) * max(h, 0)
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def greedy_pairs(first: list[Box], second: list[Box], min_iou: float) -> list[tuple[int, int]]:
    """(i, j) pairs of `first[i]` and `second[j]`, best overlap first, each box at most once and
    only at IoU ≥ `min_iou`."""
    candidates = sorted(
        ((iou(a, b), i, j) for i, a in enumerate(first) for j, b in enumerate(second)),
        reverse=True,
    )
    used_first: set[int] = set()
    used_second: set[int] = set()
    pairs = []
    for overlap, i, j in candidates:
        if overlap < min_iou:
            break
        if i not in used_first and j not in used_second:
            used_first.add(i)
            used_second.add(j)
            pairs.append((i, j))
    return pairs


@dataclass
class Track:
    """One face over time: its number (from 1, in order of appearance) and its last box."""

    number: int
    box: Box
    last_seen: int  # index of the analysed frame it was last found in
    boxes: dict[int, Box] = field(default_factory=dict)  # analysed frame → box


@dataclass
class FaceTracker:
    # 0.3, not detection's 0.5: between two analysed frames (a fifth of a second apart by default)
    # a face turning or walking shifts its box by more than a detector's jitter.
    min_iou: float = 0.3
    max_gap: int = 5
    tracks: list[Track] = field(default_factory=list)

    def update(self, step: int, boxes: list[Box]) -> list[int]:
        """The track number of each of `boxes`, found in analysed frame `step`; boxes that match
        no live track start new ones."""
        live = [t for t in self.tracks if step - t.last_seen <= self.max_gap]
        numbers = [0] * len(boxes)
        for i, j in greedy_pairs([t.box for t in live], boxes, self.min_iou):
            track = live[i]
            track.box, track.last_seen = boxes[j], step
            track.boxes[step] = boxes[j]
            numbers[j] = track.number
        for j, box in enumerate(boxes):
            if not numbers[j]:
                track = Track(len(self.tracks) + 1, box, step, {step: box})
                self.tracks.append(track)
                numbers[j] = track.number
        return numbers
