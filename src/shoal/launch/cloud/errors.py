"""What a cloud's refusal or failure becomes: one line naming the cloud and its own message.

::

    ShoalError
    └── CloudError              a cloud API call failed (exit 1)
        ├── CloudAuthFailed     the cloud refused the credentials (exit 2)
        ├── CloudRefused        the cloud refused the request: bad image, size, quota (exit 2)
        └── CloudUnreachable    no answer, or the cloud's own trouble (5xx): try again later

No libcloud here, so that a caller can catch these without importing it.
A message never holds a traceback, and never a credential (:func:`scrub`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from shoal.exceptions import ShoalError

__all__ = ["CloudAuthFailed", "CloudError", "CloudRefused", "CloudUnreachable", "one_line", "scrub"]

# The most of a cloud's own message a line keeps.
MESSAGE_CAP = 400


class CloudError(ShoalError):
    """A cloud API call failed; ``kind`` names the cloud, ``status`` the HTTP status if any."""

    def __init__(self, message: str, *, kind: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


class CloudAuthFailed(CloudError):
    """The cloud refused the credentials (or they may not do this)."""

    exit_code = 2


class CloudRefused(CloudError):
    """The cloud refused the request as made: an unknown image or size, a quota reached."""

    exit_code = 2


class CloudUnreachable(CloudError):
    """The cloud did not answer, or answered with its own trouble: trying again may do."""


def one_line(text: str, cap: int = MESSAGE_CAP) -> str:
    """``text`` on one line, whitespace runs made single spaces, at most ``cap`` characters."""
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= cap else flat[: cap - 1] + "…"


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (of 4 characters or more) replaced by ``***``."""
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
