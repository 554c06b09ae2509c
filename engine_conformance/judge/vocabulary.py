"""The suites' shared words for a pull: the image a check pulls (:class:`Subject`), the
pull itself (:func:`pull`), what a pull that worked must give (:func:`assert_pulled`,
:func:`assert_pulled_as` on an inspect recorded earlier),
and what a request that failed must not leave (:func:`leftovers`,
:func:`assert_failed_leaving_nothing`).

    >>> subject = Subject.served(registry, "single", "v1")        # doctest: +SKIP
    >>> ex = pull(client, images, subject)                        # doctest: +SKIP
    >>> assert_pulled(client, subject, ex, "a plain pull")        # doctest: +SKIP

Apart from :mod:`.checks` because these speak to the target and to the run's image
tracker (the ``images`` fixture), where those only read an exchange.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine_conformance.engine.target import Client, Exchange
from engine_conformance.judge.checks import (
    assert_nothing_left,
    assert_stream_success,
    assert_visible_failure,
    image_ids,
    image_mismatch,
    where,
)

TAG = "v1"


@dataclass
class Subject:
    """An image the lab registry serves for a check, and what its pull must give or leave.

    ``image`` is the lab ``Image`` served (for a check that bends its blobs), ``facts``
    the lab ``ImageFacts`` an inspect of the pulled image must agree with, ``ids`` the
    image IDs a failed pull might leave that were not on the engine before.
    """

    repository: str  # full repository name in the registry
    ref: str  # ADDRESS/<repository>:<tag>
    image: Any = None
    facts: Any = None
    ids: list[str] = field(default_factory=list)

    @classmethod
    def served(cls, registry: Any, repository: str, tag: str = TAG) -> Subject:
        """``repository:tag`` of ``registry`` (a short name takes the catalogue prefix);
        ``facts`` only when the registry serves that tag (a check may pull what it does not).
        """
        catalogue = registry.catalogue
        full = catalogue.full_name(repository)
        facts = catalogue.facts(full, tag) if tag in (catalogue.tags(full) or []) else None
        return cls(full, registry.reference(repository, tag), facts=facts)

    @property
    def params(self) -> dict[str, str]:
        name, tag = self.ref.rsplit(":", 1)
        return {"fromImage": name, "tag": tag}

    def blob_path(self, blob: Any) -> str:
        return f"/v2/{self.repository}/blobs/{blob.digest}"

    @property
    def layer_path(self) -> str:
        return self.blob_path(self.image.layers[0])

    @property
    def config_path(self) -> str:
        return self.blob_path(self.image.config)


def pull(
    client: Client,
    images: Any,
    what: Subject | Mapping[str, str],
    track: Iterable[str] = (),
    **kw: Any,
) -> Exchange:
    """Send a pull of ``what`` (a subject, or the request's parameters); ``kw`` goes to
    ``create_image`` (``headers``, ``deadline``, ``version``).

    With ``images`` (the fixture), ``track``, a subject's name and every image ID new
    after the pull are removed after the check. Without (None), nothing is listed
    around the pull: a check that sends pulls at once, or tracks what it pulls already,
    adds no request of its own to the engine's.
    """
    params = what.params if isinstance(what, Subject) else dict(what)
    if images is None:
        return client.create_image(params, **kw)
    for ref in [*track, *([what.ref] if isinstance(what, Subject) else [])]:
        images.track(ref)
    before = image_ids(client)
    ex = client.create_image(params, **kw)
    for image_id in sorted(image_ids(client) - before):
        images.track(image_id)
    return ex


def assert_pulled(client: Client, subject: Subject, ex: Exchange, what: str) -> None:
    """``ex`` reports success and ``subject.ref`` is the registry's image (``subject.facts``)."""
    assert_stream_success(ex)  # first: a pull that failed is judged on its answer, not inspected
    assert_pulled_as(subject, ex, client.inspect_image(subject.ref), what)


def assert_pulled_as(
    subject: Subject, ex: Exchange, image: dict[str, Any] | None, what: str
) -> None:
    """:func:`assert_pulled` on ``image``, ``subject.ref`` inspected once ``ex`` had ended
    (None: it did not exist): for a check that reads a pull an earlier check sent and
    recorded, after that check removed the image.
    """
    assert_stream_success(ex)
    assert image is not None, f"{what}: answered {where(ex)}, but {subject.ref} does not exist"
    mismatch = image_mismatch(image, subject.facts)
    assert mismatch is None, f"{what}: {subject.ref} is not the registry's image: {mismatch}"


def leftovers(
    client: Client,
    names: Iterable[str] = (),
    ids: Iterable[str] = (),
    before: set[str] | None = None,
    images: Any = None,
) -> list[str]:
    """What a request that failed left on the engine now (empty: nothing).

    Each of ``names`` that exists, each of ``ids`` (image IDs that were not there
    before) that exists, and with ``before`` (:func:`image_ids` before the request)
    every image ID new since; ``images`` tracks the new ones for removal.
    """
    found = [n for n in names if client.inspect_image(n) is not None]
    new = [i for i in ids if client.inspect_image(i) is not None]
    if before is not None:
        since = sorted(image_ids(client) - before)
        if images is not None:
            for image_id in since:
                images.track(image_id)
        new += [i for i in since if i not in new]
    return found + [f"new image ID {i}" for i in new]


def assert_failed_leaving_nothing(ex: Exchange, what: str, left: Iterable[str]) -> None:
    """``ex`` must report its failure (:func:`assert_visible_failure`) and have left
    nothing (:func:`assert_nothing_left`; ``left`` from :func:`leftovers`); both problems
    are reported at once. Whether a failed request may leave something is not the
    document's to say: call it only where the requirement's basis says so.
    """
    problems: list[str] = []
    judges: tuple[Callable[[], None], ...] = (
        lambda: assert_visible_failure(ex, what),
        lambda: assert_nothing_left(what, left),
    )
    for judge in judges:
        try:
            judge()
        except AssertionError as exc:
            problems.append(str(exc))
    assert not problems, "; ".join(problems)
