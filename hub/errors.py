"""Errors a publisher can fix; each message says what to do."""

from emotion.errors import EmotionLensError


class HubError(EmotionLensError):
    """Publishing to the Hub failed for a reason the user can act on."""


class HubAuthError(HubError):
    """No Hub token, or the Hub rejected it."""


class RunFolderError(HubError, ValueError):
    """The folder given to push is neither a run folder nor a model folder."""
