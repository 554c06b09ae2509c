"""Pulling an image: ``fromImage`` (+ ``tag``, ``platform``) from the lab registry.

Every reference sent names the run's registry (``registry.reference``), never a bare
name that an engine would look up on docker.io; the one exception, ``scratch``, is
sent only to an engine that refuses it before any lookup (PULL-014). Every image a
check may cause is tracked (by name, by digest and by ID) so that it is removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from engine_conformance.base.versions import version_tuple
from engine_conformance.engine.target import Exchange, TargetError, oci_platform_json
from engine_conformance.judge.checks import (
    assert_refused,
    assert_stream_success,
    assert_visible_failure,
    error_location,
    image_ids,
    image_mismatch,
    registry_requests,
    require_end,
    where,
)
from engine_conformance.judge.cleanup import remove_created
from engine_conformance.judge.verdicts import precondition
from engine_conformance.judge.vocabulary import assert_failed_leaving_nothing, leftovers, pull
from lab_registry import Image, build_image
from lab_registry.catalogue import MULTI_PLATFORMS, ImageFacts

ZERO_DIGEST = "sha256:" + "0" * 64
MISSING_PLATFORM = "linux/s390x"
PLATFORM_SINCE = "1.32"

# -- helpers --------------------------------------------------------------------------------


def statuses(ex) -> list[str]:
    return [m.obj["status"] for m in ex.messages if isinstance(m.obj.get("status"), str)]


def expect_image(client, ref: str, facts, what: str) -> dict:
    """``ref`` exists and is the image ``facts`` describes (its layers and Id)."""
    image = client.inspect_image(ref)
    assert image is not None, f"{what}: answered 200 with no error, but {ref} does not exist"
    mismatch = image_mismatch(image, facts)
    assert mismatch is None, (
        f"{what}: {ref} is not the image the registry serves as {facts.reference}: {mismatch}"
    )
    return image


def manifests_fetched(
    registry,
    mark: int | None,
    short: str,
    what: str,
    kinds: tuple[str, ...] = ("manifest",),
    required: bool = True,
) -> list[str] | None:
    """The manifest references the engine asked the lab registry for since ``mark``.

    None with an external registry (no journal). ``required``: a precondition that
    there was such a request; without it none is fine (an engine may hold a manifest
    by digest, and the image's content, from earlier pulls).
    """
    if registry.external or mark is None:
        return None
    repository = registry.catalogue.name(short)
    if required:
        entries = registry_requests(registry.journal, mark, repository, what, kinds=kinds)
    else:
        entries = [e for e in registry.journal.since(mark) if e.repository == repository]
    return sorted({e.reference for e in entries if e.kind == "manifest"})


def journal_mark(registry) -> int | None:
    return None if registry.external else registry.journal.mark()


def repo_name(registry, short: str) -> str:
    """``<registry>/<prefix>/<short>`` without tag or digest."""
    return registry.reference(short)


def native_platform(target_info) -> str:
    return f"{target_info.get('os') or 'linux'}/{target_info.get('arch') or 'amd64'}"


def index_platform(target_info) -> str | None:
    """The platform of the multi-platform index the engine takes as native (None: none)."""
    os_, arch = native_platform(target_info).split("/")[:2]
    return next((p for p in MULTI_PLATFORMS if p.split("/")[:2] == [os_, arch]), None)


def require_platform_api(api_version: str) -> None:
    if version_tuple(api_version) < version_tuple(PLATFORM_SINCE):
        pytest.skip(f"platform exists from API {PLATFORM_SINCE}; the target speaks {api_version}")


def scratch_unsafe_reason(client) -> str | None:
    """Why bare ``scratch`` must not be sent to this engine (None: it is safe).

    Docker refuses the reserved name before it resolves any registry. Podman's
    compat API normalises it to docker.io/library/scratch and pulls it; any
    other engine might do the same. Safety, not a verdict: nothing is judged
    from the engine's identity.
    """
    info = client.version_info or {}
    names = [str(c.get("Name", "")) for c in info.get("Components") or []]
    platform = str((info.get("Platform") or {}).get("Name", ""))
    if any("podman" in n.lower() for n in names) or "podman" in platform.lower():
        return (
            "not sent: Podman's compat API resolves a bare `scratch` to "
            "docker.io/library/scratch and pulls it, and the suite never lets an engine "
            "reach a host outside 127.0.0.0/8"
        )
    if "Engine" not in names:
        return (
            "not sent: the target does not identify as Docker Engine (which refuses "
            "`scratch` before any lookup); another engine might look it up on docker.io"
        )
    return None


def failure_params(registry, case: str) -> dict:
    """The request of each failure case; every name points at the run's registry."""
    prefix_repo = registry.catalogue.name("no-such-repo")
    bad_repo = f"{registry.reference('single').rsplit('/', 1)[0]}"
    cases = {
        "unknown-repository": {"fromImage": registry.reference(prefix_repo), "tag": "v1"},
        "unknown-repository-all-tags": {"fromImage": registry.reference(prefix_repo)},
        "unknown-tag": {"fromImage": repo_name(registry, "single"), "tag": "no-such-tag"},
        "unknown-digest": {"fromImage": registry.reference("single", digest=ZERO_DIGEST)},
        "uppercase-repository": {"fromImage": f"{bad_repo}/Single", "tag": "v1"},
        "bad-characters": {"fromImage": f"{bad_repo}/sin gle!", "tag": "v1"},
        "double-colon": {"fromImage": f"{bad_repo}/single::v1"},
        "invalid-tag": {"fromImage": repo_name(registry, "single"), "tag": "bad tag!"},
        "scratch": {"fromImage": "scratch"},
        "missing-platform": {
            "fromImage": repo_name(registry, "multi"),
            "tag": "latest",
            "platform": MISSING_PLATFORM,
        },
        "unparsable-platform": {
            "fromImage": repo_name(registry, "multi"),
            "tag": "latest",
            "platform": "not/a/platform/at/all",
        },
    }
    return cases[case]


FAILURE_CASES = [
    "unknown-repository",
    "unknown-repository-all-tags",
    "unknown-tag",
    "unknown-digest",
    "uppercase-repository",
    "bad-characters",
    "double-colon",
    "invalid-tag",
    "scratch",
    "missing-platform",
    "unparsable-platform",
]
INVALID_REFERENCES = ["uppercase-repository", "bad-characters", "double-colon", "invalid-tag"]


def send_failure(client, images, registry, case: str, api_version: str):
    """Send one failure case (skipping what must not be sent); return (exchange, leftovers)."""
    if case == "scratch":
        reason = scratch_unsafe_reason(client)
        if reason:
            pytest.skip(reason)
    params = failure_params(registry, case)
    if "platform" in params:
        require_platform_api(api_version)
    before = image_ids(client)
    ex = client.create_image(params)
    return ex, ", ".join(leftovers(client, before=before, images=images))


# -- naming what to pull --------------------------------------------------------------------


@pytest.mark.requirement("PULL-001")
def test_from_image_and_tag(client, images, registry, observe):
    facts = registry.catalogue.facts("single", "v1")
    ref = registry.reference("single", "v1")
    ex = pull(client, images, {"fromImage": repo_name(registry, "single"), "tag": "v1"}, [ref])
    assert_stream_success(ex)
    image = expect_image(client, ref, facts, "fromImage=<repo>&tag=v1")
    observe["RepoTags"] = image.get("RepoTags")


@pytest.mark.requirement("PULL-002")
def test_tag_inside_from_image(client, images, registry, observe):
    facts = registry.catalogue.facts("single", "v2")
    ref = registry.reference("single", "v2")
    ex = pull(client, images, {"fromImage": ref}, [ref])
    assert_stream_success(ex)
    image = expect_image(client, ref, facts, "fromImage=<repo>:v2")
    observe["RepoTags"] = image.get("RepoTags")


@pytest.mark.requirement("PULL-003")
def test_tag_overrides_tag_in_from_image(client, images, registry, observe):
    v1, v2 = (registry.reference("single", t) for t in ("v1", "v2"))
    ex = pull(client, images, {"fromImage": v1, "tag": "v2"}, [v1, v2])
    observe["answer"] = where(ex)
    assert_stream_success(ex)
    expect_image(client, v2, registry.catalogue.facts("single", "v2"), "fromImage=<repo>:v1&tag=v2")
    assert client.inspect_image(v1) is None, (
        "fromImage=<repo>:v1&tag=v2 also pulled v1: tag did not override the tag in fromImage"
    )


def assert_by_digest(client, registry, ref: str, digest: str, facts, what: str) -> dict:
    image = expect_image(client, ref, facts, what)
    wanted = f"{repo_name(registry, 'single')}@{digest}"
    digests = image.get("RepoDigests") or []
    assert wanted in digests, f"{what}: RepoDigests {digests} do not hold {wanted}"
    return image


def assert_only_that_manifest(client, registry, mark: int | None, digest: str, what: str) -> None:
    """The engine fetched the manifest ``digest`` and no other, and pulled no tag."""
    fetched = manifests_fetched(registry, mark, "single", what, required=False)
    others = [r for r in fetched or [] if r != digest]
    tags = registry.catalogue.tags(registry.catalogue.name("single")) or []
    tagged = [t for t in tags if client.inspect_image(registry.reference("single", t))]
    assert not others and not tagged, (
        f"{what} must pull exactly the manifest {digest}, but the engine also "
        + "; ".join(
            ([f"fetched the manifests {others}"] if others else [])
            + ([f"pulled the tags {tagged}"] if tagged else [])
        )
    )


@pytest.mark.requirement("PULL-004")
def test_digest_inside_from_image(client, images, registry, observe):
    judge_pull_by_digest(
        client, images, registry, observe, lambda ref, digest: {"fromImage": ref},
        "fromImage=<repo>@<digest>",
    )  # fmt: skip


@pytest.mark.requirement("PULL-005")
def test_digest_as_tag(client, images, registry, observe):
    judge_pull_by_digest(
        client, images, registry, observe,
        lambda ref, digest: {"fromImage": repo_name(registry, "single"), "tag": digest},
        "fromImage=<repo>&tag=<digest>",
    )  # fmt: skip


def judge_pull_by_digest(client, images, registry, observe, params, what: str) -> None:
    """Pull single:v2 by its manifest digest, the request spelled by ``params(ref, digest)``:
    that image, under that digest, and only that manifest fetched (PULL-004, PULL-005)."""
    digest = registry.catalogue.manifest_digest("single", "v2")
    facts = registry.catalogue.facts("single", "v2")
    ref = registry.reference("single", digest=digest)
    tags = [
        registry.reference("single", t)
        for t in registry.catalogue.tags(registry.catalogue.name("single")) or []
    ]
    mark = journal_mark(registry)
    ex = pull(client, images, params(ref, digest), [ref, facts.image_id, *tags])
    assert_stream_success(ex)
    image = assert_by_digest(client, registry, ref, digest, facts, what)
    observe["RepoTags"] = image.get("RepoTags")
    assert_only_that_manifest(client, registry, mark, digest, what)


@pytest.mark.requirement("PULL-006")
def test_digest_in_from_image_wins_over_tag(client, images, registry, observe):
    digest = registry.catalogue.manifest_digest("single", "v2")
    v2 = registry.catalogue.facts("single", "v2")
    v1 = registry.catalogue.facts("single", "v1")
    ref = registry.reference("single", digest=digest)
    v1_ref = registry.reference("single", "v1")
    v1_digest = registry.catalogue.manifest_digest("single", "v1")
    mark = journal_mark(registry)
    ex = pull(
        client, images, {"fromImage": ref, "tag": "v1"}, [ref, v1_ref, v2.image_id, v1.image_id]
    )
    observe["answer"] = where(ex)
    assert_stream_success(ex)
    # Judged by name and by what the registry was asked, not by v1's image ID: the lab's
    # images are deterministic, so that ID may be on the engine already under other names.
    fetched = manifests_fetched(registry, mark, "single", "", required=False) or []
    observe["manifests_fetched"] = fetched
    v1_asked = sorted({"v1", v1_digest} & set(fetched))
    assert client.inspect_image(v1_ref) is None and not v1_asked, (
        "fromImage=<repo>@<v2 digest>&tag=v1 pulled v1 "
        f"({v1_ref} {'exists' if client.inspect_image(v1_ref) else 'absent'}, "
        f"manifests fetched {fetched}): the digest did not win over tag"
    )
    assert_by_digest(client, registry, ref, digest, v2, "fromImage=<repo>@<v2 digest>&tag=v1")


@pytest.mark.requirement("PULL-007")
@pytest.mark.parametrize("form", ["tag-absent", "tag-empty"])
def test_no_tag_pulls_every_tag(client, images, registry, observe, form):
    name = repo_name(registry, "single")
    tags = registry.catalogue.tags(registry.catalogue.name("single"))
    refs = [registry.reference("single", t) for t in tags]
    params = {"fromImage": name} | ({"tag": ""} if form == "tag-empty" else {})
    ex = pull(client, images, params, refs)
    assert_stream_success(ex)
    found = {t: client.inspect_image(r) for t, r in zip(tags, refs, strict=True)}
    observe["pulled_tags"] = sorted(t for t, image in found.items() if image)
    missing = sorted(t for t, image in found.items() if image is None)
    assert not missing, (
        f"fromImage={name} with {form}: the registry has tags {tags}, but {missing} "
        "were not pulled (documented: an empty tag pulls all tags)"
    )
    for tag, image in found.items():
        mismatch = image_mismatch(image, registry.catalogue.facts("single", tag))
        assert mismatch is None, f"{name}:{tag} is not the registry's {tag}: {mismatch}"


@pytest.mark.requirement("PULL-008")
@pytest.mark.parametrize("short,tag", [("single", "v1"), ("oci", "latest"), ("multi", "latest")])
def test_id_and_repo_digests(client, images, registry, target_info, observe, short, tag):
    artifact_platform = index_platform(target_info) if short == "multi" else None
    if short == "multi" and artifact_platform is None:
        pytest.skip(f"the index has no manifest for the native {native_platform(target_info)}")
    facts = registry.catalogue.facts(short, tag, platform=artifact_platform)
    ref = registry.reference(short, tag)
    ex = pull(client, images, {"fromImage": repo_name(registry, short), "tag": tag}, [ref])
    assert_stream_success(ex)
    image = client.inspect_image(ref)
    assert image is not None, f"{ref} does not exist after a pull that reported success"
    observe[f"{short}:{tag}"] = {"Id": image["Id"], "RepoDigests": image.get("RepoDigests")}
    assert image["Id"] == facts.image_id, (
        f"{ref} has Id {image['Id']}, not the config digest the registry served ({facts.image_id})"
    )
    wanted = f"{repo_name(registry, short)}@{facts.repo_digest}"
    assert wanted in (image.get("RepoDigests") or []), (
        f"RepoDigests of {ref} are {image.get('RepoDigests')}, without {wanted} "
        f"(the {facts.manifest_media_type if short != 'multi' else 'index'} digest "
        "the tag resolved to)"
    )


# -- pulling again --------------------------------------------------------------------------


def pull_twice(client, images, registry, journal=None):
    """Pull single:v1, then again; return (first, second, journal entries of the second)."""
    ref = registry.reference("single", "v1")
    params = {"fromImage": repo_name(registry, "single"), "tag": "v1"}
    first = pull(client, images, params, [ref])
    assert_stream_success(first)
    mark = journal.mark() if journal is not None else 0
    second = pull(client, images, params)
    entries = journal.since(mark) if journal is not None else []
    return first, second, entries


@pytest.mark.requirement("PULL-009")
def test_repeat_pull_downloads_no_layer(client, images, lab_control, observe):
    facts = lab_control.catalogue.facts("single", "v1")
    ref = lab_control.reference("single", "v1")
    _, second, entries = pull_twice(client, images, lab_control, lab_control.journal)
    image_after = client.inspect_image(ref)
    observe["second_pull_requests"] = [
        f"{e.method} {e.kind} {e.reference} -> {e.status}" for e in entries
    ]
    observe["last_status"] = (statuses(second) or [None])[-1]
    assert_stream_success(second)
    blob_gets = [e.reference for e in entries if e.kind == "blob" and e.method == "GET"]
    observe["config_fetched_again"] = facts.config_digest in blob_gets
    layers = [d for d in blob_gets if d in facts.layer_digests]
    assert not layers, (
        f"the repeat pull of {ref} fetched layer blob(s) {layers} again, although the image "
        "was present (reference: nothing is downloaded, 'Image is up to date')"
    )
    assert image_after is not None, f"after the repeat pull {ref} does not exist"
    mismatch = image_mismatch(image_after, facts)
    assert mismatch is None, f"after the repeat pull {ref} is not the registry's v1: {mismatch}"


@pytest.mark.requirement("PULL-010")
def test_repeat_pull_says_up_to_date(client, images, registry, observe):
    _, second, _ = pull_twice(client, images, registry)
    observe["statuses"] = statuses(second)[-3:]
    assert_stream_success(second)
    assert any("up to date" in s.lower() for s in statuses(second)), (
        f"the repeat pull's status lines {statuses(second)[-3:]} do not say the image is up to date"
    )


# -- pulls that must fail -------------------------------------------------------------------


REGISTRY_CASES = {
    "unknown-repository": "no-such-repo",
    "unknown-repository-all-tags": "no-such-repo",
    "unknown-tag": "single",
    "unknown-digest": "single",
    "missing-platform": "multi",
}
"""Failure cases the registry must be asked about (the others are refused before)."""


def require_registry_asked(registry, mark: int | None, case: str) -> None:
    """A case the engine can only judge by asking the registry: it did ask (precondition)."""
    if case in REGISTRY_CASES and mark is not None:
        manifests_fetched(
            registry, mark, REGISTRY_CASES[case], f"the {case} case", kinds=("manifest", "tags")
        )


@pytest.mark.requirement("PULL-011")
@pytest.mark.parametrize("case", ["unknown-repository", "unknown-repository-all-tags"])
def test_unknown_repository_is_404(client, images, registry, api_version, observe, case):
    mark = journal_mark(registry)
    ex, left = send_failure(client, images, registry, case, api_version)
    observe[case] = where(ex)
    require_registry_asked(registry, mark, case)
    assert_refused(
        ex, 404, case, left, "documented: 404 'repository does not exist or no read access'"
    )


@pytest.mark.requirement("PULL-012")
@pytest.mark.parametrize("case", ["unknown-tag", "unknown-digest"])
def test_unknown_tag_is_404(client, images, registry, api_version, observe, case):
    mark = journal_mark(registry)
    ex, left = send_failure(client, images, registry, case, api_version)
    observe[case] = where(ex)
    require_registry_asked(registry, mark, case)
    assert_refused(ex, 404, case, left, "reference engine: 404 before the stream")


@pytest.mark.requirement("PULL-013")
@pytest.mark.parametrize("case", INVALID_REFERENCES)
def test_invalid_reference_is_400(client, images, registry, api_version, observe, case):
    mark = journal_mark(registry)
    ex, left = send_failure(client, images, registry, case, api_version)
    observe[case] = where(ex)
    assert_refused(
        ex,
        400,
        f"{case} ({failure_params(registry, case)})",
        left,
        "reference engine: 400 before the stream",
    )
    if mark is not None:
        asked = [
            f"{e.method} {e.path}"
            for e in registry.journal.since(mark)
            if e.kind in ("manifest", "blob", "tags")
        ]
        assert not asked, f"{case}: refused, but the registry was asked first: {asked}"


@pytest.mark.requirement("PULL-014")
def test_scratch_is_403(client, images, registry, api_version, observe):
    ex, left = send_failure(client, images, registry, "scratch", api_version)
    observe["scratch"] = where(ex)
    assert_refused(ex, 403, "fromImage=scratch", left, "reference engine: a reserved name")


# -- platform -------------------------------------------------------------------------------


PLATFORM_VIEW_SINCE = "1.49"
"""``GET /images/{name}/json?platform=<JSON-encoded OCI platform>``: one platform's view."""
MANIFESTS_VIEW_SINCE = "1.48"
"""``GET /images/{name}/json?manifests=1``: the ``Manifests`` list, which says what is Available."""


def shown(view: dict) -> str:
    """What an inspect view shows, for a reason: ``os/arch/variant, N layer(s)``."""
    layers = (view.get("RootFS") or {}).get("Layers") or []
    return (
        f"{view.get('Os') or '-'}/{view.get('Architecture') or '-'}/"
        f"{view.get('Variant') or '-'}, {len(layers)} layer(s)"
    )


def empty_view(view: dict) -> bool:
    """No Os, no Architecture, no layers: a view that shows no image.

    Docker 29 (containerd image store) answers the default inspect of an index whose
    host-platform image is absent so: the host's view of that index. It is evidence
    neither that the engine pulled the platform asked for nor that it pulled another.
    """
    return (
        not view.get("Os")
        and not view.get("Architecture")
        and not (view.get("RootFS") or {}).get("Layers")
    )


@dataclass
class PlatformPull:
    """A pull of ``short:latest`` (an index) for ``platform``, and what shows which image it took.

    ``proofs``: evidence that the engine took the index's ``platform`` image (the lab
    registry's journal, a platform-aware inspect); ``against``: evidence that it took
    another, or nothing; ``neutral``: what was looked at and proves neither. The default
    view counts against the engine when it shows another image, never for it alone:
    ``default_is_image`` only lets PULL-021 read its Variant.
    """

    short: str
    platform: str
    ref: str
    facts: ImageFacts
    exchange: Exchange
    default: dict | None = None
    default_is_image: bool = False
    platform_view: dict | None = None  # the platform-aware view, when it is the image
    seen: dict[str, dict] = field(default_factory=dict)  # every view read, by name
    proofs: list[str] = field(default_factory=list)
    against: list[str] = field(default_factory=list)
    neutral: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.exchange.status == 200 and self.exchange.stream_error is None

    def observation(self) -> dict:
        return {
            "views": {k: {"Id": v.get("Id"), "shows": shown(v)} for k, v in self.seen.items()},
            "for": self.proofs,
            "against": self.against,
            "neither": self.neutral,
        }


def journal_evidence(registry, mark: int | None, pulled: PlatformPull) -> None:
    """What the lab registry served: which of the index's manifests, and whose blobs.

    The manifest of ``pulled.platform`` fetched (and no other platform's config or
    layers) proves the choice; its blobs are fetched or were not needed (held by the
    engine). Another platform's manifest fetched instead of it, or another platform's
    config or layers fetched, shows the engine took another image.
    """
    journal = "the lab registry's journal"
    if registry.external or mark is None:
        pulled.neutral.append("no journal: the registry is external")
        return
    facts = pulled.facts
    repository = registry.catalogue.name(pulled.short)
    served = [
        e
        for e in registry.journal.since(mark)
        if e.repository == repository and e.method == "GET" and e.status < 400
    ]
    manifests = {e.reference for e in served if e.kind == "manifest"}
    blobs = {e.reference for e in served if e.kind == "blob"}
    own = [facts.config_digest, *facts.layer_digests]
    others = {
        p: registry.catalogue.facts(pulled.short, "latest", platform=p)
        for p in MULTI_PLATFORMS
        if p != pulled.platform
    }
    other_manifests = {
        p: f.manifest_digest for p, f in others.items() if f.manifest_digest in manifests
    }
    other_blobs = {
        p: sorted(({f.config_digest, *f.layer_digests} - set(own)) & blobs)
        for p, f in others.items()
    }
    other_blobs = {p: d for p, d in other_blobs.items() if d}
    chosen = facts.manifest_digest in manifests
    if other_blobs:
        pulled.against.append(
            f"{journal} shows the config or layers of the index's "
            + ", ".join(f"{p} image fetched ({len(d)} blob(s))" for p, d in other_blobs.items())
        )
    if other_manifests and not chosen:
        pulled.against.append(
            f"{journal} shows the index's {', '.join(other_manifests)} manifest(s) fetched "
            f"({', '.join(other_manifests.values())}), not its {pulled.platform} manifest "
            f"({facts.manifest_digest})"
        )
    if chosen and not other_blobs:
        held = [d for d in own if d not in blobs]
        pulled.proofs.append(
            f"{journal} shows the index's {pulled.platform} manifest fetched "
            f"({facts.manifest_digest}), and {len(own) - len(held)} of its {len(own)} blobs "
            "(config and layers)"
            + (f"; the other {len(held)} were not needed (the engine held them)" if held else "")
            + (
                f"; the {', '.join(other_manifests)} manifest(s) were fetched too, but none of "
                "their config or layers"
                if other_manifests
                else ""
            )
        )
    if not chosen and not other_manifests:
        pulled.neutral.append(
            f"{journal} shows none of the index's platform manifests fetched (asked for "
            f"{sorted(manifests) or 'none'}): the engine held them, so it does not say which"
        )


def manifests_evidence(client, pulled: PlatformPull) -> None:
    """The ``Manifests`` list (``manifests=1``): is the platform's manifest Available?"""
    asked = "the Manifests list (?manifests=1)"
    try:
        view = client.inspect_image(pulled.ref, manifests=True)
    except TargetError as exc:
        pulled.neutral.append(f"{asked} could not be read ({exc})")
        return
    listed = [m for m in (view or {}).get("Manifests") or [] if isinstance(m, dict)]
    if not listed:
        pulled.neutral.append(
            f"{asked} is absent or empty (the document: populated only by a "
            "multi-platform image store)"
        )
        return
    digest = pulled.facts.manifest_digest

    def platform_of(m: dict) -> str:
        p = (
            (m.get("ImageData") or {}).get("Platform")
            or (m.get("Descriptor") or {}).get("platform")
            or {}
        )
        return "/".join(p.get(k) or "" for k in ("os", "architecture", "variant")).rstrip("/")

    entry = next(
        (m for m in listed if digest in (m.get("ID"), (m.get("Descriptor") or {}).get("digest"))),
        None,
    )
    available = sorted(platform_of(m) or str(m.get("ID")) for m in listed if m.get("Available"))
    if entry is not None and entry.get("Available") is True:
        pulled.proofs.append(
            f"{asked} lists the {pulled.platform} manifest ({digest}) as "
            f"Available (available: {available})"
        )
    else:
        pulled.against.append(
            f"{asked} lists the {pulled.platform} manifest ({digest}) "
            + ("as not Available" if entry is not None else "not at all")
            + f" (available: {available or 'none'})"
        )


def view_evidence(client, api_version: str, pulled: PlatformPull) -> None:
    """The engine's views of ``pulled.ref``: platform-aware where the API version serves one,
    and the default view, which counts only when it shows another image."""
    facts, ref, platform = pulled.facts, pulled.ref, pulled.platform
    version = version_tuple(api_version)
    if version >= version_tuple(PLATFORM_VIEW_SINCE):
        asked = f"the platform-aware view (?platform={oci_platform_json(platform)})"
        try:
            view = client.inspect_image(ref, platform=platform)
        except TargetError as exc:
            pulled.neutral.append(f"{asked} could not be read ({exc})")
        else:
            if view is not None:
                pulled.seen["platform-aware"] = view
            if view is None:
                pulled.against.append(
                    f"{asked} answered 404: the engine holds no {platform} image under {ref}"
                )
            elif (mismatch := image_mismatch(view, facts)) is None:
                pulled.platform_view = view
                pulled.proofs.append(f"{asked} shows the {platform} image ({shown(view)})")
            else:
                pulled.against.append(f"{asked} shows another image ({shown(view)}): {mismatch}")
    elif version >= version_tuple(MANIFESTS_VIEW_SINCE):
        pulled.neutral.append(
            f"API {api_version} serves no platform-aware view (?platform= "
            f"from {PLATFORM_VIEW_SINCE})"
        )
    else:
        pulled.neutral.append(
            f"API {api_version} serves neither the platform-aware view "
            f"(?platform= from {PLATFORM_VIEW_SINCE}) nor the Manifests list "
            f"(?manifests=1 from {MANIFESTS_VIEW_SINCE})"
        )
    if version >= version_tuple(MANIFESTS_VIEW_SINCE):
        manifests_evidence(client, pulled)
    asked = "the default view"
    pulled.default = client.inspect_image(ref)
    if pulled.default is not None:
        pulled.seen["default"] = pulled.default
    if pulled.default is None:
        pulled.against.append(f"{ref} does not exist after a pull that reported success")
    elif empty_view(pulled.default):
        pulled.neutral.append(
            f"{asked} is empty (Os {pulled.default.get('Os')!r}, Architecture "
            f"{pulled.default.get('Architecture')!r}, no layers): the host "
            "platform's view of an index whose host image is absent, evidence "
            "of nothing"
        )
    elif (mismatch := image_mismatch(pulled.default, facts)) is None:
        pulled.default_is_image = True
        pulled.neutral.append(
            f"{asked} is the {platform} image ({shown(pulled.default)}), "
            "which alone does not prove what the pull fetched"
        )
    else:
        pulled.against.append(f"{asked} shows another image ({shown(pulled.default)}): {mismatch}")


def pull_platform(
    client, images, registry, api_version: str, short: str, platform: str
) -> PlatformPull:
    """Pull ``short:latest`` (an index) for ``platform``; if it succeeded, gather the evidence
    of which image it took: the journal first, then the engine's views."""
    facts = registry.catalogue.facts(short, "latest", platform=platform)
    ref = registry.reference(short, "latest")
    # An image already under ref with the index's digest (an earlier check's, or a pull
    # the engine finished after its check had cleaned up) makes the engine answer "up to
    # date" from a HEAD alone: nothing fetched, nothing for the journal to show. The run's
    # own name, so the pull starts from a ref that names nothing.
    earlier = client.inspect_image(ref)
    if earlier is not None:
        precondition(
            remove_created(client, ref, images.run.prefix, images.run.preexisting),
            f"{ref} names an image before the pull ({earlier.get('Id')}) that the run "
            "may not remove: the pull would not fetch what it judges",
        )
    mark = journal_mark(registry)
    ex = pull(
        client,
        images,
        {"fromImage": repo_name(registry, short), "tag": "latest", "platform": platform},
        [ref],
    )
    pulled = PlatformPull(short, platform, ref, facts, ex)
    if earlier is not None:
        pulled.neutral.append(f"{ref} named an image before the pull; it was removed first")
    if pulled.succeeded:
        journal_evidence(registry, mark, pulled)
        view_evidence(client, api_version, pulled)
    return pulled


@pytest.mark.requirement("PULL-015")
@pytest.mark.parametrize("platform", MULTI_PLATFORMS)
@pytest.mark.parametrize("short", ["multi", "multi-oci"])
def test_platform_picks_the_manifest(
    client, images, registry, api_version, observe, short, platform
):
    pulled = pull_platform(client, images, registry, api_version, short, platform)
    assert_stream_success(pulled.exchange)
    observe[f"{short} {platform}"] = pulled.observation()
    # Layers and Id name the manifest chosen exactly; Os/Architecture are only recorded.
    assert not pulled.against, (
        f"platform={platform} from {short}: what the engine pulled is not the index's "
        f"{platform} image: "
        + "; ".join(pulled.against)
        + (f" (yet: {'; '.join(pulled.proofs)})" if pulled.proofs else "")
    )
    if not pulled.proofs and registry.external:
        # As the checks that need the lab registry's journal do: not judged here.
        pytest.skip(
            f"platform={platform} from {short}: an external registry keeps no journal, "
            "and no platform-aware view shows which image the pull took (the default "
            "view alone does not prove it): " + "; ".join(pulled.neutral)
        )
    precondition(
        pulled.proofs,
        (
            f"platform={platform} from {short}: nothing shows which image the pull took, and the "
            "default view alone does not prove it: " + "; ".join(pulled.neutral)
        ),
    )


@pytest.mark.requirement("PULL-016")
@pytest.mark.parametrize("short", ["multi", "multi-oci"])
def test_missing_platform_fails_visibly(client, images, registry, api_version, observe, short):
    require_platform_api(api_version)
    ref = registry.reference(short, "latest")
    images.track(ref)
    before = image_ids(client)
    mark = journal_mark(registry)
    ex = client.create_image(
        {"fromImage": repo_name(registry, short), "tag": "latest", "platform": MISSING_PLATFORM}
    )
    left = leftovers(client, [ref], before=before, images=images)
    observe[short] = where(ex)
    manifests_fetched(registry, mark, short, f"a platform missing from {short}'s index")
    assert_failed_leaving_nothing(
        ex, f"platform={MISSING_PLATFORM} is not in {short}'s index", left
    )


@pytest.mark.requirement("PULL-017")
@pytest.mark.parametrize("platform", ["not/a/platform/at/all", "linux/amd 64"])
def test_unparsable_platform_is_400(client, images, registry, observe, platform):
    ref = registry.reference("multi", "latest")
    images.track(ref)
    before = image_ids(client)
    ex = client.create_image(
        {"fromImage": repo_name(registry, "multi"), "tag": "latest", "platform": platform}
    )
    left = ", ".join(leftovers(client, before=before, images=images))
    observe[platform] = where(ex)
    assert_refused(
        ex, 400, f"platform={platform!r}", left, "reference engine: 400 before the stream"
    )


@pytest.mark.requirement("PULL-018")
def test_platform_ignored_below_1_32(client, images, registry, target_info, observe):
    low = target_info.get("min_api_version")
    if low and version_tuple(str(low)) > version_tuple("1.31"):
        pytest.skip(f"the engine's minimum API version is {low}: it does not serve 1.31")
    native = index_platform(target_info)
    if native is None:
        pytest.skip(f"the index has no manifest for the native {native_platform(target_info)}")
    other = next(p for p in MULTI_PLATFORMS if p.split("/")[1] != native.split("/")[1])
    facts = registry.catalogue.facts("multi", "latest", platform=native)
    ref = registry.reference("multi", "latest")
    ex = pull(
        client,
        images,
        {"fromImage": repo_name(registry, "multi"), "tag": "latest", "platform": other},
        [ref],
        version="1.31",
    )
    if ex.status == 400 and b"version" in ex.body.lower():
        pytest.skip(f"the engine does not serve API 1.31: {ex.body[:200]!r}")
    assert_stream_success(ex)
    image = client.inspect_image(ref)
    assert image is not None, f"{ref} does not exist after a pull that reported success"
    observe["pulled"] = f"{image.get('Os')}/{image.get('Architecture')}"
    mismatch = image_mismatch(image, facts)
    assert mismatch is None, (
        f"/v1.31 with platform={other}: pulled {image.get('Os')}/{image.get('Architecture')}, "
        f"not the native {native} image ({mismatch}): platform was read below 1.32"
    )


MISMATCHES = {
    "arm-only-as-amd64": ("arm-only", "latest", "linux/amd64"),
    "single-as-arm64": ("single", "v1", "linux/arm64"),
}
WARNING = re.compile(r"warn|does not match|platform", re.IGNORECASE)


@pytest.mark.requirement("PULL-019")
@pytest.mark.parametrize("case", sorted(MISMATCHES))
def test_single_platform_mismatch(client, images, registry, observe, case):
    short, tag, platform = MISMATCHES[case]
    ref = registry.reference(short, tag)
    ex = pull(
        client,
        images,
        {"fromImage": repo_name(registry, short), "tag": tag, "platform": platform},
        [ref],
    )
    image = client.inspect_image(ref)
    warnings = [s for s in statuses(ex) if WARNING.search(s)]
    observe[case] = {
        "answer": where(ex),
        "error": ex.stream_error
        or (ex.body[:200].decode(errors="replace") if ex.status >= 400 else None),
        "warnings": warnings,
        "pulled": image and f"{image.get('Os')}/{image.get('Architecture')}",
    }
    if not (error_location(ex) or warnings):
        require_end(ex, "whether the pull reported the missing platform")
    assert error_location(ex) or warnings, (
        f"{short}:{tag} has no {platform} image, yet the pull answered {where(ex)}, "
        f"pulled {observe[case]['pulled']} and gave no warning"
    )


# -- where errors appear --------------------------------------------------------------------


@pytest.mark.requirement("PULL-020")
@pytest.mark.parametrize("case", FAILURE_CASES)
def test_failed_pull_is_visible(client, images, registry, api_version, observe, case):
    mark = journal_mark(registry)
    ex, _ = send_failure(client, images, registry, case, api_version)
    observe[case] = where(ex)
    require_registry_asked(registry, mark, case)
    assert_visible_failure(ex, f"{case} ({failure_params(registry, case)}) failed")


VARIANT_PLATFORMS = [p for p in MULTI_PLATFORMS if len(p.split("/")) == 3]


@pytest.mark.requirement("PULL-021")
@pytest.mark.parametrize("platform", VARIANT_PLATFORMS)
@pytest.mark.parametrize("short", ["multi", "multi-oci"])
def test_inspect_reports_the_variant(
    client, images, registry, api_version, observe, short, platform
):
    pulled = pull_platform(client, images, registry, api_version, short, platform)
    precondition(
        pulled.succeeded,
        f"the pull of {platform} from {short} failed "
        f"({where(pulled.exchange)}; PULL-015 judges that): there is no image to read",
    )
    # A view that shows the pulled platform's image: platform-aware where the API version
    # serves one, else the default view when it is that image.
    view, which = (
        (pulled.platform_view, "the platform-aware view")
        if pulled.platform_view is not None
        else (pulled.default, "the default view")
        if pulled.default_is_image
        else (None, "")
    )
    precondition(
        view is not None,
        (
            f"no view of {pulled.ref} shows the {platform} image, so its Variant cannot be read "
            "(PULL-015 judges what was pulled): " + "; ".join(pulled.against + pulled.neutral)
        ),
    )
    observe[f"{short} {platform}"] = {"Variant": view.get("Variant"), "view": which}
    assert view.get("Variant") == pulled.facts.variant, (
        f"the {platform} image of {short} (its config says variant {pulled.facts.variant!r}) "
        f"is inspected with Variant {view.get('Variant')!r} ({which})"
    )


# -- what the registry decides --------------------------------------------------------------


@pytest.mark.requirement("PULL-022")
def test_stored_digest_is_checked_with_the_other_repository(client, images, registry, observe):
    digest = registry.catalogue.manifest_digest("single", "v1")
    other_name = registry.catalogue.name("oci")
    precondition(
        registry.catalogue.manifest(other_name, digest) is None,
        f"the lab registry serves {digest} in {other_name} too: nothing to judge",
    )
    ref = registry.reference("single", "v1")
    first = pull(client, images, {"fromImage": repo_name(registry, "single"), "tag": "v1"}, [ref])
    held = client.inspect_image(ref)
    precondition(
        first.status == 200 and first.stream_error is None and held is not None,
        f"the first pull, of {ref}, did not succeed ({where(first)}; PULL-001 judges "
        "that): the engine holds nothing by that digest",
    )
    other = registry.reference("oci", digest=digest)
    # Podman finds any <repo>@<digest> by the digest alone: what resolves before the pull
    # says nothing of what the pull recorded.
    resolved_before = client.inspect_image(other) is not None
    observe["name_resolved_before_the_pull"] = resolved_before
    mark = journal_mark(registry)
    ex = pull(client, images, {"fromImage": other}, [other])
    observe["answer"] = where(ex)
    fetched = manifests_fetched(registry, mark, "oci", "", required=False)
    if fetched is not None:
        observe["registry_answers"] = sorted(
            {
                f"{e.method} {e.reference} -> {e.status}"
                for e in registry.journal.since(mark)
                if e.repository == other_name and e.kind == "manifest"
            }
        )
        assert digest in fetched, (
            f"{other} was pulled while the engine held {digest} from {ref}, but the engine "
            f"did not ask the registry's {other_name} for it (manifests fetched there: "
            f"{fetched or 'none'}): it answered from what it holds, not from the registry"
        )
    assert_visible_failure(
        ex, f"{other_name} does not have {digest} (the registry answers 404 manifest unknown)"
    )
    named = not resolved_before and client.inspect_image(other) is not None
    after = client.inspect_image(held["Id"]) or {}
    names = (after.get("RepoDigests") or []) + (after.get("RepoTags") or [])
    recorded = [n for n in names if n.startswith(f"{repo_name(registry, 'oci')}@")]
    assert not named and not recorded, (
        f"the pull of {other} failed, yet the engine recorded the name: "
        + (f"{other} can be inspected now (not before the pull)" if named else "")
        + ("; " if named and recorded else "")
        + (f"the image held from {ref} is named {recorded}" if recorded else "")
    )


def moving_image(label: str) -> Image:
    """An image of PULL-023's own, one of two its tag points at (the same in every run)."""
    return build_image(
        {"lab/moving.txt": f"engine-conformance moving tag: {label}\n"},
        env={"LAB_MOVING": label},
        cmd=["/bin/sh"],
    )


@pytest.mark.requirement("PULL-023")
def test_moved_tag_gives_the_new_image_and_keeps_the_old(client, images, lab_control, observe):
    catalogue = lab_control.catalogue
    name = catalogue.name("moving")
    ref = lab_control.reference(name, "v1")
    params = {"fromImage": lab_control.reference(name), "tag": "v1"}
    catalogue.add(name, "v1", moving_image("before"))
    try:
        old = catalogue.facts(name, "v1")
        first = pull(client, images, params, [ref])
        before = client.inspect_image(ref)
        precondition(
            first.status == 200
            and first.stream_error is None
            and before is not None
            and image_mismatch(before, old) is None,
            f"the first pull of {ref} did not give the registry's image ({where(first)}"
            "; PULL-001 judges that): there is no old image to judge",
        )
        old_id = before["Id"]
        images.track(old_id)
        catalogue.add(name, "v1", moving_image("after"))  # the registry moves the tag
        new = catalogue.facts(name, "v1")
        mark = lab_control.journal.mark()
        second = pull(client, images, params)
        observe["second_pull"] = where(second)
        observe["second_pull_manifests"] = manifests_fetched(
            lab_control, mark, "moving", "the pull after the tag moved", required=False
        )
        assert_stream_success(second)
        now = client.inspect_image(ref)
        assert now is not None, f"after the tag moved, the re-pull answered 200 but {ref} is gone"
        mismatch = image_mismatch(now, new)
        assert mismatch is None, (
            f"the registry moved {ref} to a new image ({new.manifest_digest}), the re-pull "
            f"answered 200, but {ref} is not the new image: {mismatch}"
            + (" (it is still the old one)" if image_mismatch(now, old) is None else "")
        )
        kept = client.inspect_image(old_id)
        observe["old_image"] = kept and {
            "RepoTags": kept.get("RepoTags"),
            "RepoDigests": kept.get("RepoDigests"),
        }
        assert kept is not None, (
            f"the re-pull gave {ref} the new image and the old one ({old_id}) no longer "
            "exists: reference engines keep it, untagged, inspectable by its ID"
        )
    finally:
        catalogue.remove(name)


@pytest.mark.requirement("PULL-024")
def test_image_without_layers(client, images, registry, observe):
    facts = registry.catalogue.facts("no-layers", "latest")
    precondition(not facts.layer_digests, "the lab's no-layers image has layers")
    ref = registry.reference("no-layers", "latest")
    mark = journal_mark(registry)
    ex = pull(
        client, images, {"fromImage": repo_name(registry, "no-layers"), "tag": "latest"}, [ref]
    )
    manifests_fetched(registry, mark, "no-layers", "a manifest with no layers")
    observe["answer"] = where(ex)
    assert_stream_success(ex)
    image = expect_image(client, ref, facts, "a manifest whose layers list is empty")
    observe["RootFS"] = image.get("RootFS")


@pytest.mark.requirement("PULL-025")
def test_one_tag_pulls_only_that_tag(client, images, registry, observe):
    full = registry.catalogue.name("single")
    others = {
        t: registry.reference("single", t) for t in registry.catalogue.tags(full) or [] if t != "v1"
    }
    present = sorted(t for t, r in others.items() if client.inspect_image(r) is not None)
    precondition(
        others and not present,
        f"the other tags of {full} ({sorted(others)}) must be absent before the "
        f"pull, but {present} exist",
    )
    ref = registry.reference("single", "v1")
    allowed = {"v1", registry.catalogue.manifest_digest("single", "v1")}
    mark = journal_mark(registry)
    ex = pull(
        client,
        images,
        {"fromImage": repo_name(registry, "single"), "tag": "v1"},
        [ref, *others.values()],
    )
    precondition(
        ex.status == 200 and ex.stream_error is None,
        f"the pull of {ref} failed ({where(ex)}; PULL-001 judges that)",
    )
    fetched = manifests_fetched(registry, mark, "single", "a pull of one tag") or []
    observe["manifests_fetched"] = fetched
    if mark is not None:
        observe["tags_listed"] = any(
            e.kind == "tags" and e.repository == full for e in registry.journal.since(mark)
        )
    extra = sorted(set(fetched) - allowed)
    pulled = sorted(t for t, r in others.items() if client.inspect_image(r) is not None)
    assert not extra and not pulled, (
        f"fromImage={repo_name(registry, 'single')}&tag=v1 must pull v1 only, but the engine "
        + "; ".join(
            ([f"also fetched the manifests {extra}"] if extra else [])
            + ([f"also pulled the tags {pulled}"] if pulled else [])
        )
    )
