"""lab_registry: a small, fast OCI distribution registry (read side) for conformance tests.

    >>> from lab_registry import LabRegistry, standard, ErrorStatus
    >>> catalogue = standard("ectest-1a2b3c")
    >>> with LabRegistry(catalogue) as registry:                     # doctest: +SKIP
    ...     ref = registry.reference("single", "v1")    # '127.0.0.1:PORT/ectest-1a2b3c/single:v1'
    ...     # POST /images/create?fromImage=<ref without tag>&tag=v1 on an engine, then:
    ...     facts = catalogue.facts("single", "v1")
    ...     facts.image_id, facts.repo_digest, facts.os, facts.architecture
    ...     with registry.fault(ErrorStatus(503), repository=catalogue.name("single")):
    ...         ...                                      # every request there answers 503

Modules, one job each: ``images`` (deterministic building), ``catalogue``
(what is served, expected facts), ``server`` (HTTP, or HTTPS given ``tls=``),
``gohttp`` (protocol errors and TLS answered as Go's server answers them),
``journal``, ``faults``, ``auth`` (Basic), ``token`` (distribution's token
auth: Bearer challenges, the ``/token`` endpoint, JWTs), ``push`` and
``distribution`` (the real registry, for comparison).
"""

from lab_registry.auth import AuthRule, AuthTable, basic_header
from lab_registry.blobs import Blob, sha256_digest
from lab_registry.catalogue import Catalogue, ImageFacts, standard
from lab_registry.faults import (
    CorruptBlob,
    CutShort,
    ErrorStatus,
    Fault,
    FaultRule,
    FaultTable,
    Throttle,
    UnsupportedManifest,
)
from lab_registry.images import (
    Image,
    Index,
    Platform,
    build_image,
    build_index,
    build_large_image,
)
from lab_registry.journal import Journal, JournalEntry
from lab_registry.server import LabRegistry
from lab_registry.token import (
    TOKEN_PATH,
    Claims,
    InvalidToken,
    TokenAuth,
    TokenGrant,
    TokenRequest,
    TokenRule,
    TokenSigner,
    parse_scope,
)

__all__ = [
    "TOKEN_PATH",
    "AuthRule",
    "AuthTable",
    "Blob",
    "Catalogue",
    "Claims",
    "CorruptBlob",
    "CutShort",
    "ErrorStatus",
    "Fault",
    "FaultRule",
    "FaultTable",
    "Image",
    "ImageFacts",
    "Index",
    "InvalidToken",
    "Journal",
    "JournalEntry",
    "LabRegistry",
    "Platform",
    "Throttle",
    "TokenAuth",
    "TokenGrant",
    "TokenRequest",
    "TokenRule",
    "TokenSigner",
    "UnsupportedManifest",
    "basic_header",
    "build_image",
    "build_index",
    "build_large_image",
    "parse_scope",
    "sha256_digest",
    "standard",
]
