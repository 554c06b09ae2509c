"""The one target client: parsing, environment, negotiation, TLS, timeouts."""

from __future__ import annotations

import pytest

from deviant_proxy import DeviantProxy, Deviation, Response
from engine_conformance.engines import ManagedDocker
from engine_conformance.runner import run_suite
from engine_conformance.target import Client, Target, TargetError, Timeouts, UsageError


@pytest.mark.parametrize(
    ("spec", "url", "uds"),
    [
        ("unix:///run/x.sock", "unix:///run/x.sock", "/run/x.sock"),
        ("/run/x.sock", "unix:///run/x.sock", "/run/x.sock"),
        ("tcp://10.1.2.3:2375", "http://10.1.2.3:2375", None),
        ("tcp://engine", "http://engine:2375", None),
        ("http://127.0.0.1:80", "http://127.0.0.1:80", None),
        ("tcp://[::1]:2375", "http://[::1]:2375", None),
    ],
)
def test_parse(spec, url, uds):
    target = Target.parse(spec, env={})
    assert (target.url, target.uds) == (url, uds)


@pytest.mark.parametrize("spec", ["ftp://x", "unix://", "tcp://", "tcp://h:notaport"])
def test_parse_refuses_nonsense(spec):
    with pytest.raises(UsageError):
        Target.parse(spec, env={})


def test_default_prefers_docker_host(tmp_path):
    assert Target.default({"DOCKER_HOST": "tcp://h:1"}).url == "http://h:1"


def test_tls_from_environment_needs_certificates(tmp_path):
    with pytest.raises(UsageError, match="lacks"):
        Target.parse("tcp://h:2376", env={"DOCKER_TLS_VERIFY": "1",
                                           "DOCKER_CERT_PATH": str(tmp_path)})


def test_negotiates_the_lower_of_spec_and_engine(docker):
    with Client(Target.parse(docker.target)) as client:
        assert client.negotiate() == "1.41"  # Docker 20.10's maximum, below the spec's 1.44


def test_negotiation_never_exceeds_the_spec_version(docker):
    newer = Deviation(
        "newer-engine",
        match=lambda req: req.path == "/version",
        response=lambda req, resp: Response.json(200, resp_json(resp) | {"ApiVersion": "1.50"}),
    )
    with DeviantProxy(docker.target, [newer]) as proxy, Client(Target.parse(proxy.target)) as c:
        assert c.negotiate() == "1.44"


def resp_json(resp: Response) -> dict:
    import json

    return json.loads(resp.body)


def test_pinned_version_is_used(docker):
    with Client(Target.parse(docker.target), api_version="1.30") as client:
        client.negotiate()
        ex = client.request("GET", "/_ping")
    assert ex.path == "/v1.30/_ping"


def test_docker_api_version_environment_pins_the_suite(docker, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_API_VERSION", "1.40")
    out = run_suite(docker.target, tmp_path, requirements=["ERRORS-003"])
    assert out.results["target"]["api_version"] == "1.40", out.output[-2000:]


def test_unreachable_target_is_an_error_not_a_traceback(tmp_path):
    with Client(Target.parse(f"unix://{tmp_path}/none.sock")) as client:
        with pytest.raises(TargetError, match="cannot reach"):
            client.negotiate()


def test_hung_engine_gives_an_error(docker):
    hang = Deviation("hang", hang=True)
    with DeviantProxy(docker.target, [hang]) as proxy:
        with Client(Target.parse(proxy.target), timeouts=Timeouts(read=1.0)) as client:
            client.negotiate()
            with pytest.raises(TargetError, match="did not answer"):
                client.create_image({"fromImage": "x"})


def test_hung_engine_is_an_error_verdict_not_a_fail(docker, tmp_path):
    hang = Deviation("hang", hang=True)
    with DeviantProxy(docker.target, [hang]) as proxy:
        out = run_suite(proxy.target, tmp_path, requirements=["ERRORS-003"],
                        extra=["--request-timeout", "1"])
    assert out.verdict("ERRORS-003") == "error", out.output[-2000:]


@pytest.fixture(scope="module")
def tls_docker():
    engine = ManagedDocker(tls=True)
    if not engine.available():
        pytest.skip("dockerd is not installed")
    with engine:
        yield engine


def test_mutual_tls(tls_docker, tmp_path):
    env = {"DOCKER_CERT_PATH": tls_docker.cert_path, "DOCKER_TLS_VERIFY": "1"}
    target = Target.parse(tls_docker.tls_target.replace("https", "tcp"), env=env)
    with Client(target) as client:
        assert client.negotiate() == "1.41"
    out = run_suite(target.url, tmp_path, requirements=["ERRORS-003"],
                    env=_env(env))
    assert out.verdict("ERRORS-003") == "pass", out.output[-2000:]


def test_tls_without_client_certificate_is_refused(tls_docker, tmp_path):
    import shutil
    from pathlib import Path

    only_ca = tmp_path / "certs"
    only_ca.mkdir()
    shutil.copy(Path(tls_docker.cert_path) / "ca.pem", only_ca / "ca.pem")
    from engine_conformance.target import TLS

    target = Target(url=tls_docker.tls_target, base_url=tls_docker.tls_target,
                    tls=TLS(ca=str(only_ca / "ca.pem")))
    with Client(target) as client, pytest.raises(TargetError):
        client.negotiate()


def _env(extra: dict) -> dict:
    import os

    return dict(os.environ) | extra
