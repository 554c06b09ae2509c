"""Conformance harness for the Docker Engine API endpoint ``POST /images/create``.

Six layers, each importing only its own and the ones above it here
(``tests/test_layers.py`` keeps it so)::

    base        paths, exit codes, API versions, the stream parser, archives, redaction
    engine      one client for any target; what an engine is; managed, rootless and
                namespaced engines; TLS; the file server the engine is sent to
    catalogue   the requirements, the spec fragment, the Engine API documents,
                the expectation files
    judge       where a verdict is made: verdict rules, checks' helpers, clean-up,
                the preflight, the property phase, reproducers and bundles
    reports     what a run writes: results.json, junit.xml, report.html, summary.md,
                findings.md, the comparison, the API-version axis
    run         the command, the pytest plugin, the child run, doctor, replay
"""

__version__ = "0.1.0"
