"""Errors a publisher can fix; each message says what to do."""

from collections.abc import Iterator
from contextlib import contextmanager

from emotion.errors import EmotionLensError

LOGIN_HINT = (
    "Log in with `hf auth login` or set HF_TOKEN to a token with write access "
    "(https://huggingface.co/settings/tokens)."
)


class HubError(EmotionLensError):
    """Publishing to the Hub failed for a reason the user can act on."""


class HubAuthError(HubError):
    """No Hub token, or the Hub rejected it."""


def check_token(api) -> str:
    """The user name behind the token; a clear error when there is none or the Hub rejects it."""
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    try:
        return api.whoami()["name"]
    except LocalTokenNotFoundError as err:
        raise HubAuthError(f"No Hugging Face token found. {LOGIN_HINT}") from err
    except HfHubHTTPError as err:
        if err.response is not None and err.response.status_code in (401, 403):
            raise HubAuthError(
                f"The Hub rejected your token ({err.response.status_code}). {LOGIN_HINT}"
            ) from err
        raise


@contextmanager
def hub_http_errors(target: str, action: str) -> Iterator[None]:
    """The Hub's HTTP errors as errors that say what to do: 401/403 → HubAuthError ("refused
    to write to `target`"), anything else → HubError ("`action` failed")."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        yield
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status in (401, 403):
            raise HubAuthError(f"The Hub refused to write to {target} ({status}). {LOGIN_HINT}") from err
        raise HubError(f"{action} failed: {err}") from err
