"""A model that is still being prepared, so a server can answer before it is ready.

The demo model's first build trains a network for about four minutes. A page that waited for
it would print nothing on its port for that long; instead `python -m app` starts the build in a
background thread, serves the page at once, and each request asks `PendingModel.get()`: the
model, or a `ModelNotReadyError` that says how long is left: elapsed time against the build's
usual duration, measured (`training.demo.EXPECTED_BUILD_S`), is its progress.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from emotion.errors import EmotionLensError
from emotion.model import EmotionModel

log = logging.getLogger(__name__)


class ModelNotReadyError(EmotionLensError):
    """The model is still being prepared; the message says about how long is left."""


class ModelBuildError(EmotionLensError):
    """Preparing the model failed; the message carries the cause and what to do."""


class PendingModel:
    """`build()` run once in a daemon thread; `get()` the model it returned, or an error that says
    how far it is (`expected_s`: the usual duration, for the time left)."""

    def __init__(self, build: Callable[[], EmotionModel], *, expected_s: float, what: str = "The model"):
        self._build, self.expected_s, self.what = build, float(expected_s), what
        self._model: EmotionModel | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._started: float | None = None

    @classmethod
    def ready_now(cls, model: EmotionModel) -> PendingModel:
        """A model that is already loaded, behind the same interface."""
        pending = cls(lambda: model, expected_s=0.0)
        pending._model, pending._started = model, time.monotonic()
        pending._done.set()
        return pending

    def start(self) -> PendingModel:
        if self._started is None:
            self._started = time.monotonic()
            threading.Thread(target=self._run, name="prepare-model", daemon=True).start()
        return self

    def _run(self) -> None:
        try:
            self._model = self._build()
            log.info("%s is ready after %.0f s.", self.what, self.elapsed_s)
        except BaseException as err:  # noqa: BLE001 - reported to every request, not lost in a thread
            log.exception("%s could not be prepared", self.what)
            self._error = err
        finally:
            self._done.set()

    @property
    def ready(self) -> bool:
        return self._model is not None

    @property
    def elapsed_s(self) -> float:
        return 0.0 if self._started is None else time.monotonic() - self._started

    @property
    def seconds_left(self) -> float:
        return max(0.0, self.expected_s - self.elapsed_s)

    def status(self) -> str:
        """One sentence: ready, failed, or how far the preparation is."""
        if self.ready:
            return f"{self.what} is ready."
        if self._error is not None:
            return f"{self.what} could not be prepared: {self._error}"
        if self._started is None:
            return f"{self.what} has not started being prepared."
        elapsed = self.elapsed_s
        if elapsed < self.expected_s:
            return (
                f"{self.what} is being prepared: {elapsed:.0f} s done, "
                f"about {self.seconds_left:.0f} s left ({elapsed / self.expected_s:.0%})."
            )
        return f"{self.what} is being prepared: {elapsed:.0f} s so far, a little longer than usual."

    def get(self) -> EmotionModel:
        """The model, or ModelNotReadyError / ModelBuildError with the status in words."""
        if self._model is not None:
            return self._model
        if self._error is not None:
            raise ModelBuildError(
                f"{self.status()}. Restart the app; if it fails again, pass a model with --model."
            ) from self._error
        raise ModelNotReadyError(f"{self.status()} Try again then.")

    def wait(self, timeout: float | None = None) -> EmotionModel:
        """Block until the build ends (or `timeout` s pass), then `get()`."""
        self._done.wait(timeout)
        return self.get()
