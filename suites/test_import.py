"""Importing an image: ``fromSrc=-`` with archives the suite makes, and ``fromSrc=<URL>``.

Every image a check causes is named under the run prefix (``images.name``) and,
when the stream names an ID, that ID is tracked too, so nothing is left behind
even when an engine names the image differently than asked.

What ``repo``, ``tag``, ``message`` and ``changes`` do is judged by one helper each
(``judge_naming``, ``judge_message``, ``judge_documented_change``), on an archive in
the request body and (IMPORT-030, IMPORT-031) on the same archive fetched from the
suite's file server: ``via`` is None for the body, or the file server.
"""

from __future__ import annotations

import hashlib
import re
import signal

import pytest

from engine_conformance.base import archives
from engine_conformance.catalogue import spec
from engine_conformance.engine.fileserver import FileServer
from engine_conformance.engine.target import Exchange
from engine_conformance.judge.checks import (
    assert_nothing_left,
    assert_refused,
    assert_stream_success,
    assert_visible_failure,
    error_location,
    failed,
    file_server_requests,
    image_ids,
    imported_id,
    require_end,
    where,
)
from engine_conformance.judge.verdicts import precondition
from engine_conformance.judge.vocabulary import assert_failed_leaving_nothing, leftovers

ID_STATUS = re.compile(r"^sha256:[0-9a-f]{64}$")


# -- helpers ----------------------------------------------------------------------


def unique_rootfs(name: str, compression: str | None = None) -> bytes:
    """A small archive whose content is unique to ``name`` (so each layer is new)."""
    return archives.rootfs({"etc/engine-conformance": f"{name}\n".encode()}, compression)


def do_import(client, images, params: dict, body: bytes | None = None):
    """Send an import and track whatever ID the stream names, for removal afterwards."""
    ex = client.create_image(params, body=body)
    found = imported_id(ex)
    if found:
        images.track(found)
    return ex


def import_archive(
    client, images, observe: dict, params: dict, archive: bytes, via: FileServer | None = None
) -> Exchange:
    """Import ``archive`` with ``params``: in the request body, or ``via`` the file server
    (``fromSrc`` is then a URL it serves ``archive`` at; its log is observed).

    A URL import is judged here only on an archive the engine fetched: whether it
    fetches the URL at all is IMPORT-020's to judge, so a file server that never saw
    the request makes the verdict ``error``.
    """
    if via is None:
        return do_import(client, images, {"fromSrc": "-", **params}, archive)
    url = via.add("rootfs.tar", archive)
    ex = do_import(client, images, {"fromSrc": url, **params})
    observe[f"file server, {params['repo']}"] = file_server_requests(
        via, url, f"what an import from a URL applies ({where(ex)})", statuses=(200,)
    )
    return ex


def url_note(via: FileServer | None) -> str:
    """How a reason starts: says the archive came from a URL (nothing for the body)."""
    return "" if via is None else "imported from a URL: "


def assert_refused_400(client, images, ex, before: set[str], name: str, what: str) -> None:
    """A 400 ErrorResponse that created nothing; every problem is reported at once."""
    left = leftovers(client, [name], before=before, images=images)
    assert_refused(ex, 400, what, ", ".join(left), "reference behaviour")


def judge_refused_import(client, images, observe, label: str, param: str, value: str) -> None:
    """A body import with ``param=value``, which the engine must refuse (IMPORT-014, -018)."""
    name = images.name(label)
    before = image_ids(client)
    ex = do_import(
        client, images, {"fromSrc": "-", "repo": name, param: value}, unique_rootfs(name)
    )
    observe[value] = ex.status
    assert_refused_400(client, images, ex, before, name, f"{param}={value!r}")


def inspect_imported(client, name: str) -> dict:
    image = client.inspect_image(name)
    assert image is not None, f"{name} does not exist after an import that reported success"
    return image


def top_history(client, name: str) -> dict:
    entries = client.history(name)
    assert entries, f"GET /images/{name}/history gave no entries"
    return entries[0]


def host_platform(target_info: dict) -> tuple[str, str]:
    """The engine's own OS and architecture, as GET /version names them."""
    host_os, host_arch = target_info.get("os"), target_info.get("arch")
    precondition(
        host_os and host_arch,
        f"GET /version gave Os {host_os!r} and Arch "
        f"{host_arch!r}: the host's platform is unknown, so it cannot be compared",
    )
    return str(host_os), str(host_arch)


def other_arch(host_arch: str | None, variant: bool = False) -> tuple[str, str | None]:
    """An architecture (and variant) that is not the host's, so applying it is visible."""
    candidates = [("arm", "v7"), ("arm64", "v8")] if variant else [("arm64", None), ("amd64", None)]
    return next(c for c in candidates if c[0] != host_arch)


# -- the image and its ID -----------------------------------------------------------


@pytest.mark.requirement("IMPORT-001")
def test_import_creates_an_image(client, images, observe):
    name = images.name("imp")
    before = image_ids(client)
    ex = do_import(client, images, {"fromSrc": "-", "repo": name}, unique_rootfs(name))
    assert_stream_success(ex)
    new = image_ids(client) - before
    for image_id in new:
        images.track(image_id)
    by_name = client.inspect_image(name)
    observe["found_by_name"] = by_name is not None
    observe["new_image_ids"] = sorted(new)
    assert by_name is not None or new, (
        f"the import answered 200 with no error, but no image exists: {name} is unknown "
        "and no image ID is new"
    )
    for image_id in new:
        assert client.inspect_image(image_id) is not None, (
            f"new image {image_id} cannot be inspected"
        )


@pytest.mark.requirement("IMPORT-002")
def test_last_message_names_the_image_id(client, images, observe):
    name = images.name("imp-id")
    ex = do_import(client, images, {"fromSrc": "-", "repo": name}, unique_rootfs(name))
    assert_stream_success(ex)
    last = ex.messages[-1].obj if ex.messages else {}
    if not ID_STATUS.match(str(last.get("status", ""))):
        require_end(ex, "the import stream's last message")  # the ID may be what was cut
    assert ex.messages, "the import stream has no messages"
    observe["last_message"] = last
    status = last.get("status")
    assert isinstance(status, str) and ID_STATUS.match(status), (
        f'the last stream message is {last}, not {{"status": "sha256:<64 hex>"}}'
    )
    image = client.inspect_image(name)
    if image is None:
        pytest.skip(f"{name} does not exist, so the ID cannot be compared (IMPORT-003 judges that)")
    assert status == image["Id"], (
        f"the last message names {status}, but {name} has Id {image['Id']}"
    )


# -- names ---------------------------------------------------------------------------


NAMING_FORMS = ("repo", "repo-with-tag", "repo-and-tag")
"""``repo=NAME``, ``repo=NAME:ectag``, ``repo=NAME&tag=ectag``."""


def judge_naming(client, images, observe, form: str, via: FileServer | None = None) -> None:
    """The import's ``repo`` (and ``tag``) name the image imported (see NAMING_FORMS)."""
    name = images.name("imp-tag" if form == "repo-and-tag" else "imp-repo")
    ref = name if form == "repo" else f"{name}:ectag"
    images.track(ref)
    params = {"repo": name, "tag": "ectag"} if form == "repo-and-tag" else {"repo": ref}
    ex = import_archive(client, images, observe, params, unique_rootfs(name), via)
    assert_stream_success(ex)
    image = client.inspect_image(ref)
    observe[form] = image and image.get("RepoTags")
    if image is None and form == "repo-and-tag":
        other = client.inspect_image(name)
        observe["named_instead"] = other and other.get("RepoTags")
    sent = "&".join(f"{k}={v}" for k, v in params.items())
    assert image is not None, (
        f"{url_note(via)}{sent} was imported (200, no error) but {ref} does not exist"
    )
    found = imported_id(ex)
    if found:
        assert image["Id"] == found, (
            f"{url_note(via)}{ref} is {image['Id']}, not the image imported ({found})"
        )


@pytest.mark.requirement("IMPORT-003")
@pytest.mark.parametrize("form", ["repo", "repo-with-tag"])
def test_repo_names_the_image(client, images, observe, form):
    judge_naming(client, images, observe, form)


@pytest.mark.requirement("IMPORT-004")
def test_repo_and_tag_name_the_image(client, images, observe):
    judge_naming(client, images, observe, "repo-and-tag")


@pytest.mark.requirement("IMPORT-005")
def test_tag_wins_over_tag_in_repo(client, images, observe):
    name = images.name("imp-tagwins")
    for ref in (f"{name}:inrepo", f"{name}:wins"):
        images.track(ref)
    ex = do_import(
        client,
        images,
        {"fromSrc": "-", "repo": f"{name}:inrepo", "tag": "wins"},
        unique_rootfs(name),
    )
    assert_stream_success(ex)
    wins = client.inspect_image(f"{name}:wins")
    inrepo = client.inspect_image(f"{name}:inrepo")
    observe["named"] = (wins or inrepo or {}).get("RepoTags")
    assert wins is not None, f"repo={name}:inrepo&tag=wins did not name the image {name}:wins"
    assert inrepo is None, f"repo={name}:inrepo&tag=wins also named the image {name}:inrepo"


# -- message ---------------------------------------------------------------------------


def judge_message(client, images, observe, via: FileServer | None = None) -> None:
    """The import's ``message`` is the comment of the image's newest history entry."""
    name = images.name("imp-msg")
    message = "engine-conformance: imported & checked (100%)"
    ex = import_archive(
        client, images, observe, {"repo": name, "message": message}, unique_rootfs(name), via
    )
    assert_stream_success(ex)
    inspect_imported(client, name)
    comment = top_history(client, name).get("Comment")
    observe["comment"] = comment
    assert comment == message, (
        f"{url_note(via)}the history comment is {comment!r}, not the message {message!r}"
    )


@pytest.mark.requirement("IMPORT-006")
def test_message_is_the_history_comment(client, images, observe):
    judge_message(client, images, observe)


@pytest.mark.requirement("IMPORT-007")
def test_empty_message_comment(client, images, observe):
    name = images.name("imp-nomsg")
    ex = do_import(
        client, images, {"fromSrc": "-", "repo": name, "message": ""}, unique_rootfs(name)
    )
    assert_stream_success(ex)
    inspect_imported(client, name)
    comment = top_history(client, name).get("Comment")
    observe["comment"] = comment
    assert isinstance(comment, str) and comment.strip(), (
        f"with an empty message the history comment is {comment!r}: nothing says where the "
        "image came from (Docker: 'Imported from -')"
    )


# -- changes -----------------------------------------------------------------------------


# instruction -> (change, how to read it from Config, the value expected). No value holds a
# comma: the document declares `changes` a Swagger 2.0 array without a collectionFormat
# (comma-separated), so a comma inside one instruction is judged apart (IMPORT-029, SHOULD).
DOCUMENTED_CHANGES = {
    "CMD": ('CMD ["/bin/ec-cmd"]', "Cmd", ["/bin/ec-cmd"]),
    "ENTRYPOINT": ('ENTRYPOINT ["/bin/ec-entry"]', "Entrypoint", ["/bin/ec-entry"]),
    "ENV": ("ENV EC_ENV=ectest", "Env", "EC_ENV=ectest"),
    "EXPOSE": ("EXPOSE 8080/tcp", "ExposedPorts", "8080/tcp"),
    "ONBUILD": ("ONBUILD RUN echo ectest", "OnBuild", ["RUN echo ectest"]),
    "USER": ("USER ectest", "User", "ectest"),
    "VOLUME": ("VOLUME /ec-data", "Volumes", "/ec-data"),
    "WORKDIR": ("WORKDIR /ec-work", "WorkingDir", "/ec-work"),
}
MEMBER_KEYS = {"Env", "ExposedPorts", "Volumes"}  # the value expected is one member of these
assert sorted(DOCUMENTED_CHANGES) == sorted(
    spec.parameter("changes")["x-documented-instructions"]
), "DOCUMENTED_CHANGES must cover exactly the documented instructions"


def config_has(config: dict, key: str, expected) -> bool:
    got = config.get(key)
    if key in MEMBER_KEYS:
        return expected in (got or [])
    return got == expected


def import_with_changes(
    client,
    images,
    label: str,
    changes: list[str],
    via: FileServer | None = None,
    observe: dict | None = None,
) -> tuple[dict, Exchange]:
    name = images.name(label)
    ex = import_archive(
        client,
        images,
        {} if observe is None else observe,
        {"repo": name, "changes": changes},
        unique_rootfs(name),
        via,
    )
    assert_stream_success(ex)
    return (inspect_imported(client, name).get("Config") or {}), ex


def judge_change(
    client,
    images,
    observe,
    label: str,
    change_key_expected: tuple,
    via: FileServer | None = None,
    how: str = "",
) -> None:
    """One ``changes`` instruction shows in the imported image's Config under ``key``.

    ``how`` says what the value tests (it is recorded with the request line that
    carried it).
    """
    change, key, expected = change_key_expected
    config, ex = import_with_changes(client, images, label, [change], via, observe)
    if how:
        observe["request"] = ex.request_line
    observe[key] = config.get(key)
    assert config_has(config, key, expected), (
        f"{url_note(via)}changes={change!r}{f' ({how})' if how else ''}: Config.{key} is "
        f"{config.get(key)!r}, expected {'to contain ' if key in MEMBER_KEYS else ''}"
        f"{expected!r}"
    )


def judge_documented_change(
    client, images, observe, instruction: str, via: FileServer | None = None
) -> None:
    """One documented ``changes`` instruction shows in the imported image's Config."""
    judge_change(
        client, images, observe, f"imp-{instruction.lower()}", DOCUMENTED_CHANGES[instruction], via
    )


@pytest.mark.requirement("IMPORT-008")
@pytest.mark.parametrize("instruction", sorted(DOCUMENTED_CHANGES))
def test_documented_change_applies(client, images, observe, instruction):
    judge_documented_change(client, images, observe, instruction)


@pytest.mark.requirement("IMPORT-009")
def test_several_changes_all_apply(client, images, observe):
    picked = ["CMD", "ENV", "EXPOSE", "USER", "WORKDIR"]
    changes = [DOCUMENTED_CHANGES[i][0] for i in picked] + ["ENV EC_SECOND=two"]
    config, _ = import_with_changes(client, images, "imp-many", changes)
    wanted = [(DOCUMENTED_CHANGES[i][1], DOCUMENTED_CHANGES[i][2]) for i in picked]
    wanted.append(("Env", "EC_SECOND=two"))
    missing = [f"{k}: {v!r}" for k, v in wanted if not config_has(config, k, v)]
    observe["config"] = {
        k: config.get(k) for k in ("Cmd", "Env", "ExposedPorts", "User", "WorkingDir")
    }
    assert not missing, (
        f"{len(changes)} changes sent as repeated keys; not applied: {'; '.join(missing)}"
    )


ENCODED_CHANGES = {  # comma-free, as DOCUMENTED_CHANGES
    "documented-example": ("ENV DEBUG=true", "Env", "DEBUG=true"),
    "reserved-characters": (
        "ENV EC_URI=a&b=c%2Fd+e#f?g/h;i\u00fc",
        "Env",
        "EC_URI=a&b=c%2Fd+e#f?g/h;i\u00fc",
    ),
    "exec-form": ('CMD ["/bin/ec-echo?a&b=c d%e+f#g"]', "Cmd", ["/bin/ec-echo?a&b=c d%e+f#g"]),
}


@pytest.mark.requirement("IMPORT-010")
@pytest.mark.parametrize("case", sorted(ENCODED_CHANGES))
def test_encoded_change_arrives_intact(client, images, observe, case):
    judge_change(
        client, images, observe, "imp-enc", ENCODED_CHANGES[case], how="URI-encoded on the wire"
    )


@pytest.mark.requirement("IMPORT-011")
def test_healthcheck_change(client, images, observe):
    config, _ = import_with_changes(
        client, images, "imp-health", ['HEALTHCHECK CMD ["/bin/ec-health"]']
    )
    health = config.get("Healthcheck") or {}
    observe["Healthcheck"] = config.get("Healthcheck")
    assert health.get("Test") == ["CMD", "/bin/ec-health"], (
        f"Config.Healthcheck is {config.get('Healthcheck')!r}, expected Test "
        "['CMD', '/bin/ec-health']"
    )


@pytest.mark.requirement("IMPORT-012")
def test_label_change(client, images, observe):
    config, _ = import_with_changes(client, images, "imp-label", ["LABEL org.ectest.label=value1"])
    labels = config.get("Labels") or {}
    observe["Labels"] = config.get("Labels")
    assert labels.get("org.ectest.label") == "value1", (
        f"Config.Labels is {config.get('Labels')!r}, expected org.ectest.label=value1"
    )


@pytest.mark.requirement("IMPORT-013")
def test_stopsignal_change(client, images, observe):
    config, _ = import_with_changes(client, images, "imp-stop", ["STOPSIGNAL SIGQUIT"])
    got = config.get("StopSignal")
    observe["StopSignal"] = got
    same = {"SIGQUIT", "QUIT", str(int(signal.SIGQUIT))}
    assert got in same, f"Config.StopSignal is {got!r}, expected SIGQUIT (or its number)"


@pytest.mark.requirement("IMPORT-014")
@pytest.mark.parametrize("change", ["RUN true", "FROM scratch", "COPY a /a", "ADD a /a"])
def test_disallowed_change_is_refused(client, images, observe, change):
    judge_refused_import(client, images, observe, "imp-badchange", "changes", change)


# A Dockerfile instruction whose exec form holds a comma: one value, so one instruction.
COMMA_CHANGE = ('ENTRYPOINT ["/bin/sh", "-c"]', "Entrypoint", ["/bin/sh", "-c"])


@pytest.mark.requirement("IMPORT-029")
def test_change_with_a_comma_applies_whole(client, images, observe):
    judge_change(
        client, images, observe, "imp-comma", COMMA_CHANGE, how="one value that holds a comma"
    )


# -- archives -------------------------------------------------------------------------


@pytest.mark.requirement("IMPORT-015")
@pytest.mark.parametrize("compression", ["gz", "bz2", "xz"])
def test_compressed_archive_imports(client, images, observe, compression):
    name = images.name(f"imp-{compression}")
    tar = unique_rootfs(name)
    ex = do_import(
        client, images, {"fromSrc": "-", "repo": name}, archives.compress(tar, compression)
    )
    assert_stream_success(ex)
    layers = (inspect_imported(client, name).get("RootFS") or {}).get("Layers") or []
    observe["layers"] = layers
    assert len(layers) == 1, f"the image of one archive has layers {layers}, expected one"
    tar_digest = "sha256:" + hashlib.sha256(tar).hexdigest()
    observe["tar_sha256"] = tar_digest
    if layers[0] == tar_digest:
        return
    # The engine may re-pack layers: compare with the same tar imported uncompressed.
    plain = images.name(f"imp-{compression}-plain")
    ex = do_import(client, images, {"fromSrc": "-", "repo": plain}, tar)
    assert_stream_success(ex)
    baseline = (inspect_imported(client, plain).get("RootFS") or {}).get("Layers") or []
    observe["uncompressed_import_layers"] = baseline
    assert layers == baseline, (
        f"the {compression} archive's layer has diff ID {layers[0]}, which is neither the "
        f"sha256 of its uncompressed tar ({tar_digest}) nor the diff ID of the same tar "
        f"imported uncompressed ({baseline}); digest of the compressed bytes: sha256:"
        f"{hashlib.sha256(archives.compress(tar, compression)).hexdigest()}"
    )


NOT_AN_ARCHIVE = b"engine-conformance: this is not an archive\n" * 16


def failing_import(client, images, observe, case: str, file_server=None):
    """An import that must fail: (name, the answer, image IDs before it)."""
    name = images.name(f"imp-{case}")
    before = image_ids(client)
    if case == "not-an-archive":
        ex = do_import(client, images, {"fromSrc": "-", "repo": name}, NOT_AN_ARCHIVE)
        why = "the body is not an archive"
    else:
        url = file_server.missing("rootfs.tar")
        ex = do_import(client, images, {"fromSrc": url, "repo": name})
        observe["file_server_saw"] = file_server_requests(
            file_server, url, "an import from a URL that answers 404"
        )
        why = f"fromSrc={url} answered 404"
    observe["status"] = ex.status
    observe["stream_error"] = ex.stream_error
    return name, ex, before, why


@pytest.mark.requirement("IMPORT-019")
def test_non_archive_body_fails(client, images, observe):
    _, ex, _, why = failing_import(client, images, observe, "not-an-archive")
    assert_visible_failure(ex, why)


@pytest.mark.requirement("IMPORT-032")
@pytest.mark.parametrize("case", ["not-an-archive", "url-404"])
def test_failed_import_leaves_nothing(client, images, request, observe, case):
    file_server = request.getfixturevalue("file_server") if case == "url-404" else None
    name, ex, before, why = failing_import(client, images, observe, case, file_server)
    precondition(
        error_location(ex) is not None,
        f"{why}, but the engine reported no failure ({where(ex)}; "
        f"{'IMPORT-019' if file_server is None else 'IMPORT-021'} judges that): "
        "what it left is not a failed import's",
    )
    assert_nothing_left(
        f"the import failed ({why})", leftovers(client, [name], before=before, images=images)
    )


ZERO_PADDING = 8 << 20
"""Bytes of zeros after an archive's end-of-archive blocks (moby's own test uses 8 GiB)."""


@pytest.mark.requirement("IMPORT-022")
def test_archive_with_zero_padding_imports(client, images, observe):
    name = images.name("imp-padded")
    tar = unique_rootfs(name)
    ex = do_import(client, images, {"fromSrc": "-", "repo": name}, tar + bytes(ZERO_PADDING))
    observe["archive_bytes"] = len(tar)
    observe["zero_bytes_after_it"] = ZERO_PADDING
    observe["status"] = ex.status
    what = f"a {len(tar)}-byte archive followed by {ZERO_PADDING >> 20} MiB of zeros"
    assert not failed(ex), (
        f"{what} did not import: {where(ex)} ({ex.stream_error or ex.body[:300]!r})"
    )
    assert_stream_success(ex)
    image = inspect_imported(client, name)
    layers = (image.get("RootFS") or {}).get("Layers") or []
    observe["layers"] = layers
    observe["size"] = image.get("Size")
    assert len(layers) == 1, f"{what} imported as an image with layers {layers}, not one"


# -- platform -----------------------------------------------------------------------------


@pytest.mark.requirement("IMPORT-016")
@pytest.mark.parametrize("form", ["os", "os/arch", "os/arch/variant"])
def test_platform_is_accepted_and_os_applied(client, images, target_info, observe, form):
    host_os = target_info.get("os") or "linux"
    arch, _ = other_arch(target_info.get("arch"))
    varch, variant = other_arch(target_info.get("arch"), variant=True)
    platform = {
        "os": host_os,
        "os/arch": f"{host_os}/{arch}",
        "os/arch/variant": f"{host_os}/{varch}/{variant}",
    }[form]
    name = images.name("imp-plat")
    ex = do_import(
        client, images, {"fromSrc": "-", "repo": name, "platform": platform}, unique_rootfs(name)
    )
    assert_stream_success(ex)
    image = inspect_imported(client, name)
    observe[platform] = [image.get("Os"), image.get("Architecture"), image.get("Variant")]
    assert image.get("Os") == host_os, (
        f"platform={platform}: the image's Os is {image.get('Os')!r}, not {host_os!r}"
    )


@pytest.mark.requirement("IMPORT-017")
@pytest.mark.parametrize("form", ["os/arch", "os/arch/variant"])
def test_platform_sets_architecture(client, images, target_info, observe, form):
    host_os = target_info.get("os") or "linux"
    arch, variant = other_arch(target_info.get("arch"), variant=form == "os/arch/variant")
    platform = f"{host_os}/{arch}" + (f"/{variant}" if variant else "")
    name = images.name("imp-arch")
    ex = do_import(
        client, images, {"fromSrc": "-", "repo": name, "platform": platform}, unique_rootfs(name)
    )
    assert_stream_success(ex)
    image = inspect_imported(client, name)
    got = (image.get("Os"), image.get("Architecture"), image.get("Variant") or None)
    observe[platform] = list(got)
    # Without a variant in platform, the engine may fill in the architecture's default.
    want = (host_os, arch, variant) if variant else (host_os, arch)
    assert got[: len(want)] == want, (
        f"platform={platform}: the image has Os/Architecture/Variant {got}, expected {want}"
    )


@pytest.mark.requirement("IMPORT-018")
@pytest.mark.parametrize("platform", ["not/a/platform/at/all", "lin ux!"])
def test_invalid_platform_is_refused(client, images, observe, platform):
    judge_refused_import(client, images, observe, "imp-badplat", "platform", platform)


def import_with_platform(client, images, label: str, platform: str | None) -> Exchange:
    """A body import with ``platform`` (None: without the parameter) that must succeed."""
    name = images.name(label)
    params = {"fromSrc": "-", "repo": name} | ({} if platform is None else {"platform": platform})
    ex = do_import(client, images, params, unique_rootfs(name))
    sent = "no platform" if platform is None else f"platform={platform!r}"
    assert not failed(ex), f"{sent} was refused: {where(ex)} ({ex.stream_error or ex.body[:300]!r})"
    assert_stream_success(ex)
    return ex


def imported_platform(client, ex: Exchange) -> tuple[str | None, str | None]:
    """The Os and Architecture of the image ``ex`` imported under its ``repo``."""
    image = inspect_imported(client, dict(ex.params)["repo"])
    return image.get("Os"), image.get("Architecture")


@pytest.mark.requirement("IMPORT-023")
@pytest.mark.parametrize("form", ["absent", "empty"])
def test_no_platform_means_the_hosts(client, images, target_info, observe, form):
    host = host_platform(target_info)
    ex = import_with_platform(client, images, "imp-noplat", None if form == "absent" else "")
    got = imported_platform(client, ex)
    observe[form] = list(got)
    observe["host"] = list(host)
    sent = "without platform" if form == "absent" else "with platform= (empty)"
    assert got == host, (
        f"imported {sent}: the image has Os/Architecture {got}, not the host's {host} "
        "(GET /version)"
    )


@pytest.mark.requirement("IMPORT-024")
@pytest.mark.parametrize("form", ["os", "os/arch"])
def test_platform_os_in_capitals_is_normalised(client, images, target_info, observe, form):
    host_os, host_arch = host_platform(target_info)
    platform = host_os.upper() + (f"/{host_arch}" if form == "os/arch" else "")
    ex = import_with_platform(client, images, "imp-platcase", platform)
    got = imported_platform(client, ex)
    observe[platform] = list(got)
    assert got[0] == host_os, f"platform={platform}: the image's Os is {got[0]!r}, not {host_os!r}"


@pytest.mark.requirement("IMPORT-025")
def test_unknown_architecture_is_kept(client, images, target_info, observe):
    host_os, _ = host_platform(target_info)
    platform = f"{host_os}/ectestarch"
    ex = import_with_platform(client, images, "imp-platarch", platform)
    got = imported_platform(client, ex)
    observe[platform] = list(got)
    assert got == (host_os, "ectestarch"), (
        f"platform={platform}: the image has Os/Architecture {got}, not {(host_os, 'ectestarch')}"
    )


UNSUPPORTED_OS = "ectestos"
"""A well-formed OS name no engine runs."""


@pytest.mark.requirement("IMPORT-026")
def test_unsupported_os_is_refused_or_kept(client, images, target_info, observe):
    _, host_arch = host_platform(target_info)
    platform = f"{UNSUPPORTED_OS}/{host_arch}"
    name = images.name("imp-platos")
    before = image_ids(client)
    ex = do_import(
        client, images, {"fromSrc": "-", "repo": name, "platform": platform}, unique_rootfs(name)
    )
    observe["status"] = ex.status
    observe["stream_error"] = ex.stream_error
    if ex.status == 200 and not failed(ex):
        got = imported_platform(client, ex)
        observe["imported_as"] = list(got)
        assert got == (UNSUPPORTED_OS, host_arch), (
            f"platform={platform} was imported (200, no error) with Os/Architecture {got}: "
            "neither refused (400) nor recorded as given"
        )
        return
    assert_refused_400(client, images, ex, before, name, f"platform={platform!r}")


# -- fromSrc=<URL> -------------------------------------------------------------------------


@pytest.mark.requirement("IMPORT-020")
def test_url_import(client, images, file_server, observe):
    name = images.name("imp-url")
    url = file_server.add("rootfs.tar", unique_rootfs(name))
    path = url.removeprefix(file_server.base_url)
    seen = len(file_server.requests)
    ex = do_import(client, images, {"fromSrc": url, "repo": name})
    asked = file_server.requests[seen:]
    fetched = [r for r in asked if r[1] == path]
    observe["file_server_saw"] = asked
    # An import that failed with the file server never asked is one the engine could not
    # reach: not judged. One that reports success without fetching the URL is judged.
    precondition(
        asked or not failed(ex),
        f"the file server was never asked for {url} and "
        f"the import failed ({where(ex)}): the engine could not reach it",
    )
    assert ("GET", path, 200) in fetched, (
        f"the import of {url} answered {where(ex)}, but the engine never fetched that URL "
        f"(the file server saw {asked or 'nothing'})"
    )
    assert_stream_success(ex)
    inspect_imported(client, name)


@pytest.mark.requirement("IMPORT-021")
def test_url_404_fails(client, images, file_server, observe):
    _, ex, _, why = failing_import(client, images, observe, "url-404", file_server)
    assert_visible_failure(ex, why)


@pytest.mark.requirement("IMPORT-027")
def test_url_without_scheme_is_fetched_over_http(client, images, file_server, observe):
    if file_server.tls:
        pytest.skip(
            "the file server speaks HTTPS only (--serve-tls), and a fromSrc without "
            "a scheme is fetched over plain http"
        )
    name = images.name("imp-noscheme")
    url = file_server.add("rootfs.tar", unique_rootfs(name))
    bare = url.split("://", 1)[1]
    path = url.removeprefix(file_server.base_url)
    ex = do_import(client, images, {"fromSrc": bare, "repo": name})
    # The preflight proved that the engine reaches the file server by a full URL.
    asked = [r for r in file_server.requests if r[1] == path]
    observe["file_server_saw"] = asked
    observe["status"] = ex.status
    assert ("GET", path, 200) in asked, (
        f"fromSrc={bare} (no scheme) answered {where(ex)}"
        + (f" ({ex.stream_error or ex.body[:200]!r})" if failed(ex) else "")
        + f", and the file server saw {asked or 'no request'} for {path}: the engine did not "
        "fetch it as http://" + bare
    )
    assert_stream_success(ex)
    inspect_imported(client, name)


@pytest.mark.requirement("IMPORT-028")
def test_url_without_host_fails(client, images, observe):
    name = images.name("imp-nohost")
    src = f"http:///{name}/rootfs.tar"
    before = image_ids(client)
    ex = do_import(client, images, {"fromSrc": src, "repo": name})
    observe["status"] = ex.status
    observe["stream_error"] = ex.stream_error
    assert_failed_leaving_nothing(
        ex,
        f"fromSrc={src} names no host to fetch from",
        leftovers(client, [name], before=before, images=images),
    )


URL_ASPECTS = [
    "repo",
    "repo-with-tag",
    "message",
    *(f"changes-{i}" for i in sorted(DOCUMENTED_CHANGES)),
]
"""What IMPORT-030 judges on a URL import, each as its body-import check does
(IMPORT-003, -006, -008); IMPORT-031 judges ``tag`` as IMPORT-004 does."""


@pytest.mark.requirement("IMPORT-030")
@pytest.mark.parametrize("aspect", URL_ASPECTS)
def test_url_import_applies_what_a_body_import_does(client, images, file_server, observe, aspect):
    if aspect == "message":
        judge_message(client, images, observe, via=file_server)
    elif aspect.startswith("changes-"):
        judge_documented_change(
            client, images, observe, aspect.removeprefix("changes-"), via=file_server
        )
    else:
        judge_naming(client, images, observe, aspect, via=file_server)


@pytest.mark.requirement("IMPORT-031")
def test_url_import_repo_and_tag_name_the_image(client, images, file_server, observe):
    judge_naming(client, images, observe, "repo-and-tag", via=file_server)
