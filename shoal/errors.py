"""Errors whose text may reach a client, kept apart from internal failures.

Only a :class:`ClientError` message is ever sent to a client; anything else is logged
and counted by the server and answered with a generic failure.
"""

from __future__ import annotations


class ClientError(Exception):
    """A request the tracker refuses; ``str(error)`` is safe to send as a failure reason.

    ``retry_in`` follows BEP 31: minutes before the client may try again, ``"never"``
    for a lasting refusal, or ``None`` when the client may simply retry later.
    """

    def __init__(self, reason: str, retry_in: int | str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_in = retry_in
