"""Deviations more than one suite's deviant tests use.

>>> from deviant_proxy.common import TEXT_ERRORS
"""

from __future__ import annotations

from .proxy import Deviation

# An engine that says what went wrong in plain text instead of an ErrorResponse.
TEXT_ERRORS = Deviation(
    "text-errors",
    response=lambda req, resp: (
        resp.replace(headers={"Content-Type": "text/plain"}, body=b"something went wrong\n")
        if resp.status >= 400
        else resp
    ),
)
