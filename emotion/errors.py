"""Errors a user can fix: each message says what was wrong and what to do."""


class EmotionLensError(Exception):
    """Base of the errors raised on purpose by Emotion Lens."""


class ImageError(EmotionLensError, ValueError):
    """The input is not an image we can read (wrong type, corrupt, too large, ...)."""


class NoFaceError(EmotionLensError):
    """No face was found and the caller did not ask to use the whole image."""


class ModelLoadError(EmotionLensError):
    """A model source is missing, incomplete, pickled or inconsistent with its config."""


class UnknownMethodError(EmotionLensError, ValueError):
    """An explanation method that is not registered (see emotion.explainers.registry)."""


class FaceIndexError(EmotionLensError, IndexError):
    """The face asked for is not among those found. `index` is the number asked for (0-based),
    `count` how many faces were found, so a page that numbers faces from 1 can word its own
    message."""

    def __init__(self, index: object, count: int) -> None:
        self.index, self.count = index, count
        super().__init__(
            f"Face {index!r} does not exist: {count} face(s) found, numbered from 0 (0 = the largest). "
            f"Pass face=0 to {count - 1}, or face='all'."
        )

    def __reduce__(self):
        return type(self), (self.index, self.count)


class UnsupportedArchitectureError(EmotionLensError, ValueError):
    """`build_model` was asked for a network whose Grad-CAM layer, head or BatchNorm layout this
    code has not been checked against."""


class RunFolderError(EmotionLensError, ValueError):
    """A run folder cannot be used as asked: it cannot be created or written, its disk has too
    little free space for the run, or it is neither a run folder nor a model folder."""


class DetectorUnavailableError(EmotionLensError, RuntimeError):
    """This OpenCV cannot find faces (no `CascadeClassifier`, or its cascade file did not load)."""


class VideoError(EmotionLensError, ValueError):
    """The input is not a video we can read, or it is past the caps (length, resolution)."""


class TimeLimitError(EmotionLensError):
    """A request ran past its time limit (see emotion.timing.Deadline)."""
