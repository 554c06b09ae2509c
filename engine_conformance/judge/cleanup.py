"""Removing what a run created, and only that, even when the engine deviated.

    >>> tracker = Images(client, run)           # doctest: +SKIP
    >>> ref = tracker.name("imp")               # '<prefix>/imp-<n>'
    >>> tracker.cleanup()                       # that name, and whatever the check's requests made

A check names what it creates under the run prefix, but a deviating engine may
ignore the name (an import that stays untagged, a pull of every tag instead of
one digest). So clean-up also reads what the engine said it made: the image ID
in an import's last stream message and the digests a pull reports. Such an
image is removed only when no name outside the run points to it: the lab's
images are deterministic, so the same content may be an image someone else
pulled or imported and named.

An image whose ID was on the target when the run started is never the run's,
whatever names the run gave it: a dangling image, or one kept only by a
stopped container, has no name that says so, and the lab's deterministic
content reproduces its ID. Such an image is never deleted by ID nor with
``force``; the run removes its own names from it (``force=False``) only while a
name outside the run stays on it, because removing an image's last name
deletes the image. Otherwise the run's names stay on it, and so does the image:
a name left under the run prefix is the lesser harm.

    >>> may_delete_by_id({"Id": "sha256:1", "RepoTags": ["ectest-1/a:v1"]}, "ectest-1",
    ...                  preexisting=frozenset({"sha256:1"}))
    False

The run records those IDs once, when it connects (``RunNames.preexisting``; with
pytest-xdist every worker at its own start, before any check runs).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Protocol

from engine_conformance.engine.target import Client, Exchange, TargetError
from engine_conformance.judge.checks import imported_id

if TYPE_CHECKING:
    import itertools

_DIGEST = re.compile(r"\bDigest: (sha256:[0-9a-f]{64})\b")


class RunNames(Protocol):
    """What clean-up needs of a run: its prefix, a name counter, what it created and
    the image IDs on the target before it started."""

    prefix: str
    counter: itertools.count[int]
    created: set[str]
    preexisting: frozenset[str]


def record_preexisting(client: Client) -> frozenset[str]:
    """The IDs of every image on the target now (one ``GET /images/json?all=1``)."""
    return frozenset(str(image["Id"]) for image in client.list_images() if image.get("Id"))


def _preexisted(image: dict[str, Any], preexisting: frozenset[str]) -> bool:
    # With or without "sha256:": engines differ in how they show an ID.
    bare = str(image.get("Id", "")).removeprefix("sha256:")
    return bool(bare) and (bare in preexisting or f"sha256:{bare}" in preexisting)


def may_delete_by_id(image: dict[str, Any], prefix: str, preexisting: frozenset[str]) -> bool:
    """Whether clean-up may delete ``image`` by its ID, with ``force``.

    Only when no name outside the run points to it and it was not on the target
    before the run (an image with no names at all is not thereby the run's).
    """
    return not _preexisted(image, preexisting) and _only_ours(image, prefix)


def may_remove_run_names(image: dict[str, Any], prefix: str, preexisting: frozenset[str]) -> bool:
    """Whether clean-up may remove the run's names from ``image`` (``force=False``).

    Always for an image the run made; for one that was there before, only while a
    name outside the run keeps it, since removing its last name would delete it.
    """
    return not _preexisted(image, preexisting) or not _only_ours(image, prefix)


class Images:
    """Names for what a check creates, and their removal afterwards.

    ``images.name("imp")`` gives ``<prefix>/imp-<n>``: under the run prefix, so
    it can never collide with anything already on the target. Clean-up also
    removes what the ``/images/create`` requests made since the tracker was made
    reported creating (see :func:`created_refs`).
    """

    def __init__(self, client: Client, run: RunNames) -> None:
        self.client, self.run = client, run
        self.refs: list[str] = []
        self._start = len(client.exchanges)

    def name(self, label: str = "img") -> str:
        ref = f"{self.run.prefix}/{label}-{next(self.run.counter)}"
        self.track(ref)
        return ref

    def track(self, ref: str) -> None:
        """Remove ``ref`` (a name or an image ID the check caused) afterwards too."""
        self.refs.append(ref)
        self.run.created.add(ref)

    def cleanup(self) -> None:
        for ref in created_refs(self.client.exchanges[self._start :], self.run.prefix):
            if ref not in self.refs:
                self.track(ref)
        for ref in reversed(self.refs):
            # What is known gone, the end-of-run sweep need not ask of again.
            if remove_created(self.client, ref, self.run.prefix, self.run.preexisting):
                self.run.created.discard(ref)
            else:
                self.run.created.add(ref)
        self._start = len(self.client.exchanges)


def created_refs(exchanges: list[Exchange], prefix: str) -> list[str]:
    """What ``/images/create`` requests under ``prefix`` say they made.

    An import's image ID (its last ``sha256:`` status), and for a pull of one
    of the run's repositories the ``repo@digest`` of each digest it reports.
    """
    refs: list[str] = []
    for ex in exchanges:
        if not ex.path.endswith("/images/create") or ex.status != 200:
            continue
        params = dict(ex.params)
        if params.get("fromSrc"):
            image = imported_id(ex)
            if image:
                refs.append(image)
        repo = params.get("fromImage", "")
        if f"{prefix}/" in repo:
            repo = repo.split("@")[0]
            for message in ex.messages:
                found = _DIGEST.search(str(message.obj.get("status", "")))
                if found:
                    refs.append(
                        f"{repo.rsplit(':', 1)[0] if _has_tag(repo) else repo}@{found.group(1)}"
                    )
    return list(dict.fromkeys(refs))


def _has_tag(repo: str) -> bool:
    """Whether ``repo`` ends in ``:tag`` (a ``host:port`` prefix is not a tag)."""
    return ":" in repo.rsplit("/", 1)[-1]


def remove_created(
    client: Client, ref: str, prefix: str, preexisting: frozenset[str] = frozenset()
) -> bool:
    """Delete every image ``ref`` names; with its tags when it is one of ours.
    True when ``ref`` is then known to name nothing on the target.

    ``preexisting``: the image IDs on the target when the run started, which are
    never deleted (see the module docstring).
    """
    try:
        image = client.inspect_image(ref)
        if ref.startswith("sha256:"):
            # Content is deterministic, so an ID the check caused may also be
            # an image someone else named, or had before the run without a name.
            if image is not None and may_delete_by_id(image, prefix, preexisting):
                return client.delete_image(ref, force=True) in (200, 404)
            return image is None
        while image is not None:
            # A name may point to an image that also carries other names of
            # ours; delete by ID only if every name it has is ours.
            tags = image.get("RepoTags") or []
            if tags and may_delete_by_id(image, prefix, preexisting):
                client.delete_image(image["Id"], force=True)
            else:
                if may_remove_run_names(image, prefix, preexisting):
                    client.delete_image(ref, force=False)
                return False
            image = client.inspect_image(ref)
        return True
    except TargetError:
        return False


def image_names(image: dict[str, Any]) -> list[str]:
    """The names an image list entry gives ``image``: its tags and digest references,
    without the ``<none>`` placeholders some engines list.

    >>> image_names({"RepoTags": ["a:1", "<none>:<none>"], "RepoDigests": ["a@sha256:1"]})
    ['a:1', 'a@sha256:1']
    """
    names = (image.get("RepoTags") or []) + (image.get("RepoDigests") or [])
    return [n for n in names if not n.startswith("<none>")]


def _only_ours(image: dict[str, Any], prefix: str) -> bool:
    """No name outside the run (tag or digest reference) points to ``image``."""
    return all(f"{prefix}/" in n for n in image_names(image))


def sweep(client: Client, run: RunNames) -> list[str]:
    """Remove whatever is left under the run prefix; returns what it removed."""
    removed = []
    preexisting = run.preexisting
    for ref in sorted(run.created):
        remove_created(client, ref, run.prefix, preexisting)
    try:
        for image in client.list_images():
            ours = [t for t in image.get("RepoTags") or [] if f"{run.prefix}/" in t]
            if any(f"{run.prefix}/" in n for n in image_names(image)) and may_delete_by_id(
                image, run.prefix, preexisting
            ):
                # Every name it has is the run's (a pull by digest leaves only a
                # digest reference): the image is the run's to remove.
                client.delete_image(image["Id"], force=True)
                removed.append(image["Id"])
            elif may_remove_run_names(image, run.prefix, preexisting):
                for tag in ours:
                    client.delete_image(tag, force=False)
                    removed.append(tag)
    except TargetError:
        pass
    return removed


def left_behind(client: Client, run: RunNames) -> list[dict[str, Any]]:
    """The backstop after the sweep: every image on the target now that was not when the
    run began (its ID and names). Each check judged what it left by its own evidence; an
    image here escaped all of them (or another client made it meanwhile)."""
    try:
        images = client.list_images()
    except TargetError:
        return []
    return [
        {"id": str(image.get("Id", "")), "names": image_names(image)}
        for image in images
        if image.get("Id") and not _preexisted(image, run.preexisting)
    ]
