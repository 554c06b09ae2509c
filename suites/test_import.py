"""Importing an image: ``fromSrc=-`` with archives the suite makes, and ``fromSrc=<URL>``.

Every image a check causes is named under the run prefix (``images.name``) and,
when the stream names an ID, that ID is tracked too, so nothing is left behind
even when an engine names the image differently than asked.
"""

from __future__ import annotations

import hashlib
import re
import signal

import pytest

from engine_conformance import archives, spec
from engine_conformance.checks import (
    assert_refused,
    assert_stream_success,
    assert_visible_failure,
    failed,
    file_server_requests,
    image_ids,
    imported_id,
    where,
)
from engine_conformance.verdicts import precondition

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



def leftovers(client, images, before: set[str], names: list[str]) -> str | None:
    """What an import that should have created nothing left behind (None: nothing).

    Looks both under ``names`` and for image IDs that were not there ``before``;
    whatever it finds is tracked for removal.
    """
    new = image_ids(client) - before
    for image_id in new:
        images.track(image_id)
    named = [n for n in names if client.inspect_image(n) is not None]
    if not named and not new:
        return None
    return f"names {named or 'none'}, new image IDs {sorted(new) or 'none'}"


def assert_nothing_created(client, images, before: set[str], names: list[str], why: str) -> None:
    left = leftovers(client, images, before, names)
    assert left is None, f"{why}, yet the engine left an image behind: {left}"


def assert_refused_400(client, images, ex, before: set[str], name: str, what: str) -> None:
    """A 400 ErrorResponse that created nothing; every problem is reported at once."""
    assert_refused(ex, 400, what, leftovers(client, images, before, [name]),
                   "reference behaviour")


def inspect_imported(client, name: str) -> dict:
    image = client.inspect_image(name)
    assert image is not None, f"{name} does not exist after an import that reported success"
    return image


def top_history(client, name: str) -> dict:
    entries = client.history(name)
    assert entries, f"GET /images/{name}/history gave no entries"
    return entries[0]


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
    assert ex.messages, "the import stream has no messages"
    last = ex.messages[-1].obj
    observe["last_message"] = last
    status = last.get("status")
    assert isinstance(status, str) and ID_STATUS.match(status), (
        f"the last stream message is {last}, not {{\"status\": \"sha256:<64 hex>\"}}"
    )
    image = client.inspect_image(name)
    if image is None:
        pytest.skip(f"{name} does not exist, so the ID cannot be compared (IMPORT-003 judges that)")
    assert status == image["Id"], (
        f"the last message names {status}, but {name} has Id {image['Id']}"
    )


# -- names ---------------------------------------------------------------------------


@pytest.mark.requirement("IMPORT-003")
@pytest.mark.parametrize("form", ["repo", "repo-with-tag"])
def test_repo_names_the_image(client, images, observe, form):
    name = images.name("imp-repo")
    ref = name if form == "repo" else f"{name}:ectag"
    images.track(ref)
    ex = do_import(client, images, {"fromSrc": "-", "repo": ref}, unique_rootfs(name))
    assert_stream_success(ex)
    image = client.inspect_image(ref)
    observe[form] = image and image.get("RepoTags")
    assert image is not None, f"repo={ref} was imported (200, no error) but {ref} does not exist"
    found = imported_id(ex)
    if found:
        assert image["Id"] == found, f"{ref} is {image['Id']}, not the image imported ({found})"


@pytest.mark.requirement("IMPORT-004")
def test_repo_and_tag_name_the_image(client, images, observe):
    name = images.name("imp-tag")
    ref = f"{name}:ectag"
    images.track(ref)
    ex = do_import(client, images, {"fromSrc": "-", "repo": name, "tag": "ectag"},
                   unique_rootfs(name))
    assert_stream_success(ex)
    image = client.inspect_image(ref)
    if image is None:
        other = client.inspect_image(name)
        observe["named_instead"] = other and other.get("RepoTags")
    assert image is not None, (
        f"repo={name}&tag=ectag was imported (200, no error) but {ref} does not exist"
    )


@pytest.mark.requirement("IMPORT-005")
def test_tag_wins_over_tag_in_repo(client, images, observe):
    name = images.name("imp-tagwins")
    for ref in (f"{name}:inrepo", f"{name}:wins"):
        images.track(ref)
    ex = do_import(client, images, {"fromSrc": "-", "repo": f"{name}:inrepo", "tag": "wins"},
                   unique_rootfs(name))
    assert_stream_success(ex)
    wins = client.inspect_image(f"{name}:wins")
    inrepo = client.inspect_image(f"{name}:inrepo")
    observe["named"] = (wins or inrepo or {}).get("RepoTags")
    assert wins is not None, f"repo={name}:inrepo&tag=wins did not name the image {name}:wins"
    assert inrepo is None, f"repo={name}:inrepo&tag=wins also named the image {name}:inrepo"


# -- message ---------------------------------------------------------------------------


@pytest.mark.requirement("IMPORT-006")
def test_message_is_the_history_comment(client, images, observe):
    name = images.name("imp-msg")
    message = "engine-conformance: imported & checked (100%)"
    ex = do_import(client, images, {"fromSrc": "-", "repo": name, "message": message},
                   unique_rootfs(name))
    assert_stream_success(ex)
    inspect_imported(client, name)
    comment = top_history(client, name).get("Comment")
    observe["comment"] = comment
    assert comment == message, f"the history comment is {comment!r}, not the message {message!r}"


@pytest.mark.requirement("IMPORT-007")
def test_empty_message_comment(client, images, observe):
    name = images.name("imp-nomsg")
    ex = do_import(client, images, {"fromSrc": "-", "repo": name, "message": ""},
                   unique_rootfs(name))
    assert_stream_success(ex)
    inspect_imported(client, name)
    comment = top_history(client, name).get("Comment")
    observe["comment"] = comment
    assert isinstance(comment, str) and comment.strip(), (
        f"with an empty message the history comment is {comment!r}: nothing says where the "
        "image came from (Docker: 'Imported from -')"
    )


# -- changes -----------------------------------------------------------------------------


# instruction -> (change, how to read it from Config, the value expected)
DOCUMENTED_CHANGES = {
    "CMD": ('CMD ["/bin/ec-cmd", "arg"]', "Cmd", ["/bin/ec-cmd", "arg"]),
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


def import_with_changes(client, images, label: str, changes: list[str]) -> tuple[dict, object]:
    name = images.name(label)
    ex = do_import(client, images, {"fromSrc": "-", "repo": name, "changes": changes},
                   unique_rootfs(name))
    assert_stream_success(ex)
    return (inspect_imported(client, name).get("Config") or {}), ex


@pytest.mark.requirement("IMPORT-008")
@pytest.mark.parametrize("instruction", sorted(DOCUMENTED_CHANGES))
def test_documented_change_applies(client, images, observe, instruction):
    change, key, expected = DOCUMENTED_CHANGES[instruction]
    config, _ = import_with_changes(client, images, f"imp-{instruction.lower()}", [change])
    observe[key] = config.get(key)
    assert config_has(config, key, expected), (
        f"changes={change!r}: Config.{key} is {config.get(key)!r}, expected "
        f"{'to contain ' if key in MEMBER_KEYS else ''}{expected!r}"
    )


@pytest.mark.requirement("IMPORT-009")
def test_several_changes_all_apply(client, images, observe):
    picked = ["CMD", "ENV", "EXPOSE", "USER", "WORKDIR"]
    changes = [DOCUMENTED_CHANGES[i][0] for i in picked] + ["ENV EC_SECOND=two"]
    config, _ = import_with_changes(client, images, "imp-many", changes)
    wanted = [(DOCUMENTED_CHANGES[i][1], DOCUMENTED_CHANGES[i][2]) for i in picked]
    wanted.append(("Env", "EC_SECOND=two"))
    missing = [f"{k}: {v!r}" for k, v in wanted if not config_has(config, k, v)]
    observe["config"] = {k: config.get(k) for k in ("Cmd", "Env", "ExposedPorts", "User",
                                                     "WorkingDir")}
    assert not missing, (
        f"{len(changes)} changes sent as repeated keys; not applied: {'; '.join(missing)}"
    )


ENCODED_CHANGES = {
    "documented-example": ("ENV DEBUG=true", "Env", "DEBUG=true"),
    "reserved-characters": ("ENV EC_URI=a&b=c%2Fd+e#f?g/h;i,\u00fc", "Env",
                            "EC_URI=a&b=c%2Fd+e#f?g/h;i,\u00fc"),
    "exec-form": ('CMD ["/bin/echo", "a&b=c d%e+f"]', "Cmd", ["/bin/echo", "a&b=c d%e+f"]),
}


@pytest.mark.requirement("IMPORT-010")
@pytest.mark.parametrize("case", sorted(ENCODED_CHANGES))
def test_encoded_change_arrives_intact(client, images, observe, case):
    change, key, expected = ENCODED_CHANGES[case]
    config, ex = import_with_changes(client, images, "imp-enc", [change])
    observe["request"] = ex.request_line
    observe[key] = config.get(key)
    assert config_has(config, key, expected), (
        f"changes={change!r} (URI-encoded on the wire): Config.{key} is {config.get(key)!r}, "
        f"expected {'to contain ' if key in MEMBER_KEYS else ''}{expected!r}"
    )


@pytest.mark.requirement("IMPORT-011")
def test_healthcheck_change(client, images, observe):
    config, _ = import_with_changes(client, images, "imp-health",
                                    ['HEALTHCHECK CMD ["/bin/ec-health"]'])
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
    name = images.name("imp-badchange")
    before = image_ids(client)
    ex = do_import(client, images, {"fromSrc": "-", "repo": name, "changes": change},
                   unique_rootfs(name))
    observe[change] = ex.status
    assert_refused_400(client, images, ex, before, name, f"changes={change!r}")


# -- archives -------------------------------------------------------------------------


@pytest.mark.requirement("IMPORT-015")
@pytest.mark.parametrize("compression", ["gz", "bz2", "xz"])
def test_compressed_archive_imports(client, images, observe, compression):
    name = images.name(f"imp-{compression}")
    tar = unique_rootfs(name)
    ex = do_import(client, images, {"fromSrc": "-", "repo": name},
                   archives.compress(tar, compression))
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


@pytest.mark.requirement("IMPORT-019")
def test_non_archive_body_fails(client, images, observe):
    name = images.name("imp-notar")
    before = image_ids(client)
    ex = do_import(client, images, {"fromSrc": "-", "repo": name},
                   b"engine-conformance: this is not an archive\n" * 16)
    observe["status"] = ex.status
    observe["stream_error"] = ex.stream_error
    assert_visible_failure(ex, "the body is not an archive")
    assert_nothing_created(client, images, before, [name], "the import failed")


# -- platform -----------------------------------------------------------------------------


@pytest.mark.requirement("IMPORT-016")
@pytest.mark.parametrize("form", ["os", "os/arch", "os/arch/variant"])
def test_platform_is_accepted_and_os_applied(client, images, target_info, observe, form):
    host_os = target_info.get("os") or "linux"
    arch, _ = other_arch(target_info.get("arch"))
    varch, variant = other_arch(target_info.get("arch"), variant=True)
    platform = {"os": host_os, "os/arch": f"{host_os}/{arch}",
                "os/arch/variant": f"{host_os}/{varch}/{variant}"}[form]
    name = images.name("imp-plat")
    ex = do_import(client, images, {"fromSrc": "-", "repo": name, "platform": platform},
                   unique_rootfs(name))
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
    ex = do_import(client, images, {"fromSrc": "-", "repo": name, "platform": platform},
                   unique_rootfs(name))
    assert_stream_success(ex)
    image = inspect_imported(client, name)
    got = (image.get("Os"), image.get("Architecture"), image.get("Variant") or None)
    observe[platform] = list(got)
    # Without a variant in platform, the engine may fill in the architecture's default.
    want = (host_os, arch, variant) if variant else (host_os, arch)
    assert got[:len(want)] == want, (
        f"platform={platform}: the image has Os/Architecture/Variant {got}, expected {want}"
    )


@pytest.mark.requirement("IMPORT-018")
@pytest.mark.parametrize("platform", ["not/a/platform/at/all", "lin ux!"])
def test_invalid_platform_is_refused(client, images, observe, platform):
    name = images.name("imp-badplat")
    before = image_ids(client)
    ex = do_import(client, images, {"fromSrc": "-", "repo": name, "platform": platform},
                   unique_rootfs(name))
    observe[platform] = ex.status
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
    precondition(asked or not failed(ex), f"the file server was never asked for {url} and "
                 f"the import failed ({where(ex)}): the engine could not reach it")
    assert ("GET", path, 200) in fetched, (
        f"the import of {url} answered {where(ex)}, but the engine never fetched that URL "
        f"(the file server saw {asked or 'nothing'})"
    )
    assert_stream_success(ex)
    inspect_imported(client, name)


@pytest.mark.requirement("IMPORT-021")
def test_url_404_fails(client, images, file_server, observe):
    name = images.name("imp-url404")
    url = file_server.missing("rootfs.tar")
    before = image_ids(client)
    ex = do_import(client, images, {"fromSrc": url, "repo": name})
    observe["file_server_saw"] = file_server_requests(file_server, url, "an import from a "
                                                      "URL that answers 404")
    observe["status"] = ex.status
    observe["stream_error"] = ex.stream_error
    assert_visible_failure(ex, f"fromSrc={url} answered 404")
    assert_nothing_created(client, images, before, [name], "the import from a 404 URL failed")
