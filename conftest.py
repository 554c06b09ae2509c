"""Root conftest: loads the harness plugin so that plain ``pytest --target URL suites/`` works."""

pytest_plugins = ["engine_conformance.run.plugin"]
