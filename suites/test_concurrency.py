"""Requests at the same time: two pulls of one image, a pull beside an import, and two
pulls the registry refuses.

An engine serves many clients at once (a CI runner's parallel jobs pull the same
base image). The pulls are sent from two threads released together, and the
image's layer is throttled so each pull lasts long enough for the other to start
while it is under way; that they overlapped is checked on the client's clock
(a precondition: otherwise nothing concurrent was judged). The import beside a pull
is sent once the registry has begun serving the pull's throttled layer, so the two
overlap however busy the machine is. Two pulls the registry refuses are refused after
REFUSAL_DELAY, for the same reason.

Several checks judge one scenario (CONCURRENCY-001, 002 and 006 the two pulls of one
image; CONCURRENCY-004 and 005 the two refused pulls of each case). A scenario runs
once per module, for whichever of its checks comes first (:func:`pulled_together`),
and records right after its pulls all its checks judge (the image under the name, the
new image IDs, the registry's blob fetches): its image is removed with that check. A
later check reads the record and cites the pulls as its evidence, so no verdict
depends on the order the checks run in, and no scenario runs twice in a run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
from engine_conformance.judge.scenarios import Outcome, Scenarios
from engine_conformance.judge.verdicts import precondition
from engine_conformance.judge.vocabulary import Subject, assert_pulled, assert_pulled_as, pull
from lab_registry import ErrorStatus, FaultRule, JournalEntry, Throttle, build_image

if TYPE_CHECKING:
    from engine_conformance.run.lane import LaneContext

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


@contextmanager
def throttled(lab, images) -> Iterator[tuple[Subject, FaultRule]]:
    """A fresh image whose layer the lab registry serves at LAYER_RATE, for the block, and
    the throttle's rule (``rule.wait_used``: the registry has begun serving the layer)."""
    catalogue = lab.catalogue
    name = catalogue.name("concurrent")
    image = catalogue.add_large(name, "v1", LAYER_SIZE, seed=8001)
    ref = lab.reference(name, "v1")
    images.track(ref)
    subject = Subject(name, ref, image, catalogue.facts(name, "v1"))
    try:
        with lab.fault(Throttle(LAYER_RATE), prefix=subject.layer_path) as rule:
            yield subject, rule
    finally:
        catalogue.remove(name)


@pytest.fixture
def subject(lab_control, images) -> Iterator[tuple[Subject, FaultRule]]:
    """A fresh image whose layer the lab registry serves at LAYER_RATE, and its throttle."""
    with throttled(lab_control, images) as served:
        yield served


def pulling(client: Client, subject: Subject) -> Callable[[], Exchange]:
    """The pull of ``subject``, to send with another request (:func:`together`)."""
    # No images: listing them around each pull would put requests of the suite's own
    # between the two it sends at once; the fixtures and scenarios track what the pulls may leave.
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


# -- scenarios: each is run once per module, whichever check reads it first ------------


@dataclass
class Setup:
    """What a scenario works with: the fixtures of the check that runs it (its ``images``
    removes what the scenario pulled, after that check), or the run's lane (``claim``:
    the lane's pulls are told apart by the image IDs they may make, not by a whole-list
    view, which would show the other checks' images as well)."""

    client: Client
    lab: Any
    images: Any
    claim: Callable[..., None] | None = None


@dataclass
class Pulls:
    """Two pulls of ``subject`` sent at once, and what their checks judge, recorded right
    after them: ``image`` is ``subject.ref`` inspected (None: it did not exist), ``new``
    the image IDs new on the engine, ``fetches`` how many complete GETs of each blob the
    registry served them (:func:`blob_fetches`)."""

    subject: Subject
    first: Exchange
    second: Exchange
    image: dict[str, Any] | None
    new: list[str]
    fetches: dict[str, int] = field(default_factory=dict)


SCENARIOS = Scenarios("concurrency", evidence=lambda pulls: [pulls.first, pulls.second])
scenario = SCENARIOS.scenario


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    """Each scenario's outcome for the module, shared by the checks that read it."""
    return {}


@pytest.fixture
def pulled_together(outcomes, client, lab_control, images, observe, lane) -> Callable[..., Pulls]:
    """``pulled_together(label)``: that scenario's pulls (:meth:`Scenarios.read`)."""

    def get(label: str, case: str = "") -> Pulls:
        pulls: Pulls = SCENARIOS.read(
            label, outcomes, lane, lambda: Setup(client, lab_control, images), client, observe, case
        )
        return pulls

    return get


def pulled_at_once(setup: Setup, subject: Subject) -> tuple[Pulls, int]:
    """Two pulls of ``subject`` at once, recorded; the journal's mark before them.

    What they made is tracked for removal: the checks that read them later only read.
    """
    client, lab = setup.client, setup.lab
    if setup.claim is None:
        before = image_ids(client)
    else:
        known = (subject.image.config_digest, subject.image.digest)
        setup.claim(*known)
        before = {i for i in known if client.inspect_image(i) is not None}
    mark = lab.journal.mark()
    first, second = together(pulling(client, subject), pulling(client, subject))
    if setup.claim is None:
        new = sorted(image_ids(client) - before)
    else:
        new = sorted(i for i in known if i not in before and client.inspect_image(i))
    for image_id in new:
        setup.images.track(image_id)
    image = client.inspect_image(subject.ref)
    return Pulls(subject, first, second, image, new, blob_fetches(lab, mark, subject)), mark


# -- two pulls of one image -----------------------------------------------------------


@scenario("one-image")
def _two_pulls(setup: Setup, observed: dict) -> Pulls:
    """Two pulls of one image at once (CONCURRENCY-001, 002 and 006)."""
    with throttled(setup.lab, setup.images) as (subject, _):
        pulls, mark = pulled_at_once(setup, subject)
        registry_requests(setup.lab.journal, mark, subject.repository, "two concurrent pulls")
    first, second = pulls.first, pulls.second
    observed["answers"] = [where(first), where(second)]
    observed["seconds"] = [round((e.finished or 0) - e.started, 2) for e in (first, second)]
    precondition(
        overlapped(first, second),
        "the two pulls did not overlap in time (each "
        f"lasted {observed['seconds']} s): nothing concurrent could be judged",
    )
    return pulls


@pytest.mark.exclusive
@pytest.mark.requirement("CONCURRENCY-001")
def test_concurrent_pulls_of_one_image(pulled_together, observe):
    pulls = pulled_together("one-image")
    observe["new_images"] = pulls.new
    for label, ex in (("the first pull", pulls.first), ("the second pull", pulls.second)):
        assert_pulled_as(pulls.subject, ex, pulls.image, f"{label} of two at once")


@pytest.mark.exclusive
@pytest.mark.requirement("CONCURRENCY-006")
def test_concurrent_pulls_leave_one_image(pulled_together, observe):
    pulls = pulled_together("one-image")
    first, second, new, subject = pulls.first, pulls.second, pulls.new, pulls.subject
    observe["new_images"] = new
    named = pulls.image is not None
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
def test_concurrent_pulls_fetch_each_blob_once(pulled_together, observe):
    pulls = pulled_together("one-image")
    first, second = pulls.first, pulls.second
    precondition(
        not any(
            where(e).startswith("HTTP 4") or where(e).startswith("HTTP 5") for e in (first, second)
        )
        and first.stream_error is None
        and second.stream_error is None,
        "a pull failed, so how often it fetched each blob says nothing "
        f"({where(first)}; {where(second)}): CONCURRENCY-001 judges that",
    )
    counts = pulls.fetches
    observe["fetches"] = {d[:19]: n for d, n in counts.items()}
    twice = {d[:19]: n for d, n in counts.items() if n > 1}
    assert not twice, f"two concurrent pulls of one image fetched blobs more than once: {twice}"


# -- a pull beside an import ----------------------------------------------------------


@pytest.mark.exclusive
@pytest.mark.requirement("CONCURRENCY-003")
def test_pull_beside_an_import(client, lab_control, subject, images, observe):
    subject, layer = subject
    repo = images.name("concurrent-import")
    images.track(repo)
    archive = archives.rootfs({"etc/ectest-concurrent": f"{repo}\n".encode()})
    mark = lab_control.journal.mark()
    with ThreadPoolExecutor(max_workers=1) as pool:
        pull = pool.submit(pulling(client, subject))
        # The import goes once the registry has begun serving the pull's layer, which then
        # takes a second at LAYER_RATE: the two overlap by construction, whatever the load
        # (sent at once, a short import could end before a busy thread even sent the pull).
        begun = layer.wait_used(DEADLINE)
        imported = client.create_image(
            {"fromSrc": "-", "repo": repo}, body=archive, deadline=DEADLINE
        )
        pulled = pull.result()
    if found := imported_id(imported):
        images.track(found)
    registry_requests(lab_control.journal, mark, subject.repository, "a pull beside an import")
    observe["answers"] = {"pull": where(pulled), "import": where(imported)}
    precondition(
        begun,
        f"the registry was never asked for {subject.ref}'s layer while the pull ran "
        f"({where(pulled)}): no import could be sent beside its transfer",
    )
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


@contextmanager
def refusing(lab, images, client: Client, case: str) -> Iterator[Refused]:
    """An image of its own the lab registry refuses, after REFUSAL_DELAY, in one way."""
    catalogue = lab.catalogue
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
    ref = lab.reference(name, "v1")
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
        with lab.fault(fault, **scope):
            yield Refused(subject, case, fault)
    finally:
        catalogue.remove(name)


def _refused_pulls(case: str) -> Callable[[Setup, dict], Pulls]:
    def run(setup: Setup, observed: dict) -> Pulls:
        """Two pulls at once of what the registry refuses (CONCURRENCY-004 and 005)."""
        with refusing(setup.lab, setup.images, setup.client, case) as refused:
            subject = refused.subject
            pulls, mark = pulled_at_once(setup, subject)
            registry_requests(
                setup.lab.journal,
                mark,
                subject.repository,
                f"two concurrent pulls refused at the {case}",
                kinds=("manifest", "blob"),
                wanted=refused.met,
            )
        first, second = pulls.first, pulls.second
        observed["answers"] = [where(first), where(second)]
        seconds = [round((e.finished or 0) - e.started, 2) for e in (first, second)]
        observed["seconds"] = seconds
        precondition(
            overlapped(first, second),
            "the two refused pulls did not overlap in time "
            f"(each lasted {seconds} s): nothing concurrent could be judged",
        )
        return pulls

    return run


for _case in REFUSALS:
    scenario(f"refused-{_case}")(_refused_pulls(_case))


def ahead(label: str) -> pytest.MarkDecorator:
    """Marks a check reading scenario ``label``, which the run may start in its lane
    (``wait``: about how long it waits on Docker; the longest start first)."""

    def in_lane(lane: LaneContext) -> Outcome:
        return SCENARIOS.run(label, Setup(lane.client, lane.lab, lane.images, lane.claim))

    return pytest.mark.ahead(SCENARIOS.key(label), in_lane, wait=2.5)


def refused_cases() -> list[Any]:
    """The refusal cases, each read from the lane when the run has one: two refused
    pulls wait on the registry's delay, and leave what they may by IDs known before."""
    return [pytest.param(c, marks=ahead(f"refused-{c}")) for c in sorted(REFUSALS)]


@pytest.mark.exclusive
@pytest.mark.requirement("CONCURRENCY-004")
@pytest.mark.parametrize("case", refused_cases())
def test_concurrent_failing_pulls_both_fail(pulled_together, case):
    pulls = pulled_together(f"refused-{case}", case)
    what = (
        f"the registry refused {pulls.subject.ref} (HTTP {REFUSALS[case].status} on its "
        f"{case}) to two pulls at once"
    )
    problems = []
    for label, ex in (("the first pull", pulls.first), ("the second pull", pulls.second)):
        try:
            assert_visible_failure(ex, f"{what}; {label}")
        except AssertionError as exc:
            problems.append(str(exc))
    assert not problems, "; ".join(problems)


@pytest.mark.exclusive
@pytest.mark.requirement("CONCURRENCY-005")
@pytest.mark.parametrize("case", refused_cases())
def test_concurrent_failing_pulls_leave_nothing(pulled_together, observe, case):
    pulls = pulled_together(f"refused-{case}", case)
    new = pulls.new
    named = pulls.image is not None
    observe[f"{case}: new_images"] = new
    left = (["an image under the name"] if named else []) + ([f"new images {new}"] if new else [])
    assert not left, (
        f"two concurrent pulls of {pulls.subject.ref}, refused at the "
        f"{case}, left {' and '.join(left)} behind"
    )
