"""Errors a user can fix: each message says what was wrong and what to do."""


class EmotionLensError(Exception):
    """Base of the errors raised on purpose by Emotion Lens."""


class ImageError(EmotionLensError, ValueError):
    """The input is not an image we can read (wrong type, corrupt, too large, ...)."""


class NoFaceError(EmotionLensError):
    """No face was found and the caller did not ask to use the whole image."""


class ModelLoadError(EmotionLensError):
    """A model source is missing, incomplete, pickled or inconsistent with its config."""
