"""Requests at the same time: two pulls of one image, a pull beside an import, and two
pulls the registry refuses.

An engine serves many clients at once (a CI runner's parallel jobs pull the same
base image). The pulls are sent from two threads released together, and the
image's layer is throttled so each pull lasts long enough for the other to start
while it is under way; that they overlapped is checked on the client's clock
(a precondition: otherwise nothing concurrent was judged). Two pulls the registry refuses
are refused after REFUSAL_DELAY, for the same reason.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from engine_conformance.base import archives
from engine_conformance.engine.target import Client, Exchange
from engine_conformance.judge.checks import (
    assert_stream_success,
    assert_visible_failure,
    failed,
    image_ids,
    imported_id,
    registry_requests,
    where,
)
from engine_conformance.judge.verdicts import precondition
from engine_conformance.judge.vocabulary import Subject, assert_pulled, pull
from lab_registry import ErrorStatus, JournalEntry, Throttle, build_image

LAYER_SIZE = 1 << 20
LAYER_RATE = 1 << 20  # a second of transfer: time for the other request to start
DEADLINE = 60.0


def together(*calls: Callable[[], Exchange]) -> list[Exchange]:
    """Run ``calls`` in threads released at once; their exchanges, in order."""
    start = threading.Barrier(len(calls))
    results: list[Exchange | BaseException | None] = [None] * len(calls)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results  # type: ignore[return-value]


def overlapped(a: Exchange, b: Exchange) -> bool:
    return (a.started < (b.finished or 0)) and (b.started < (a.finished or 0))


@pytest.fixture
def subject(lab_control, images) -> Iterator[Subject]:
    """A fresh image whose layer the lab registry serves at LAYER_RATE."""
    catalogue = lab_control.catalogue
    name = catalogue.name("concurrent")
    image = catalogue.add_large(name, "v1", LAYER_SIZE, seed=8001)
    ref = lab_control.reference(name, "v1")
    images.track(ref)
    subject = Subject(name, ref, image, catalogue.facts(name, "v1"))
    try:
        with lab_control.fault(Throttle(LAYER_RATE), prefix=subject.layer_path):
            yield subject
    finally:
        catalogue.remove(name)


def pulling(client: Client, subject: Subject) -> Callable[[], Exchange]:
    """The pull of ``subject``, to send with another request (:func:`together`)."""
    # No images: listing them around each pull would put requests of the suite's own
    # between the two it sends at once; the fixtures track what the pulls may leave.
    return lambda: pull(client, None, subject, deadline=DEADLINE)


def blob_fetches(lab, mark: int, subject: Subject) -> dict[str, int]:
    """How many complete GETs of each blob of ``subject`` the registry served."""
    counts: dict[str, int] = {}
    for e in lab.journal.since(mark):
        if (
            e.kind == "blob"
            and e.repository == subject.repository
            and e.method == "GET"
            and e.status in (200, 206)
        ):
            digest = e.path.rsplit("/", 1)[-1]
            counts[digest] = counts.get(digest, 0) + 1
    return counts


@pytest.fixture
def two_pulls(client, lab_control, subject, observe):
    """Two pulls of ``subject`` at once: (first, second, new image IDs, journal mark)."""
    before = image_ids(client)
    mark = lab_control.journal.mark()
    first, second = together(pulling(client, subject), pulling(client, subject))
    new = sorted(image_ids(client) - before)
    registry_requests(lab_control.journal, mark, subject.repository, "two concurrent pulls")
    observe["answers"] = [where(first), where(second)]
    observe["seconds"] = [round((e.finished or 0) - e.started, 2) for e in (first, second)]
    precondition(
        overlapped(first, second),
        "the two pulls did not overlap in time (each "
        f"lasted {observe['seconds']} s): nothing concurrent could be judged",
    )
    return first, second, new, mark


@pytest.mark.exclusive
@pytest.mark.requirement("CONCURRENCY-001")
def test_concurrent_pulls_of_one_image(client, subject, two_pulls, observe):
    first, second, new, _ = two_pulls
    observe["new_images"] = new
    for label, ex in (("the first pull", first), ("the second pull", second)):
        assert_pulled(client, subject, ex, f"{label} of two at once")


@pytest.mark.exclusive
@pytest.mark.requirement("CONCURRENCY-006")
def test_concurrent_pulls_leave_one_image(client, subject, two_pulls, images, observe):
    first, second, new, _ = two_pulls
    for image_id in new:
        images.track(image_id)
    observe["new_images"] = new
    named = client.inspect_image(subject.ref) is not None
    precondition(
        not failed(first) and not failed(second) and named,
        f"the two pulls did not both succeed ({where(first)}; {where(second)}; "
        f"{subject.ref} {'exists' if named else 'absent'}): CONCURRENCY-001 judges "
        "that, and how many images they left says nothing",
    )
    assert len(new) == 1, (
        f"two concurrent pulls of {subject.ref} left {len(new)} new images ({new}), not one"
    )


@pytest.mark.exclusive
@pytest.mark.requirement("CONCURRENCY-002")
def test_concurrent_pulls_fetch_each_blob_once(client, lab_control, subject, two_pulls, observe):
    first, second, _, mark = two_pulls
    precondition(
        not any(
            where(e).startswith("HTTP 4") or where(e).startswith("HTTP 5") for e in (first, second)
        )
        and first.stream_error is None
        and second.stream_error is None,
        "a pull failed, so how often it fetched each blob says nothing "
        f"({where(first)}; {where(second)}): CONCURRENCY-001 judges that",
    )
    counts = blob_fetches(lab_control, mark, subject)
    observe["fetches"] = {d[:19]: n for d, n in counts.items()}
    twice = {d[:19]: n for d, n in counts.items() if n > 1}
    assert not twice, f"two concurrent pulls of one image fetched blobs more than once: {twice}"


@pytest.mark.exclusive
@pytest.mark.requirement("CONCURRENCY-003")
def test_pull_beside_an_import(client, lab_control, subject, images, observe):
    repo = images.name("concurrent-import")
    images.track(repo)
    archive = archives.rootfs({"etc/ectest-concurrent": f"{repo}\n".encode()})
    mark = lab_control.journal.mark()
    pulled, imported = together(
        pulling(client, subject),
        lambda: client.create_image(
            {"fromSrc": "-", "repo": repo}, body=archive, deadline=DEADLINE
        ),
    )
    if found := imported_id(imported):
        images.track(found)
    registry_requests(lab_control.journal, mark, subject.repository, "a pull beside an import")
    observe["answers"] = {"pull": where(pulled), "import": where(imported)}
    # The import ends long before the throttled pull: the pull was under way throughout.
    precondition(
        overlapped(pulled, imported),
        "the pull and the import did not overlap in time: nothing concurrent could be judged",
    )
    assert_pulled(client, subject, pulled, "a pull while an import ran")
    assert_stream_success(imported)
    made = client.inspect_image(repo)
    assert made is not None, (
        f"an import while a pull ran answered {where(imported)}, but {repo} does not exist"
    )


# -- pulls that fail at the same time -----------------------------------------------------

REFUSAL_DELAY = 1.0  # seconds the registry takes to refuse: both pulls are under way meanwhile
REFUSALS = {
    # The reference itself: its manifest is unknown to the registry.
    "manifest": ErrorStatus(404, delay=REFUSAL_DELAY),
    # The manifest is served, its layer denied: the transfer two pulls may share fails.
    "layer": ErrorStatus(403, delay=REFUSAL_DELAY),
}


@dataclass
class Refused:
    subject: Subject
    case: str
    fault: ErrorStatus

    def met(self, entry: JournalEntry) -> bool:
        """Whether a journal entry is the registry refusing what this case refuses."""
        if entry.status != self.fault.status:
            return False
        if self.case == "manifest":
            return entry.kind == "manifest"
        return entry.path == self.subject.layer_path


@pytest.fixture(params=sorted(REFUSALS))
def refused(request, lab_control, images, client) -> Iterator[Refused]:
    """An image of its own the lab registry refuses, after REFUSAL_DELAY, in one way."""
    case = request.param
    catalogue = lab_control.catalogue
    name = catalogue.name(f"concurrent-refused-{case}")
    image = catalogue.add(
        name,
        "v1",
        build_image(
            {"lab/refused.txt": f"engine-conformance concurrent refused {case}\n"},
            env={"LAB_REFUSED": case},
            cmd=["/bin/sh"],
        ),
    )
    ref = lab_control.reference(name, "v1")
    images.track(ref)
    subject = Subject(name, ref, image, catalogue.facts(name, "v1"))
    fault = REFUSALS[case]
    scope = (
        {"repository": name, "kinds": ["manifest"]}
        if case == "manifest"
        else {"prefix": subject.layer_path}
    )
    try:
        precondition(
            client.inspect_image(ref) is None,
            f"{ref} existed before the check, which judges that none is left",
        )
        with lab_control.fault(fault, **scope):
            yield Refused(subject, case, fault)
    finally:
        catalogue.remove(name)


@pytest.fixture
def two_failed_pulls(
    client, lab_control, refused, images, observe
) -> tuple[Exchange, Exchange, list[str]]:
    """Two pulls at once of what the registry refuses: (first, second, new image IDs)."""
    subject = refused.subject
    before = image_ids(client)
    mark = lab_control.journal.mark()
    first, second = together(pulling(client, subject), pulling(client, subject))
    new = sorted(image_ids(client) - before)
    for image_id in new:
        images.track(image_id)
    registry_requests(
        lab_control.journal,
        mark,
        subject.repository,
        f"two concurrent pulls refused at the {refused.case}",
        kinds=("manifest", "blob"),
        wanted=refused.met,
    )
    observe[f"{refused.case}: answers"] = [where(first), where(second)]
    seconds = [round((e.finished or 0) - e.started, 2) for e in (first, second)]
    observe[f"{refused.case}: seconds"] = seconds
    precondition(
        overlapped(first, second),
        "the two refused pulls did not overlap in time "
        f"(each lasted {seconds} s): nothing concurrent could be judged",
    )
    return first, second, new


@pytest.mark.exclusive
@pytest.mark.requirement("CONCURRENCY-004")
def test_concurrent_failing_pulls_both_fail(refused, two_failed_pulls):
    first, second, _ = two_failed_pulls
    what = (
        f"the registry refused {refused.subject.ref} (HTTP {refused.fault.status} on its "
        f"{refused.case}) to two pulls at once"
    )
    problems = []
    for label, ex in (("the first pull", first), ("the second pull", second)):
        try:
            assert_visible_failure(ex, f"{what}; {label}")
        except AssertionError as exc:
            problems.append(str(exc))
    assert not problems, "; ".join(problems)


@pytest.mark.exclusive
@pytest.mark.requirement("CONCURRENCY-005")
def test_concurrent_failing_pulls_leave_nothing(client, refused, two_failed_pulls, observe):
    _, _, new = two_failed_pulls
    named = client.inspect_image(refused.subject.ref) is not None
    observe[f"{refused.case}: new_images"] = new
    left = (["an image under the name"] if named else []) + ([f"new images {new}"] if new else [])
    assert not left, (
        f"two concurrent pulls of {refused.subject.ref}, refused at the "
        f"{refused.case}, left {' and '.join(left)} behind"
    )
