"""Where the pull suites get their images: the lab registry, or one the user names.

    >>> with serve("ectest-1a2b3c", host="127.0.0.1", port=0) as reg:   # doctest: +SKIP
    ...     reg.reference("single", "v1")   # '127.0.0.1:PORT/ectest-1a2b3c/single:v1'
    ...     reg.catalogue.facts("single", "v1").image_id

The lab registry (``lab_registry``) is served in process, so the suite can read
its journal and inject faults. With ``--registry HOST:PORT`` the standard
catalogue is pushed to an external registry instead; checks that need the
journal or faults then skip, saying why.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from lab_registry import LabRegistry, standard
from lab_registry.catalogue import Catalogue
from lab_registry.push import push_catalogue


class ExternalRegistry:
    """The user's registry, loaded with the standard catalogue; no journal, no faults."""

    external = True

    def __init__(self, address: str, catalogue: Catalogue) -> None:
        self.address = address
        self.catalogue = catalogue

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def reference(self, repository: str, tag: str | None = None, digest: str | None = None) -> str:
        ref = f"{self.address}/{self.catalogue.full_name(repository)}"
        return ref + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")

    def reset(self) -> None:
        """Nothing to reset: an external registry has no faults or journal of ours."""


@contextmanager
def serve(
    prefix: str,
    host: str = "127.0.0.1",
    port: int = 0,
    external: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> Iterator[LabRegistry | ExternalRegistry]:
    """The registry for one run: the lab registry, or ``external`` loaded by push.

    ``tls`` (see :mod:`engine_conformance.engine.tls`) makes the lab registry HTTPS only;
    an external registry is the user's and is spoken to as it is (plain HTTP).
    """
    catalogue = standard(prefix)
    try:
        if external:
            with httpx.Client(base_url=f"http://{external}", timeout=60.0) as http:
                push_catalogue(http, catalogue)
            yield ExternalRegistry(external, catalogue)
            return
        with LabRegistry(catalogue, host=host, port=port, tls=tls) as registry:
            yield registry
    finally:
        catalogue.close()
