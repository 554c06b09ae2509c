"""Registry faults and cancellation: pulls that the registry, or the client, does not let finish.

Every check serves an image of its own from the lab registry (repository
``<prefix>/faults-<label>``, content unique to the check and the same in every
run), makes the registry misbehave in one way, pulls, and judges whether a
client can tell that the pull failed and whether an image was left behind.
``observe["error_at"]`` records where the error appeared: an HTTP status
before any stream line, or a 200 stream ending with an error line.

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
from typing import Any

import pytest

from engine_conformance.checks import (
    assert_visible_failure,
    error_location,
    registry_requests,
    where,
)
from engine_conformance.stream import Message
from engine_conformance.target import Client, Exchange
from engine_conformance.verdicts import precondition
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

TAG = "v1"
PULL_DEADLINE = 60.0  # seconds for a whole pull (Docker needs 15 s for the cut layer)
CUT_LAYER_SIZE = 2 << 20
CUT_AFTER = 256 << 10
CANCEL_LAYER_SIZE = 4 << 20
CANCEL_RATE = 128 << 10  # 4 MiB takes 32 s: a transfer that is not cancelled is still going
CANCEL_CUT = 2 << 20  # ... and is cut by the registry after 16 s, so it can never complete
CANCEL_BOUND = 10.0  # seconds the engine has to hang up on the registry
SILENCE = 8.0  # seconds without a stream line after which the client hangs up anyway


# -- the image each check pulls ------------------------------------------------------


@dataclass
class Subject:
    """An image of the check's own in the lab registry, and what its pull must not leave."""

    repository: str  # full repository name in the registry
    ref: str  # ADDRESS/<repository>:TAG
    image: Image
    ids: list[str] = field(default_factory=list)  # image IDs a pull might leave, new to the engine

    @property
    def params(self) -> dict[str, str]:
        return {"fromImage": self.ref.rsplit(":", 1)[0], "tag": TAG}

    def blob_path(self, blob: Blob) -> str:
        return f"/v2/{self.repository}/blobs/{blob.digest}"

    @property
    def layer_path(self) -> str:
        return self.blob_path(self.image.layers[0])

    @property
    def config_path(self) -> str:
        return self.blob_path(self.image.config)


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


@pytest.fixture
def subjects(lab_control, client: Client, images) -> Iterator[Callable[..., Subject]]:
    """Serves a check's image; stops serving it afterwards (so no late retry can succeed)."""
    served: list[str] = []

    def make(label: str, image: Image | None = None, *, large: int = 0, seed: int = 0,
             also: tuple[str, ...] = ()) -> Subject:
        catalogue = lab_control.catalogue
        repository = catalogue.name(f"faults-{label}")
        served.append(repository)
        if large:
            image = catalogue.add_large(repository, TAG, large, seed=seed)
        else:
            image = image or small_image(label)
            catalogue.add(repository, TAG, image)
        ref = lab_control.reference(repository, TAG)
        images.track(ref)
        precondition(client.inspect_image(ref) is None,
                     f"{ref} existed before the check, which judges that none is left")
        subject = Subject(repository, ref, image)
        for image_id in (image.config_digest, *also):
            if client.inspect_image(image_id) is None:  # never touch what was there before
                subject.ids.append(image_id)
                images.track(image_id)
        return subject

    yield make
    for repository in served:
        lab_control.catalogue.remove(repository)


def pull(client: Client, subject: Subject) -> Exchange:
    return client.create_image(subject.params, deadline=PULL_DEADLINE)


def leftovers(client: Client, subject: Subject) -> list[str]:
    """The image under the name, and any of the subject's image IDs, that exist now."""
    found = [subject.ref] if client.inspect_image(subject.ref) is not None else []
    return found + [i for i in subject.ids if client.inspect_image(i) is not None]


def judge_failed_pull(client: Client, observe: dict, subject: Subject, ex: Exchange,
                      what: str, case: str = "") -> None:
    """The pull must have failed visibly and left nothing; every problem is reported at once.

    ``case`` prefixes the observation keys of a parametrized check.
    """
    key = f"{case}: " if case else ""
    observe[f"{key}error_at"] = (error_location(ex)
                                 or f"nowhere a client can see (HTTP {ex.status})")
    observe[f"{key}error"] = _error_text(ex)
    left = leftovers(client, subject)
    problems = []
    try:
        assert_visible_failure(ex, what)
    except AssertionError as exc:
        problems.append(str(exc))
    if left:
        problems.append(f"{what}, yet the engine left an image behind: {', '.join(left)}")
    assert not problems, "; ".join(problems)


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


@pytest.mark.parametrize(
    "fault",
    [pytest.param(f, marks=pytest.mark.requirement(rid), id=f"status-{f.status}")
     for rid, f in STATUS_FAULTS.items()],
)
def test_manifest_error_status(client, lab_control, subjects, observe, fault):
    subject = subjects(f"status-{fault.status}")
    lab_control.fault(fault, repository=subject.repository, kinds=["manifest"])
    mark = lab_control.journal.mark()
    ex = pull(client, subject)
    observe["registry_answers"] = sorted({e.status for e in lab_control.journal.since(mark)
                                         if e.kind == "manifest"})
    registry_requests(lab_control.journal, mark, subject.repository,
                      f"a manifest answered {fault.status}",
                      wanted=lambda e: e.status == fault.status)
    judge_failed_pull(client, observe, subject, ex,
                      f"the registry answered the manifest {fault.status}")


@pytest.mark.requirement("FAULTS-004")
def test_credentials_required(client, lab_control, subjects, observe, secret):
    subject = subjects("auth")
    lab_control.require_auth("ectest-user", secret("ectest-faults-secret"),
                             repository=subject.repository)
    mark = lab_control.journal.mark()
    ex = pull(client, subject)
    observe["registry_saw"] = [f"{e.method} {e.path} -> {e.status} (Authorization: "
                               + (f"{e.auth_scheme}, user {e.auth_username!r})"
                                  if e.auth_scheme else "none)")
                               for e in lab_control.journal.since(mark)]
    registry_requests(lab_control.journal, mark, subject.repository,
                      "a registry refusing for want of credentials", kinds=("base", "manifest"),
                      wanted=lambda e: e.status == 401)
    judge_failed_pull(client, observe, subject, ex,
                      "the repository requires credentials and none were given")


# -- blobs ----------------------------------------------------------------------------


@pytest.mark.requirement("FAULTS-007")
def test_layer_cut_short(client, lab_control, subjects, observe):
    subject = subjects("cut", large=CUT_LAYER_SIZE, seed=7007)
    journal, path = lab_control.journal, subject.layer_path
    mark = journal.mark()
    # From the cut on the registry no longer has the layer: the registry itself switches
    # faults, so an engine that retries at once cannot be served the layer in between.
    cut_rule = lab_control.fault(CutShort(CUT_AFTER), prefix=path, times=1)
    lab_control.fault(ErrorStatus(404), prefix=path, after=cut_rule)
    ex = pull(client, subject)
    cut = registry_requests(journal, mark, subject.repository,
                            "a layer transfer cut short", kinds=("blob",),
                            wanted=lambda e: e.path == path and e.cut_short)[0]
    later = [e for e in journal.since(cut.seq + 1) if e.path == path and e.method == "GET"]
    precondition(not any(e.status in (200, 206) for e in later),
                 "the engine asked for the layer again before the registry stopped serving "
                 "it: the check could not set up its fault in time")
    observe["requests_after_cut"] = [e.status for e in later]
    judge_failed_pull(client, observe, subject, ex,
                      f"the layer transfer was cut after {CUT_AFTER} of {cut.body_size} bytes "
                      "and the registry no longer serves it")


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


@pytest.mark.requirement("FAULTS-008")
@pytest.mark.parametrize("case", ["layer-flipped", "layer-swapped", "config-swapped"])
def test_blob_not_matching_its_digest(client, lab_control, subjects, observe, case):
    label = f"digest-{case}"
    what = case.split("-")[0]
    if case == "layer-flipped":
        subject = subjects(label)
        lab_control.fault(CorruptBlob(), prefix=subject.layer_path)
        how = "the registry served the layer with its first byte flipped"
    else:
        genuine, other = small_image(label, "a"), small_image(label, "b")
        # A non-verifying engine would compute the other config's digest as the image ID.
        subject = subjects(label, swapped(genuine, other, what), also=(other.config_digest,))
        how = (f"the registry served another well-formed {what} of the same size under the "
               f"{what}'s digest")
    bad = subject.config_path if what == "config" else subject.layer_path
    mark = lab_control.journal.mark()
    ex = pull(client, subject)
    registry_requests(lab_control.journal, mark, subject.repository,
                      f"a {what} that does not match its digest", kinds=("blob",),
                      wanted=lambda e: e.path == bad and e.method == "GET" and e.status == 200)
    judge_failed_pull(client, observe, subject, ex, how, case)


# -- manifests ------------------------------------------------------------------------


@pytest.mark.requirement("FAULTS-009")
def test_unsupported_manifest(client, lab_control, subjects, observe):
    subject = subjects("unsupported")
    fault = UnsupportedManifest()
    lab_control.fault(fault, repository=subject.repository)
    mark = lab_control.journal.mark()
    ex = pull(client, subject)
    registry_requests(lab_control.journal, mark, subject.repository,
                      "a manifest of an unsupported type",
                      wanted=lambda e: e.status == 200 and bool(e.fault))
    judge_failed_pull(client, observe, subject, ex,
                      f"the registry served a manifest of type {fault.media_type}")


# -- cancellation ---------------------------------------------------------------------


def layer_progress(message: Message) -> bool:
    """The engine reports bytes of a layer received: its transfer is under way."""
    detail = message.obj.get("progressDetail")
    current = detail.get("current") if isinstance(detail, dict) else None
    return isinstance(current, int) and current > 0


@pytest.mark.requirement("FAULTS-010")
def test_closing_the_connection_cancels_the_pull(client, lab_control, subjects, observe):
    subject = subjects("cancel", large=CANCEL_LAYER_SIZE, seed=7010)
    journal, path = lab_control.journal, subject.layer_path
    # The throttle counts the layer GET when it arrives: the registry's word that the
    # transfer has begun, whatever the engine's stream says.
    throttle = lab_control.fault(Throttle(CANCEL_RATE), prefix=path)
    lab_control.fault(CutShort(CANCEL_CUT), prefix=path)
    mark = journal.mark()

    def under_way(message: Message) -> bool:
        return layer_progress(message) or throttle.hits > 0

    # The client hangs up at the first stream line once the layer transfer is under way;
    # an engine that says nothing meanwhile is hung up on after SILENCE seconds.
    ex = client.create_image(subject.params, until=under_way, deadline=SILENCE)
    closed = time.monotonic()
    ended = [e for e in journal.since(mark) if e.path == path and e.method == "GET"]
    observe["closed_after"] = round(closed - ex.started, 2)
    observe["lines_before_close"] = len(ex.messages)
    observe["hung_up_on"] = "a stream line" if ex.stopped else f"{SILENCE:.0f} s of silence"
    precondition(ex.status == 200, f"the pull was answered HTTP {ex.status} before any "
                 "stream: there was no pull to cancel")
    precondition(ex.stopped or ex.timed_out, f"the pull ended ({where(ex)}) before the client "
                 "could hang up")
    precondition(throttle.hits > 0, "the engine had not begun fetching the layer when the "
                 "client hung up, so there was no transfer to cancel")
    precondition(not ended, "the layer transfer had ended before the client hung up")
    entry = journal.wait_for(lambda e: e.path == path and e.method == "GET",
                             timeout=CANCEL_BOUND, mark=mark)
    observe["registry_saw"] = _transfer(entry, closed)
    problems = []
    if entry is None:
        problems.append(f"the engine was still reading the layer {CANCEL_BOUND:.0f} s after the "
                        "client closed the connection")
    elif not entry.client_hung_up:
        how = "until the registry cut it" if entry.cut_short else "to its end"
        problems.append(f"the engine read the layer {how} ({entry.bytes_sent} of "
                        f"{entry.body_size} bytes) after the client closed the connection")
    left = leftovers(client, subject)
    if left:
        problems.append(f"an image was left behind: {', '.join(left)}")
    assert not problems, "the pull was not cancelled when the client hung up: " + "; ".join(
        problems)


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
