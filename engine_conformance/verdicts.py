"""Verdicts: what a check's outcome means, decided without pytest.

    >>> from engine_conformance.verdicts import precondition
    >>> precondition(journal.blob_requests, "the engine never fetched the layer")  # doctest: +SKIP

A check raises ``AssertionError`` only for the engine's deviation (``fail``).
When something the check relies on did not hold (the engine never reached the
lab registry, an image expected to be absent was there already, the lab
registry itself broke) it calls :func:`precondition`, and the verdict is
``error``, never ``fail`` and never ``pass``.
"""

from __future__ import annotations


class Precondition(Exception):  # noqa: N818 - reads as "precondition (did not hold)"
    """A check's precondition did not hold: the verdict is ``error``, with this reason."""


def precondition(condition: object, reason: str) -> None:
    """Raise :class:`Precondition` with ``reason`` unless ``condition`` is true."""
    if not condition:
        raise Precondition(reason)
