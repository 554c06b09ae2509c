"""Registry faults and cancellation: pulls that the registry, or the client, does not let finish.

Every scenario serves an image of its own from the lab registry (repository
``<prefix>/faults-<label>``, content unique to the scenario and the same in every
run), makes the registry misbehave in one way, pulls, and records the answer and
what the pull left behind right after it. Two requirements read each scenario:
its own (FAULTS-001..007 and 009: whether a client can tell that the pull failed;
FAULTS-010: whether the engine cancelled the pull) and FAULTS-011 (whether it
left an image behind); FAULTS-008 judges both of its own. ``observe["error_at"]``
records where the error appeared: an HTTP status before any stream line, or a 200
stream ending with an error line.

A scenario runs once per module, for whichever of its checks comes first
(:func:`failed_pull`); a later check reads the outcome and cites its exchange as
evidence. So no verdict depends on the order the checks run in, and no scenario
runs twice in a run (the cut layer waits some 15 s on Docker's retries, the
cancellation several seconds).

Faults on the manifest apply to manifest requests only: a 5xx on a layer costs
Docker 20.10 five download attempts with growing waits (75 s), which would
judge its retry policy rather than the answer.

Cancellation (FAULTS-010) reads the stream only until the layer transfer is under
way (``create_image(until=...)``: the engine reports layer bytes, or the registry has
begun serving the layer), then closes the connection; an engine that says nothing
is hung up on after ``SILENCE`` seconds, which the throttled transfer outlasts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from engine_conformance.base.stream import Message
from engine_conformance.engine.target import Client, Exchange
from engine_conformance.judge.checks import (
    assert_nothing_left,
    assert_visible_failure,
    error_location,
    registry_requests,
    where,
)
from engine_conformance.judge.scenarios import Outcome, Scenarios
from engine_conformance.judge.verdicts import precondition
from engine_conformance.judge.vocabulary import (
    Subject,
    assert_failed_leaving_nothing,
    leftovers,
    pull,
)
from lab_registry import (
    Blob,
    CorruptBlob,
    CutShort,
    ErrorStatus,
    Image,
    Throttle,
    UnsupportedManifest,
    build_image,
)

if TYPE_CHECKING:
    from engine_conformance.run.lane import LaneContext

TAG = "v1"
PULL_DEADLINE = 60.0  # seconds for a whole pull (Docker needs 15 s for the cut layer)
CUT_LAYER_SIZE = 2 << 20
CUT_AFTER = 256 << 10
CANCEL_LAYER_SIZE = 4 << 20
CANCEL_RATE = 128 << 10  # 4 MiB takes 32 s: a transfer that is not cancelled is still going
CANCEL_CUT = 2 << 20  # ... and is cut by the registry after 16 s, so it can never complete
CANCEL_BOUND = 10.0  # seconds the engine has to hang up on the registry
SILENCE = 8.0  # seconds without a stream line after which the client hangs up anyway


# -- the image each scenario pulls ---------------------------------------------------


def small_image(label: str, filler: str = "a") -> Image:
    """An image of one uncompressed layer whose content names ``label`` (same every run).

    Images made with different ``filler`` of the same length have blobs of the same
    sizes, so one can be served in place of the other.
    """
    return build_image(
        {"lab/faults.txt": f"engine-conformance faults {label} {filler * 16}\n"},
        env={"LAB_FAULTS": label, "LAB_FILLER": filler * 16},
        cmd=["/bin/sh"],
        compress=False,
    )


def serving(
    lab: Any,
    client: Client,
    images: Any,
    served: list[str],
    claim: Callable[..., None] = lambda *ids: None,
) -> Callable[..., Subject]:
    """``make(label, ...)``: serve a scenario's image from ``lab`` and track what its pull
    may leave; ``claim`` is told the image IDs it may create before anything is sent."""

    def make(
        label: str,
        image: Image | None = None,
        *,
        large: int = 0,
        seed: int = 0,
        also: tuple[str, ...] = (),
    ) -> Subject:
        catalogue = lab.catalogue
        repository = catalogue.name(f"faults-{label}")
        served.append(repository)
        if large:
            image = catalogue.add_large(repository, TAG, large, seed=seed)
        else:
            image = image or small_image(label)
            catalogue.add(repository, TAG, image)
        claim(image.config_digest, image.digest, *also)
        ref = lab.reference(repository, TAG)
        images.track(ref)
        precondition(
            client.inspect_image(ref) is None,
            f"{ref} existed before the check, which judges that none is left",
        )
        subject = Subject(repository, ref, image)
        for image_id in (image.config_digest, *also):
            if client.inspect_image(image_id) is None:  # never touch what was there before
                subject.ids.append(image_id)
                images.track(image_id)
        return subject

    return make


@pytest.fixture
def subjects(lab_control, client: Client, images) -> Iterator[Callable[..., Subject]]:
    """Serves a scenario's image; stops serving it afterwards (so no late retry can succeed)."""
    served: list[str] = []
    yield serving(lab_control, client, images, served)
    for repository in served:
        lab_control.catalogue.remove(repository)


# -- scenarios: each is run once per module, whichever check reads it first ------------


@dataclass
class Setup:
    """What a scenario works with: the fixtures of the check that runs it."""

    client: Client
    lab: Any
    subjects: Callable[..., Subject]
    secret: Callable[[str], str]


@dataclass
class Pulled:
    """A scenario's pull as it happened.

    ``what``: why it could not succeed; ``left``: what existed right after it, under the
    name or by one of the image's IDs; ``hung_up``: the client closed the connection
    before the answer's end (FAULTS-010), whose findings are ``not_cancelled``.
    """

    subject: Subject
    exchange: Exchange
    what: str
    hung_up: bool = False
    not_cancelled: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)


def _finish(setup: Setup, pulled: Pulled, observed: dict) -> None:
    """Where the answer reported the failure, and what the pull left right after it."""
    ex = pulled.exchange
    if not pulled.hung_up:  # an answer hung up on has no end to report an error in
        observed["error_at"] = error_location(ex) or f"nowhere a client can see (HTTP {ex.status})"
        observed["error"] = _error_text(ex)
    pulled.left = leftovers(setup.client, [pulled.subject.ref], pulled.subject.ids)
    observed["left_behind"] = pulled.left


SCENARIOS = Scenarios("faults", evidence=lambda pulled: [pulled.exchange], finish=_finish)
scenario = SCENARIOS.scenario


def ahead(label: str, wait: float) -> pytest.MarkDecorator:
    """Marks a check reading scenario ``label``, which the run may start in its lane
    (``wait``: about how long it waits on Docker; the longest start first)."""

    def in_lane(lane: LaneContext) -> Outcome:
        served: list[str] = []
        make = serving(lane.lab, lane.client, lane.images, served, lane.claim)
        try:
            return SCENARIOS.run(label, Setup(lane.client, lane.lab, make, lane.secret))
        finally:
            for repository in served:
                lane.lab.catalogue.remove(repository)

    return pytest.mark.ahead(SCENARIOS.key(label), in_lane, wait=wait)


# The cut layer waits some 15 s on Docker's retries: the engine is idle meanwhile.
CUT = ahead("cut", wait=15)


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    """Each scenario's outcome for the module, shared by the checks that read it."""
    return {}


@pytest.fixture
def failed_pull(
    outcomes, client, lab_control, subjects, secret, observe, lane
) -> Callable[..., Pulled]:
    """``failed_pull(label)``: that scenario's pull (:meth:`Scenarios.read`)."""

    def get(label: str, case: str = "") -> Pulled:
        pulled: Pulled = SCENARIOS.read(
            label,
            outcomes,
            lane,
            lambda: Setup(client, lab_control, subjects, secret),
            client,
            observe,
            case,
        )
        return pulled

    return get


def _error_text(ex: Exchange) -> str | None:
    if ex.status >= 400:
        return ex.body[:300].decode("utf-8", "replace").strip()
    return ex.stream_error


# -- error statuses on the manifest ---------------------------------------------------

STATUS_FAULTS = {
    "FAULTS-001": ErrorStatus(500),
    "FAULTS-002": ErrorStatus(503),
    "FAULTS-003": ErrorStatus(429, retry_after=1),
    "FAULTS-005": ErrorStatus(403),
    "FAULTS-006": ErrorStatus(404),
}


def _manifest_answered(fault: ErrorStatus) -> Callable[[Setup, dict], Pulled]:
    def run(setup: Setup, observed: dict) -> Pulled:
        lab = setup.lab
        subject = setup.subjects(f"status-{fault.status}")
        lab.fault(fault, repository=subject.repository, kinds=["manifest"])
        mark = lab.journal.mark()
        ex = pull(setup.client, None, subject, deadline=PULL_DEADLINE)
        observed["registry_answers"] = sorted(
            {e.status for e in lab.journal.since(mark) if e.kind == "manifest"}
        )
        registry_requests(
            lab.journal,
            mark,
            subject.repository,
            f"a manifest answered {fault.status}",
            wanted=lambda e: e.status == fault.status,
        )
        return Pulled(subject, ex, f"the registry answered the manifest {fault.status}")

    return run


for _fault in STATUS_FAULTS.values():
    scenario(f"status-{_fault.status}")(_manifest_answered(_fault))


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(f, marks=pytest.mark.requirement(rid), id=f"status-{f.status}")
        for rid, f in STATUS_FAULTS.items()
    ],
)
def test_manifest_error_status(failed_pull, fault):
    pulled = failed_pull(f"status-{fault.status}")
    assert_visible_failure(pulled.exchange, pulled.what)


@scenario("auth")
def _credentials_required(setup: Setup, observed: dict) -> Pulled:
    lab = setup.lab
    subject = setup.subjects("auth")
    lab.require_auth(
        "ectest-user", setup.secret("ectest-faults-secret"), repository=subject.repository
    )
    mark = lab.journal.mark()
    ex = pull(setup.client, None, subject, deadline=PULL_DEADLINE)
    observed["registry_saw"] = [
        f"{e.method} {e.path} -> {e.status} (Authorization: "
        + (f"{e.auth_scheme}, user {e.auth_username!r})" if e.auth_scheme else "none)")
        for e in lab.journal.since(mark)
    ]
    registry_requests(
        lab.journal,
        mark,
        subject.repository,
        "a registry refusing for want of credentials",
        kinds=("base", "manifest"),
        wanted=lambda e: e.status == 401,
    )
    return Pulled(subject, ex, "the repository requires credentials and none were given")


@pytest.mark.requirement("FAULTS-004")
def test_credentials_required(failed_pull):
    pulled = failed_pull("auth")
    assert_visible_failure(pulled.exchange, pulled.what)


# -- blobs ----------------------------------------------------------------------------


@scenario("cut")
def _layer_cut_short(setup: Setup, observed: dict) -> Pulled:
    lab = setup.lab
    subject = setup.subjects("cut", large=CUT_LAYER_SIZE, seed=7007)
    journal, path = lab.journal, subject.layer_path
    mark = journal.mark()
    # From the cut on the registry no longer has the layer: the registry itself switches
    # faults, so an engine that retries at once cannot be served the layer in between.
    cut_rule = lab.fault(CutShort(CUT_AFTER), prefix=path, times=1)
    lab.fault(ErrorStatus(404), prefix=path, after=cut_rule)
    ex = pull(setup.client, None, subject, deadline=PULL_DEADLINE)
    cut = registry_requests(
        journal,
        mark,
        subject.repository,
        "a layer transfer cut short",
        kinds=("blob",),
        wanted=lambda e: e.path == path and e.cut_short,
    )[0]
    later = [e for e in journal.since(cut.seq + 1) if e.path == path and e.method == "GET"]
    precondition(
        not any(e.status in (200, 206) for e in later),
        "the engine asked for the layer again before the registry stopped serving "
        "it: the check could not set up its fault in time",
    )
    observed["requests_after_cut"] = [e.status for e in later]
    return Pulled(
        subject,
        ex,
        f"the layer transfer was cut after {CUT_AFTER} of "
        f"{cut.body_size} bytes and the registry no longer serves it",
    )


@CUT
@pytest.mark.requirement("FAULTS-007")
def test_layer_cut_short(failed_pull):
    pulled = failed_pull("cut")
    assert_visible_failure(pulled.exchange, pulled.what)


def impostor(genuine: Blob, other: Blob) -> Blob:
    """``other``'s bytes under ``genuine``'s digest (same size: only a digest check tells)."""
    assert other.size == genuine.size and other.digest != genuine.digest
    return Blob(genuine.digest, genuine.size, genuine.media_type, data=other.read())


def swapped(genuine: Image, other: Image, what: str) -> Image:
    """``genuine`` with its layer or config bytes replaced by ``other``'s, digests unchanged."""
    config, layers = genuine.config, genuine.layers
    if what == "config":
        config = impostor(genuine.config, other.config)
    else:
        layers = (impostor(genuine.layers[0], other.layers[0]),)
    return Image(genuine.manifest, config, layers, genuine.diff_ids, genuine.platform)


DIGEST_CASES = ["layer-flipped", "layer-swapped", "config-swapped"]


def _not_matching_its_digest(case: str) -> Callable[[Setup, dict], Pulled]:
    def run(setup: Setup, observed: dict) -> Pulled:
        lab, label, what = setup.lab, f"digest-{case}", case.split("-")[0]
        if case == "layer-flipped":
            subject = setup.subjects(label)
            lab.fault(CorruptBlob(), prefix=subject.layer_path)
            how = "the registry served the layer with its first byte flipped"
        else:
            genuine, other = small_image(label, "a"), small_image(label, "b")
            # A non-verifying engine would compute the other config's digest as the image ID.
            subject = setup.subjects(
                label, swapped(genuine, other, what), also=(other.config_digest,)
            )
            how = (
                f"the registry served another well-formed {what} of the same size under "
                f"the {what}'s digest"
            )
        bad = subject.config_path if what == "config" else subject.layer_path
        mark = lab.journal.mark()
        ex = pull(setup.client, None, subject, deadline=PULL_DEADLINE)
        registry_requests(
            lab.journal,
            mark,
            subject.repository,
            f"a {what} that does not match its digest",
            kinds=("blob",),
            wanted=lambda e: e.path == bad and e.method == "GET" and e.status == 200,
        )
        return Pulled(subject, ex, how)

    return run


for _case in DIGEST_CASES:
    scenario(f"digest-{_case}")(_not_matching_its_digest(_case))


@pytest.mark.requirement("FAULTS-008")
@pytest.mark.parametrize("case", DIGEST_CASES)
def test_blob_not_matching_its_digest(failed_pull, case):
    # SHOULD on the image spec and the reference engine, which covers both halves.
    pulled = failed_pull(f"digest-{case}", case)
    assert_failed_leaving_nothing(pulled.exchange, pulled.what, pulled.left)


# -- manifests ------------------------------------------------------------------------


@scenario("unsupported")
def _unsupported_manifest(setup: Setup, observed: dict) -> Pulled:
    lab = setup.lab
    subject = setup.subjects("unsupported")
    fault = UnsupportedManifest()
    lab.fault(fault, repository=subject.repository)
    mark = lab.journal.mark()
    ex = pull(setup.client, None, subject, deadline=PULL_DEADLINE)
    registry_requests(
        lab.journal,
        mark,
        subject.repository,
        "a manifest of an unsupported type",
        wanted=lambda e: e.status == 200 and bool(e.fault),
    )
    return Pulled(subject, ex, f"the registry served a manifest of type {fault.media_type}")


@pytest.mark.requirement("FAULTS-009")
def test_unsupported_manifest(failed_pull):
    pulled = failed_pull("unsupported")
    assert_visible_failure(pulled.exchange, pulled.what)


# -- cancellation ---------------------------------------------------------------------


def layer_progress(message: Message) -> bool:
    """The engine reports bytes of a layer received: its transfer is under way."""
    detail = message.obj.get("progressDetail")
    current = detail.get("current") if isinstance(detail, dict) else None
    return isinstance(current, int) and current > 0


@scenario("cancel")
def _client_hangs_up(setup: Setup, observed: dict) -> Pulled:
    client, lab = setup.client, setup.lab
    subject = setup.subjects("cancel", large=CANCEL_LAYER_SIZE, seed=7010)
    journal, path = lab.journal, subject.layer_path
    # The throttle counts the layer GET when it arrives: the registry's word that the
    # transfer has begun, whatever the engine's stream says.
    throttle = lab.fault(Throttle(CANCEL_RATE), prefix=path)
    lab.fault(CutShort(CANCEL_CUT), prefix=path)
    mark = journal.mark()

    def under_way(message: Message) -> bool:
        return layer_progress(message) or throttle.hits > 0

    # The client hangs up at the first stream line once the layer transfer is under way;
    # an engine that says nothing meanwhile is hung up on after SILENCE seconds.
    ex = client.create_image(subject.params, until=under_way, deadline=SILENCE)
    closed = time.monotonic()
    ended = [e for e in journal.since(mark) if e.path == path and e.method == "GET"]
    observed["closed_after"] = round(closed - ex.started, 2)
    observed["lines_before_close"] = len(ex.messages)
    observed["hung_up_on"] = "a stream line" if ex.stopped else f"{SILENCE:.0f} s of silence"
    precondition(
        ex.status == 200,
        f"the pull was answered HTTP {ex.status} before any stream: there was no pull to cancel",
    )
    precondition(
        ex.stopped or ex.timed_out, f"the pull ended ({where(ex)}) before the client could hang up"
    )
    precondition(
        throttle.hits > 0,
        "the engine had not begun fetching the layer when the "
        "client hung up, so there was no transfer to cancel",
    )
    precondition(not ended, "the layer transfer had ended before the client hung up")
    entry = journal.wait_for(
        lambda e: e.path == path and e.method == "GET", timeout=CANCEL_BOUND, mark=mark
    )
    observed["registry_saw"] = _transfer(entry, closed)
    not_cancelled = []
    if entry is None:
        not_cancelled.append(
            f"the engine was still reading the layer {CANCEL_BOUND:.0f} s "
            "after the client closed the connection"
        )
    elif not entry.client_hung_up:
        how = "until the registry cut it" if entry.cut_short else "to its end"
        not_cancelled.append(
            f"the engine read the layer {how} ({entry.bytes_sent} of "
            f"{entry.body_size} bytes) after the client closed the connection"
        )
    return Pulled(
        subject,
        ex,
        "the client closed the connection while the layer transfer was "
        f"under way (the registry cuts it after {CANCEL_CUT} bytes: it cannot "
        "complete)",
        hung_up=True,
        not_cancelled=not_cancelled,
    )


@pytest.mark.requirement("FAULTS-010")
def test_closing_the_connection_cancels_the_pull(failed_pull):
    pulled = failed_pull("cancel")
    assert not pulled.not_cancelled, (
        "the pull was not cancelled when the client hung up: " + "; ".join(pulled.not_cancelled)
    )


def _transfer(entry: Any, closed: float) -> dict | None:
    if entry is None:
        return None
    return {
        "bytes_sent": entry.bytes_sent,
        "body_size": entry.body_size,
        "client_hung_up": entry.client_hung_up,
        "cut_by_registry": entry.cut_short,
        "seconds_after_close": round(time.monotonic() - closed, 2),
    }


# -- what a failed pull leaves ---------------------------------------------------------

# Every scenario above but FAULTS-008's, which judges what its own pulls leave.
LEFT_BEHIND = [f"status-{f.status}" for f in STATUS_FAULTS.values()] + [
    "auth",
    "cut",
    "unsupported",
    "cancel",
]


@pytest.mark.requirement("FAULTS-011")
@pytest.mark.parametrize(
    "label", [pytest.param(x, marks=CUT) if x == "cut" else x for x in LEFT_BEHIND]
)
def test_failed_pull_leaves_nothing(failed_pull, label):
    pulled = failed_pull(label, label)
    assert_nothing_left(pulled.what, pulled.left)
