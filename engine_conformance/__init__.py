"""Conformance harness for the Docker Engine API endpoint ``POST /images/create``.

Layers, each depending only on the ones above it::

    spec, stream, archives        no project imports
    target                        one client for any engine (unix, tcp, tls)
    requirements, report          the catalogue and what a run writes
    engines                       managed Docker and Podman in private directories
    plugin                        pytest integration: fixtures, verdicts, reports
    cli                           ``engine-conformance run | requirements``
"""

__version__ = "0.1.0"
