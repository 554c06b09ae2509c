"""The progress stream of POST /images/create, judged over a fixed set of pulls and an import.

The requests are sent once per run (:func:`traffic`) and shared by every
PROGRESS check, so a check's verdict does not depend on which checks run:

* ``large``: a 4 MiB layer the lab registry serves at 1 MiB/s. Engines report
  download progress only while a transfer lasts (Podman 4.3 once a second), so
  the layer is slowed down enough for several progress lines;
* ``single``, ``oci``, ``multi``: the standard images (work with ``--registry``);
* ``import``: ``fromSrc=-`` with a small archive;
* ``corrupt-layer``, ``layer-unknown``, ``unsupported-manifest``: pulls the lab
  registry makes fail once the stream may have started (a 1 MiB layer whose
  first byte is flipped, a layer answered 404, a manifest of an unknown type).

A pull *succeeded* when the image exists under its name right afterwards, and
*failed* when it does not; everything pulled is removed at the end. With an
external registry (``--registry``) only the standard pulls and the import are
sent: the others need the lab registry's faults and catalogue.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from engine_conformance.base import archives
from engine_conformance.catalogue import spec
from engine_conformance.engine.target import Client, Exchange
from engine_conformance.judge.checks import imported_id, require_end
from engine_conformance.judge.cleanup import Images
from engine_conformance.judge.verdicts import precondition
from lab_registry import CorruptBlob, ErrorStatus, Throttle, UnsupportedManifest, build_image

LARGE_SIZE = 4 << 20
LARGE_RATE = 1 << 20  # 4 s of transfer: Podman 4.3 reports progress once a second
CORRUPT_SIZE = 1 << 20
DEADLINE = 60.0
STANDARD = (("single", "v1"), ("oci", "latest"), ("multi", "latest"))


@dataclass
class Sent:
    label: str
    kind: str  # "pull" or "import"
    exchange: Exchange
    succeeded: bool  # the image exists under its name afterwards

    def describe(self) -> str:
        return f"{self.label} ({self.exchange.request_line[:160]} -> HTTP {self.exchange.status})"


@dataclass
class Transfer:
    """When the throttled layer's bytes flowed, on the client's clock (``time.monotonic``).

    ``start`` is when the lab registry began answering the layer's GET; the throttle sends
    ``size`` bytes no faster than LARGE_RATE, so they are still flowing until ``end``.
    """

    start: float
    size: int

    @property
    def seconds(self) -> float:
        return self.size / LARGE_RATE

    @property
    def end(self) -> float:
        return self.start + self.seconds


@dataclass
class Traffic:
    sent: list[Sent]
    external: bool
    transfer: Transfer | None = None

    @property
    def streams(self) -> list[Sent]:
        """Every 200 answer."""
        return [s for s in self.sent if s.exchange.status == 200]

    @property
    def successes(self) -> list[Sent]:
        return [s for s in self.streams if s.succeeded]

    @property
    def failed_streams(self) -> list[Sent]:
        """200 answers to pulls that did not produce the image."""
        return [s for s in self.streams if not s.succeeded and s.kind == "pull"]

    @property
    def failures(self) -> list[Sent]:
        return [s for s in self.sent if not s.succeeded]


def _own_image(label: str):
    return build_image(
        {"lab/progress.txt": f"engine-conformance progress {label}\n"},
        env={"LAB_PROGRESS": label},
        cmd=["/bin/sh"],
    )


def pulled(client: Client, lab, tracker: Images, label: str, repository: str, tag: str) -> Sent:
    """Pull ``repository:tag`` of ``lab``; ``tracker`` removes it later."""
    ref = lab.reference(repository, tag)
    tracker.track(ref)
    ex = client.create_image({"fromImage": ref.rsplit(":", 1)[0], "tag": tag}, deadline=DEADLINE)
    return Sent(label, "pull", ex, client.inspect_image(ref) is not None)


def large_pull(
    client: Client, lab, tracker: Images, claim: Callable[..., None] = lambda *ids: None
) -> tuple[Sent, Transfer | None]:
    """The ``large`` pull: its layer served at LARGE_RATE, and when its bytes flowed."""
    catalogue = lab.catalogue
    name = catalogue.name("progress-large")
    large = catalogue.add_large(name, "v1", LARGE_SIZE, seed=5001)
    claim(large.config_digest, large.digest)
    try:
        layer = f"/v2/{name}/blobs/{large.layers[0].digest}"
        mark = lab.journal.mark()
        with lab.fault(Throttle(LARGE_RATE), prefix=layer):
            sent = pulled(client, lab, tracker, "large", name, "v1")
        # The journal's times are wall-clock; the stream's arrivals monotonic.
        shift = time.monotonic() - time.time()
        gets = [
            e
            for e in lab.journal.since(mark)
            if e.path == layer and e.method == "GET" and e.bytes_sent > 0
        ]
        transfer = None
        if gets:
            transfer = Transfer(min(e.time for e in gets) + shift, max(e.bytes_sent for e in gets))
        return sent, transfer
    finally:
        catalogue.remove(name)


# The large pull waits some 4 s on its throttled layer: the run starts it in its lane.
pytestmark = pytest.mark.ahead(
    "progress-large",
    lambda lane: large_pull(lane.client, lane.lab, lane.images, lane.claim),
    wait=LARGE_SIZE / LARGE_RATE,
)


@pytest.fixture(scope="module")
def traffic(client: Client, lab, run_state, lane) -> Iterator[Traffic]:
    """Every progress request, sent once; shared by the PROGRESS checks."""
    tracker = Images(client, run_state)
    sent: list[Sent] = []
    served: list[str] = []
    transfer: Transfer | None = None

    def do_pull(label: str, repository: str, tag: str) -> None:
        sent.append(pulled(client, lab, tracker, label, repository, tag))

    try:
        if not lab.external:
            ahead = lane.result("progress-large") if lane is not None else None
            large, transfer = ahead or large_pull(client, lab, tracker)
            if ahead is not None:
                client.cite([large.exchange])
            sent.append(large)
        for short, tag in STANDARD:
            do_pull(short, short, tag)
        repo = tracker.name("progress-import")
        archive = archives.rootfs({"etc/ectest-progress": f"{repo}\n".encode()})
        ex = client.create_image({"fromSrc": "-", "repo": repo}, body=archive, deadline=DEADLINE)
        if found := imported_id(ex):
            tracker.track(found)
        sent.append(Sent("import", "import", ex, client.inspect_image(repo) is not None))
        if not lab.external:
            catalogue = lab.catalogue
            for label in ("corrupt-layer", "layer-unknown", "unsupported-manifest"):
                name = catalogue.name(f"progress-{label}")
                served.append(name)
                if label == "corrupt-layer":
                    image = catalogue.add_large(name, "v1", CORRUPT_SIZE, seed=5002)
                else:
                    image = catalogue.add(name, "v1", _own_image(label))
                layer = f"/v2/{name}/blobs/{image.layers[0].digest}"
                with ExitStack() as faults:
                    if label == "corrupt-layer":
                        faults.enter_context(lab.fault(CorruptBlob(), prefix=layer))
                    elif label == "layer-unknown":
                        faults.enter_context(lab.fault(ErrorStatus(404), prefix=layer))
                    else:
                        faults.enter_context(lab.fault(UnsupportedManifest(), repository=name))
                    do_pull(label, name, "v1")
        yield Traffic(sent, lab.external, transfer)
    finally:
        tracker.cleanup()
        for name in served:
            lab.catalogue.remove(name)


# -- judging ----------------------------------------------------------------------------


def verdict(
    client: Client, observe: dict, judged: list[Sent], bad: list[tuple[Sent, str]], what: str
) -> None:
    cited = [s for s, _ in bad] or judged
    client.cite(s.exchange for s in cited[:6])
    observe["judged"] = [s.label for s in judged]
    observe["violations"] = len(bad)
    assert not bad, f"{len(bad)} of {len(judged)} {what}: " + " | ".join(
        f"{s.describe()}: {problem}" for s, problem in bad[:3]
    )


def _detail(obj: dict) -> tuple[int | None, int | None]:
    detail = obj.get("progressDetail")
    if not isinstance(detail, dict):
        return None, None
    current, total = detail.get("current"), detail.get("total")
    return (
        current if isinstance(current, int) else None,
        total if isinstance(total, int) else None,
    )


# -- framing and schema ------------------------------------------------------------------


@pytest.mark.requirement("PROGRESS-001")
def test_content_type_is_json(client, traffic, observe):
    streams = traffic.streams
    observe["content_types"] = sorted({s.exchange.content_type or "(none)" for s in streams})
    if not streams:
        pytest.skip("no progress request was answered 200")
    bad = []
    for s in streams:
        ctype = s.exchange.content_type.split(";")[0].strip()
        if ctype != "application/json":
            bad.append((s, f"Content-Type is {ctype or 'missing'!r}, not application/json"))
    verdict(client, observe, streams, bad, "200 answers are not application/json")


@pytest.mark.requirement("PROGRESS-002")
def test_every_line_is_one_json_object(client, traffic, observe):
    streams = traffic.streams
    observe["lines"] = sum(len(s.exchange.messages) for s in streams)
    if not streams:
        pytest.skip("no progress request was answered 200")
    bad = []
    for s in streams:
        for error in s.exchange.framing_errors[:1]:
            bad.append(
                (s, f"the line at byte {error.offset} is {error.detail}: {error.raw[:80]!r}")
            )
    verdict(client, observe, streams, bad, "200 streams have lines that are not one JSON object")


@pytest.mark.requirement("PROGRESS-003")
def test_every_line_is_create_image_info(client, traffic, observe):
    streams = traffic.streams
    if not streams:
        pytest.skip("no progress request was answered 200")
    bad = []
    for s in streams:
        for message in s.exchange.messages:
            problems = spec.validate_stream_item(message.obj)
            if problems:
                bad.append((s, f"line {message.obj} at byte {message.offset}: {problems[0]}"))
                break
    verdict(client, observe, streams, bad, "200 streams have lines that are not CreateImageInfo")


# -- progress numbers ----------------------------------------------------------------------


@pytest.mark.requirement("PROGRESS-004")
def test_current_never_exceeds_total(client, traffic, observe):
    judged, bad, pairs = [], [], 0
    for s in traffic.streams:
        counted = False
        for message in s.exchange.messages:
            current, total = _detail(message.obj)
            if current is None or total is None or total <= 0:
                continue
            pairs, counted = pairs + 1, True
            if current > total:
                bad.append((s, f"line {message.obj} reports current {current} > total {total}"))
                break
        if counted:
            judged.append(s)
    observe["progress_lines"] = pairs
    if not judged:
        pytest.skip("the engine sent no progressDetail with both current and a positive total")
    verdict(client, observe, judged, bad, "streams report more progress than the total")


def _is_retry(status: object) -> bool:
    return isinstance(status, str) and status.lower().startswith("retrying")


@pytest.mark.requirement("PROGRESS-005")
def test_progress_never_goes_backwards(client, traffic, observe):
    judged, bad, compared = [], [], 0
    for s in traffic.streams:
        last: dict[tuple[str, str], int] = {}
        pairs_here = 0
        for message in s.exchange.messages:
            obj = message.obj
            layer, status = obj.get("id"), obj.get("status")
            if _is_retry(status):
                last = {k: v for k, v in last.items() if k[0] != layer}
                continue
            current, _ = _detail(obj)
            if current is None or not isinstance(layer, str) or not isinstance(status, str):
                continue
            key = (layer, status)
            if key in last:
                pairs_here += 1
                if current < last[key]:
                    bad.append((s, f"{status} of {layer} went from {last[key]} back to {current}"))
                    break
            last[key] = current
        if pairs_here:
            judged.append(s)
            compared += pairs_here
    observe["comparisons"] = compared
    if not judged:
        pytest.skip("no layer reported progress twice in one phase: nothing to compare")
    verdict(client, observe, judged, bad, "streams report progress going backwards")


# -- errors --------------------------------------------------------------------------------


@pytest.mark.requirement("PROGRESS-006")
def test_success_has_no_error(client, traffic, observe):
    ok = traffic.successes
    if not ok:
        pytest.skip("no progress request succeeded (no image existed afterwards)")
    bad = []
    for s in ok:
        errors = [m.obj for m in s.exchange.messages if m.error is not None]
        if errors:
            bad.append((s, f"the image exists, yet the stream reports an error: {errors[0]}"))
    verdict(client, observe, ok, bad, "streams of requests that succeeded report an error")


def _lab_only(traffic: Traffic) -> None:
    if traffic.external:
        pytest.skip("an external registry is in use: failing pulls need the lab registry's faults")


@pytest.mark.requirement("PROGRESS-007")
def test_failed_stream_ends_with_error_detail(client, traffic, observe):
    _lab_only(traffic)
    failed = traffic.failed_streams
    observe["refused_before_stream"] = [
        s.label for s in traffic.failures if s.exchange.status != 200
    ]
    if not failed:
        pytest.skip("every failing pull was refused with an error status before the stream")
    bad, cut = [], []
    for s in failed:
        messages = s.exchange.messages
        last = messages[-1].obj if messages else None
        detail = last.get("errorDetail") if last else None
        text = detail.get("message") if isinstance(detail, dict) else None
        if not (isinstance(text, str) and text.strip()):
            if s.exchange.incomplete:
                cut.append(s)  # its last line may be what the cut took
                continue
            bad.append(
                (
                    s,
                    f"no image was made, yet the last of {len(messages)} lines is {last}, "
                    "without errorDetail.message",
                )
            )
    observe["cut_before_an_error_line"] = [s.label for s in cut]
    if not bad:
        client.cite(s.exchange for s in cut[:6])
        for s in cut:
            require_end(
                s.exchange,
                f"whether the stream of the failed pull {s.label} ends with errorDetail.message",
            )
    verdict(
        client,
        observe,
        failed,
        bad,
        "200 streams of failed pulls do not end with errorDetail.message",
    )


@pytest.mark.requirement("PROGRESS-008")
def test_nothing_follows_an_error(client, traffic, observe):
    _lab_only(traffic)
    judged = [
        s for s in traffic.failed_streams if any(m.error is not None for m in s.exchange.messages)
    ]
    if not judged:
        pytest.skip("no failing pull reported its error inside a 200 stream")
    bad = []
    for s in judged:
        messages = s.exchange.messages
        first = next(i for i, m in enumerate(messages) if m.error is not None)
        after = messages[first + 1 :]
        if after:
            bad.append(
                (
                    s,
                    f"{len(after)} line(s) follow the error {messages[first].obj}, "
                    f"first {after[0].obj}",
                )
            )
    verdict(client, observe, judged, bad, "failed streams go on after their error line")


# -- timing ------------------------------------------------------------------------------


@pytest.mark.requirement("PROGRESS-009")
def test_stream_arrives_as_it_happens(client, traffic, observe):
    _lab_only(traffic)
    large = next((s for s in traffic.sent if s.label == "large"), None)
    precondition(
        large is not None and large.succeeded and traffic.transfer is not None,
        "the throttled pull of progress-large did not happen as set up (the image "
        "did not arrive, or the lab registry never served its layer): whether the "
        "stream arrives as it happens could not be judged",
    )
    ex, transfer = large.exchange, traffic.transfer
    # Half the time the layer needs at the throttled rate: a stream quieter than that
    # while bytes flow reports less than twice per transfer.
    bound = transfer.seconds / 2
    arrivals = [m.arrived for m in ex.messages]
    precondition(
        ex.finished is not None and ex.finished >= transfer.end,
        "the pull ended before the throttled layer could have arrived: the lab "
        "registry's throttle did not hold",
    )
    observe["layer_seconds"] = round(transfer.seconds, 2)
    observe["silence_bound_seconds"] = round(bound, 2)
    observe["first_message_after"] = round(arrivals[0] - ex.started, 2) if arrivals else None
    observe["pull_seconds"] = round(ex.finished - ex.started, 2)
    client.cite([ex])
    assert arrivals, f"the throttled pull answered {ex.status} with no stream message"
    first = arrivals[0]
    assert first <= transfer.end - bound, (
        f"the first stream message arrived {first - ex.started:.2f} s after the request, "
        f"{ex.finished - first:.2f} s before the pull ended, though the layer's bytes flowed "
        f"for {transfer.seconds:.1f} s: it should arrive at least {bound:.1f} s before they "
        "all could have (the stream is held back)"
    )
    inside = [t for t in arrivals if transfer.start < t < transfer.end]
    edges = [transfer.start, *inside, transfer.end]
    gaps = [(b - a, a) for a, b in zip(edges, edges[1:], strict=False)]
    longest, at = max(gaps)
    observe["longest_silence_seconds"] = round(longest, 2)
    assert longest <= bound, (
        f"while the layer's bytes flowed ({transfer.seconds:.1f} s at {LARGE_RATE} bytes/s), "
        f"the stream was silent for {longest:.2f} s from {at - transfer.start:.2f} s into the "
        f"transfer ({len(inside)} messages arrived during it): more than the {bound:.1f} s "
        "allowed (half the transfer)"
    )


# -- the HTTP message ----------------------------------------------------------------------


@pytest.mark.requirement("PROGRESS-010")
def test_stream_is_a_complete_message(client, traffic, observe):
    streams = traffic.streams
    observe["framing"] = {s.label: s.exchange.framing for s in streams}
    if not streams:
        pytest.skip("no progress request was answered 200")
    bad = [
        (s, f"an incomplete HTTP message: {s.exchange.incomplete}")
        for s in streams
        if s.exchange.incomplete
    ]
    verdict(client, observe, streams, bad, "200 answers are incomplete HTTP messages (RFC 9112 §8)")
