"""The lab registry's content as a small, deterministic, replayable description.

    >>> from lab_registry import LabRegistry, standard, ErrorStatus
    >>> from lab_registry import content
    >>> with LabRegistry(standard("ectest-1a2b3c")) as registry:       # doctest: +SKIP
    ...     before = content.snapshot(registry)          # cheap: take one per request
    ...     registry.fault(ErrorStatus(500), repository="ectest-1a2b3c/single")
    ...     after = content.snapshot(registry)
    ...     before == after                              # False: the lab changed
    ...     description = content.write(after, bundle)   # JSON-able; blobs under bundle/blobs
    >>> with content.serve(description, bundle) as again:                # doctest: +SKIP
    ...     again.address                                # the recorded port if it was free

``snapshot`` is an immutable value of what a registry serves: its cost grows
with what changed since the catalogue started (``standard(prefix)`` or empty),
not with the catalogue. ``write`` turns it into a description; ``load`` gives a
catalogue serving exactly that content and a function that applies the auth
rules, token auth and faults to a started registry; ``serve`` does both
(``start`` is its second half, for callers that load first; ``address`` the
recorded ``HOST:PORT``).

The description (``"format": 1``)::

    {
     "format": 1,
     "prefix": "ectest-1a2b3c",
     "standard": true,
     "registry": {"host": "127.0.0.1", "port": 41234, "tls": false},
     "removed": [{"repository": "ectest-1a2b3c/oci", "tag": "latest"}],
     "added": [
      {"repository": "ectest-1a2b3c/moving", "tag": "v1", "digest": "sha256:4e1f...",
       "image": {"manifest": {"digest": "sha256:4e1f...", "mediaType": "...", "size": 527},
                 "config": {...}, "layers": [{...}], "diff_ids": ["sha256:..."],
                 "platform": "linux/amd64"}},
      {"repository": "ectest-1a2b3c/both", "tag": "v1", "digest": "sha256:9c0d...",
       "index": {"manifest": {...}, "images": [{"manifest": {...}, ...}]}},
      {"repository": "ectest-1a2b3c/large", "tag": "v1", "digest": "sha256:77aa...",
       "large": {"size": 3145728, "seed": 7, "fmt": "docker", "compress": false}}
     ],
     "basic": [{"username": "ectest-user", "password": "pw", "repository": null, "realm": "lab"}],
     "token": {"rules": [{"repository": "ectest-1a2b3c/private", "users": {"alice": "pw"},
                          "refresh_tokens": {"identity-token": "alice"}, "public": false}],
               "issued_refresh_tokens": {}, "service": "lab-registry",
               "issuer": "lab-registry-token-issuer", "expires_in": 300, "realm": null,
               "header_keys": ["x5c", "kid"]},
     "faults": [{"type": "CutShort", "args": {"after_bytes": 1024}, "repository": null,
                 "prefix": "/v2/ectest-1a2b3c/single/blobs/", "kinds": ["blob", "manifest"],
                 "methods": ["GET", "HEAD"], "times": 1, "after": null},
                {"type": "ErrorStatus", "args": {"status": 404, "code": null, "message": null,
                 "retry_after": null, "realm": "lab", "delay": 0.0}, ..., "after": 0}]
    }

``standard`` true: the standard catalogue under ``prefix`` (its content does not
depend on the prefix), less ``removed``, plus ``added`` (which replaces a tag of
the same name). An added image or index names its blobs by digest: each is the
file ``blobs/<algo>/<hex>`` beside the description (manifests included), checked
on load. A ``large`` image is a recipe only: ``Catalogue.add_large`` makes the
same bytes again from ``size`` and ``seed``. ``token`` is null when token auth
was never configured. A fault's ``times`` is how many uses it had left,
``after`` the index in ``faults`` of the rule that must be spent first.

The lab's own test users, passwords and refresh tokens are written in full: they
are the lab's test data, never a user's secrets. Not described, because a replay
does not need them: the journal, the token signing key (a new registry signs
with a new key, so previously issued access tokens are not accepted; clients
ask again) and TLS material (``tls`` only says whether it was on: ``serve``
takes the server context to use). A fault of a type other than the five of
``lab_registry.faults`` makes ``write`` raise ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import ssl
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab_registry.blobs import Blob
from lab_registry.catalogue import Catalogue, LargeRecipe, standard
from lab_registry.faults import (
    CorruptBlob,
    CutShort,
    ErrorStatus,
    Fault,
    FaultRule,
    Throttle,
    UnsupportedManifest,
)
from lab_registry.images import Artifact, Image, Index, Platform
from lab_registry.server import LabRegistry
from lab_registry.token import DEFAULT_EXPIRES_IN, DEFAULT_ISSUER, DEFAULT_SERVICE

FORMAT = 1
#: The fault types a description can hold, by the name it gives them.
FAULT_TYPES: dict[str, type] = {
    cls.__name__: cls for cls in (ErrorStatus, Throttle, CutShort, CorruptBlob, UnsupportedManifest)
}
_DEFAULT_HEADER_KEYS = ("x5c", "kid")
# Blobs at most this big are loaded into memory; bigger ones are served from their file.
_IN_MEMORY = 1 << 20


# --- the snapshot ------------------------------------------------------------------------


@dataclass(frozen=True)
class Added:
    """A tag served beyond (or instead of) the standard catalogue's.

    Compared by digest and recipe, never by bytes; ``artifact`` is the object served.
    """

    repository: str
    tag: str
    digest: str
    recipe: LargeRecipe | None = None
    artifact: Artifact | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class BasicRule:
    """A Basic auth rule in force."""

    username: str
    password: str = field(repr=False)
    repository: str | None = None
    realm: str = "lab"


@dataclass(frozen=True)
class TokenRuleState:
    """A token auth rule in force (users and refresh tokens as sorted pairs)."""

    repository: str | None
    users: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    refresh_tokens: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    public: bool = False


@dataclass(frozen=True)
class TokenState:
    """Token auth: its rules, the refresh tokens handed out, and the issuer's settings."""

    rules: tuple[TokenRuleState, ...] = ()
    issued_refresh_tokens: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    service: str = DEFAULT_SERVICE
    issuer: str = DEFAULT_ISSUER
    expires_in: int = DEFAULT_EXPIRES_IN
    realm: str | None = None
    header_keys: tuple[str, ...] = _DEFAULT_HEADER_KEYS


_NO_TOKENS = TokenState()


@dataclass(frozen=True)
class FaultState:
    """A fault rule in force: the fault, where it applies, uses left, what it waits for."""

    fault: Fault
    repository: str | None = None
    prefix: str | None = None
    kinds: frozenset[str] = frozenset()
    methods: frozenset[str] = frozenset()
    times: int | None = None  # uses left; None: unlimited
    after: int | None = None  # index (in Snapshot.faults) of the rule to be spent first


@dataclass(frozen=True)
class Snapshot:
    """What a lab registry serves at one moment; equal snapshots serve the same."""

    prefix: str
    standard: bool
    added: tuple[Added, ...] = ()
    removed: tuple[tuple[str, str], ...] = ()
    basic: tuple[BasicRule, ...] = ()
    token: TokenState = _NO_TOKENS
    faults: tuple[FaultState, ...] = ()
    tls: bool = False
    host: str | None = None
    port: int | None = None


def snapshot(registry: LabRegistry) -> Snapshot:
    """The registry's content now: O(changes since its catalogue started), no bytes copied."""
    catalogue = registry.catalogue
    added: list[Added] = []
    removed: list[tuple[str, str]] = []
    for repository, tag, artifact in catalogue.changes():
        if artifact is None:
            removed.append((repository, tag))
        else:
            recipe = catalogue.large_recipe(artifact.digest)
            added.append(Added(repository, tag, artifact.digest, recipe, artifact))
    basic = tuple(
        BasicRule(r.username, r.password, r.repository, r.realm) for r in registry.auth.rules()
    )
    host = port = None
    if registry.running:
        try:
            host, port = registry.host, registry.port
        except RuntimeError:  # stopped between the two looks
            host = port = None
    return Snapshot(
        prefix=catalogue.prefix,
        standard=catalogue.is_standard,
        added=tuple(added),
        removed=tuple(removed),
        basic=basic,
        token=_token_state(registry),
        faults=_fault_states(registry.faults.rules_and_hits()),
        tls=registry.tls is not None,
        host=host,
        port=port,
    )


def _token_state(registry: LabRegistry) -> TokenState:
    tokens = registry.tokens
    rules = tuple(
        TokenRuleState(
            r.repository,
            tuple(sorted(r.users.items())),
            tuple(sorted(r.refresh_tokens.items())),
            r.public,
        )
        for r in tokens.rules()
    )
    issued = tokens.issued_refresh_tokens()
    state = TokenState(
        rules=rules,
        issued_refresh_tokens=tuple(sorted(issued.items())) if issued else (),
        service=tokens.service,
        issuer=tokens.issuer,
        expires_in=tokens.expires_in,
        realm=tokens.realm,
        header_keys=tuple(tokens.header_keys),
    )
    return _NO_TOKENS if state == _NO_TOKENS else state


def _fault_states(rules: list[tuple[FaultRule, int]]) -> tuple[FaultState, ...]:
    index = {id(rule): n for n, (rule, _) in enumerate(rules)}
    never = -1

    def waits_for(rule: FaultRule) -> int | None:
        """The index of the rule it waits for, None for none, ``never`` if it cannot apply."""
        after = rule.after
        if after is None or after.spent:
            return None
        if id(after) in index and waits_for(after) != never:
            return index[id(after)]
        return never  # it waits for a rule removed unspent: it never applies

    kept = [(rule, hits, waits_for(rule)) for rule, hits in rules]
    kept = [k for k in kept if k[2] != never]
    # Rules that never apply are left out, so indexes are renumbered among those kept.
    renumber = {index[id(rule)]: i for i, (rule, _, _) in enumerate(kept)}
    return tuple(
        FaultState(
            fault=rule.fault,
            repository=rule.repository,
            prefix=rule.prefix,
            kinds=rule.kinds,
            methods=rule.methods,
            times=None if rule.times is None else max(rule.times - hits, 0),
            after=None if after is None else renumber[after],
        )
        for rule, hits, after in kept
    )


# --- writing -----------------------------------------------------------------------------


def write(snap: Snapshot, directory: Path) -> dict[str, Any]:
    """The description of ``snap``; blobs of added (non-large) artifacts go to ``directory/blobs``.

    Raises ``ValueError`` for a fault no description can hold (not one of ``FAULT_TYPES``).
    """
    directory = Path(directory)
    faults = [_describe_fault(f) for f in snap.faults]  # fails before any file is written
    added = []
    for entry in snap.added:
        item: dict[str, Any] = {
            "repository": entry.repository,
            "tag": entry.tag,
            "digest": entry.digest,
        }
        if entry.recipe is not None:
            item["large"] = dataclasses.asdict(entry.recipe)
        elif isinstance(entry.artifact, Index):
            item["index"] = {
                "manifest": _write_blob(entry.artifact.manifest, directory),
                "images": [_describe_image(i, directory) for i in entry.artifact.images],
            }
        elif isinstance(entry.artifact, Image):
            item["image"] = _describe_image(entry.artifact, directory)
        else:
            raise ValueError(f"{entry.repository}:{entry.tag} has no artifact to describe")
        added.append(item)
    return {
        "format": FORMAT,
        "prefix": snap.prefix,
        "standard": snap.standard,
        "registry": {"host": snap.host, "port": snap.port, "tls": snap.tls},
        "removed": [{"repository": r, "tag": t} for r, t in snap.removed],
        "added": added,
        "basic": [dataclasses.asdict(rule) for rule in snap.basic],
        "token": None if snap.token == _NO_TOKENS else _describe_tokens(snap.token),
        "faults": faults,
    }


def _describe_image(image: Image, directory: Path) -> dict[str, Any]:
    return {
        "manifest": _write_blob(image.manifest, directory),
        "config": _write_blob(image.config, directory),
        "layers": [_write_blob(layer, directory) for layer in image.layers],
        "diff_ids": list(image.diff_ids),
        "platform": str(image.platform),
    }


def blob_path(directory: Path, digest: str) -> Path:
    """Where a description's blob lives: ``directory/blobs/<algo>/<hex>``."""
    algo, sep, hexdigest = digest.partition(":")
    if not sep or not algo.isalnum() or not hexdigest.isalnum():
        raise ValueError(f"not a digest: {digest!r}")
    return Path(directory) / "blobs" / algo / hexdigest


def _write_blob(blob: Blob, directory: Path) -> dict[str, Any]:
    target = blob_path(directory, blob.digest)
    if not target.exists():  # content-addressed: an existing file already holds these bytes
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        if blob.path is not None:
            shutil.copyfile(blob.path, partial)
        else:
            partial.write_bytes(blob.read())
        os.replace(partial, target)
    return {"digest": blob.digest, "mediaType": blob.media_type, "size": blob.size}


def _describe_tokens(token: TokenState) -> dict[str, Any]:
    return {
        "rules": [
            {
                "repository": r.repository,
                "users": dict(r.users),
                "refresh_tokens": dict(r.refresh_tokens),
                "public": r.public,
            }
            for r in token.rules
        ],
        "issued_refresh_tokens": dict(token.issued_refresh_tokens),
        "service": token.service,
        "issuer": token.issuer,
        "expires_in": token.expires_in,
        "realm": token.realm,
        "header_keys": list(token.header_keys),
    }


def _describe_fault(state: FaultState) -> dict[str, Any]:
    fault = state.fault
    name = type(fault).__name__
    if FAULT_TYPES.get(name) is not type(fault):
        known = ", ".join(FAULT_TYPES)
        raise ValueError(f"cannot describe fault {fault!r}: a description holds only {known}")
    args = dataclasses.asdict(fault)
    for key, value in args.items():
        if value is not None and not isinstance(value, str | int | float | bool):
            raise ValueError(f"cannot describe fault {name}: {key}={value!r} is not a JSON value")
    return {
        "type": name,
        "args": args,
        "repository": state.repository,
        "prefix": state.prefix,
        "kinds": sorted(state.kinds),
        "methods": sorted(state.methods),
        "times": state.times,
        "after": state.after,
    }


# --- loading -----------------------------------------------------------------------------


def load(
    description: Mapping[str, Any], directory: Path
) -> tuple[Catalogue, Callable[[LabRegistry], None]]:
    """A catalogue serving the description's content, and what applies its auth and faults.

    ``directory`` holds ``blobs/``. Raises ``ValueError`` for a malformed description, a
    missing blob or one whose bytes do not match its digest. Close the catalogue when done
    (large images live in its work directory).
    """
    if not isinstance(description, Mapping):
        raise ValueError("a description is a JSON object")
    if description.get("format") != FORMAT:
        raise ValueError(f"unknown description format {description.get('format')!r}, not {FORMAT}")
    try:
        apply = _applier(description)
        catalogue = _catalogue(description, Path(directory))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed description: {type(exc).__name__}: {exc}") from None
    return catalogue, apply


def _catalogue(description: Mapping[str, Any], directory: Path) -> Catalogue:
    prefix = description.get("prefix") or ""
    catalogue = standard(prefix) if description.get("standard") else Catalogue(prefix)
    try:
        for entry in description.get("removed") or []:
            catalogue.remove(entry["repository"], entry["tag"])
        large: dict[LargeRecipe, Image] = {}  # one build for a recipe served under two names
        for entry in description.get("added") or []:
            repository, tag, digest = entry["repository"], entry["tag"], entry["digest"]
            artifact: Artifact
            if "large" in entry:
                recipe = LargeRecipe(**entry["large"])
                if recipe in large:
                    artifact = catalogue.add(repository, tag, large[recipe])
                else:
                    artifact = catalogue.add_large(
                        repository, tag, recipe.size, seed=recipe.seed, fmt=recipe.fmt,
                        compress=recipe.compress,
                    )  # fmt: skip
                    large[recipe] = artifact
            elif "index" in entry:
                index = entry["index"]
                images = tuple(_load_image(i, directory) for i in index["images"])
                artifact = Index(_load_blob(index["manifest"], directory), images)
            else:
                artifact = _load_image(entry["image"], directory)
            if artifact.digest != digest:
                raise ValueError(
                    f"{repository}:{tag} is {artifact.digest} once rebuilt, not {digest}"
                )
            catalogue.add(repository, tag, artifact)
    except BaseException:
        catalogue.close()
        raise
    return catalogue


def _load_image(doc: Mapping[str, Any], directory: Path) -> Image:
    return Image(
        manifest=_load_blob(doc["manifest"], directory),
        config=_load_blob(doc["config"], directory),
        layers=tuple(_load_blob(layer, directory) for layer in doc["layers"]),
        diff_ids=tuple(doc["diff_ids"]),
        platform=Platform.parse(doc["platform"]),
    )


def _load_blob(doc: Mapping[str, Any], directory: Path) -> Blob:
    digest, media_type = doc["digest"], doc["mediaType"]
    path = blob_path(directory, digest)
    algo, _, hexdigest = digest.partition(":")
    if algo not in hashlib.algorithms_guaranteed:
        raise ValueError(f"blob {digest}: unknown digest algorithm {algo!r}")
    try:
        size = path.stat().st_size
        h = hashlib.new(algo)
        data = b""
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                if size <= _IN_MEMORY:
                    data += chunk
    except OSError as exc:
        raise ValueError(f"blob {digest}: cannot read {path}: {exc.strerror or exc}") from None
    if h.hexdigest() != hexdigest:
        raise ValueError(f"blob {digest}: {path} holds other bytes")
    if size <= _IN_MEMORY:
        return Blob(digest, size, media_type, data=data)
    return Blob(digest, size, media_type, path=path)


def _applier(description: Mapping[str, Any]) -> Callable[[LabRegistry], None]:
    basic = [BasicRule(**rule) for rule in description.get("basic") or []]
    token = description.get("token")
    faults = [_load_fault(doc) for doc in description.get("faults") or []]
    for n, (_, where) in enumerate(faults):
        after = where.get("after")
        if after is not None and not (isinstance(after, int) and 0 <= after < n):
            raise ValueError(f"fault {n} waits for fault {after!r}, which is not before it")

    def apply(registry: LabRegistry) -> None:
        for rule in basic:
            registry.require_auth(rule.username, rule.password, rule.repository, rule.realm)
        if token is not None:
            tokens = registry.tokens
            for rule in token.get("rules") or []:
                registry.require_token_auth(
                    rule.get("repository"),
                    users=dict(rule.get("users") or {}),
                    refresh_tokens=dict(rule.get("refresh_tokens") or {}),
                    public=bool(rule.get("public")),
                )
            for refresh, subject in (token.get("issued_refresh_tokens") or {}).items():
                tokens.accept_refresh_token(refresh, subject)
            tokens.service = token.get("service", DEFAULT_SERVICE)
            tokens.issuer = token.get("issuer", DEFAULT_ISSUER)
            tokens.expires_in = int(token.get("expires_in", DEFAULT_EXPIRES_IN))
            tokens.realm = token.get("realm")
            tokens.header_keys = tuple(token.get("header_keys") or _DEFAULT_HEADER_KEYS)
        added: list[FaultRule] = []
        for fault, where in faults:
            after = where["after"]
            scope = {k: v for k, v in where.items() if k != "after"}
            added.append(
                registry.fault(fault, after=None if after is None else added[after], **scope)
            )

    return apply


def _load_fault(doc: Mapping[str, Any]) -> tuple[Fault, dict[str, Any]]:
    cls = FAULT_TYPES.get(doc["type"])
    if cls is None:
        raise ValueError(f"unknown fault type {doc['type']!r} (known: {', '.join(FAULT_TYPES)})")
    fault = cls(**(doc.get("args") or {}))
    where = {
        "repository": doc.get("repository"),
        "prefix": doc.get("prefix"),
        "kinds": list(doc["kinds"]),
        "methods": list(doc["methods"]),
        "times": doc.get("times"),
        "after": doc.get("after"),
    }
    return fault, where


# --- serving -----------------------------------------------------------------------------


def address(description: Mapping[str, Any]) -> str:
    """The recorded ``"HOST:PORT"`` (``"[::1]:PORT"`` for IPv6; port 0 if none was recorded).

    >>> address({"format": 1, "registry": {"host": "127.0.0.1", "port": 41234, "tls": False}})
    '127.0.0.1:41234'
    """
    recorded = description.get("registry") or {}
    host = recorded.get("host") or "127.0.0.1"
    port = recorded.get("port") or 0
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def start(
    catalogue: Catalogue,
    apply: Callable[[LabRegistry], None],
    description: Mapping[str, Any],
    host: str = "127.0.0.1",
    port: int | None = None,
    tls: ssl.SSLContext | None = None,
) -> LabRegistry:
    """A started registry serving ``catalogue`` with ``apply`` applied.

    ``port`` None: the description's port if it is free, else a free one. Raises
    ``OSError`` if ``host`` (or an explicit ``port``) cannot be bound.
    """
    recorded = (description.get("registry") or {}).get("port")
    registry: LabRegistry | None = None
    if port is None and isinstance(recorded, int) and recorded > 0:
        try:
            registry = LabRegistry(catalogue, host, recorded, tls).start()
        except OSError:
            registry = None
    if registry is None:
        registry = LabRegistry(catalogue, host, port or 0, tls).start()
    try:
        apply(registry)
    except BaseException:
        registry.stop()
        raise
    return registry


@contextmanager
def serve(
    description: Mapping[str, Any],
    directory: Path,
    host: str = "127.0.0.1",
    port: int | None = None,
    tls: ssl.SSLContext | None = None,
) -> Iterator[LabRegistry]:
    """A started registry with exactly the description's content; stopped on exit.

    ``port`` None: the recorded port if free, else a free one (read ``registry.port``).
    Without ``tls`` it serves plain HTTP, whatever the description says.
    """
    catalogue, apply = load(description, directory)
    try:
        registry = start(catalogue, apply, description, host, port, tls)
        try:
            yield registry
        finally:
            registry.stop()
    finally:
        catalogue.close()
