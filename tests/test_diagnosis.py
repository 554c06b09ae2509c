"""The preflight's diagnosis: each cause and engine kind gets its own fix.

The engine answers below are the real ones, as Docker 20.10/26.1 and Podman 4.3
gave them here (what the preflight puts in its reason as ``it answered …``).
"""

from __future__ import annotations

import pytest

from engine_conformance.judge.diagnosis import (
    KINDS,
    Setup,
    cause,
    engine_kind,
    file_server_steps,
    numbered,
    registry_steps,
)

REFUSED = (
    'HTTP 500 \'Get "http://127.0.0.1:40081/v2/": dial tcp 127.0.0.1:40081: connect: '
    "connection refused'"
)
PLAIN = (
    "HTTP 500 'Get \"https://10.0.0.2:5000/v2/\": http: server gave HTTP response to HTTPS client'"
)
PODMAN_PLAIN = (
    "HTTP 200 with the stream error 'initializing source docker://127.0.0.1:5000/x:"
    'canary: pinging container registry 127.0.0.1:5000: Get "https://127.0.0.1:5000'
    "/v2/\": http: server gave HTTP response to HTTPS client'"
)
UNTRUSTED = (
    'HTTP 500 \'Get "https://10.0.0.2:5000/v2/": tls: failed to verify certificate: '
    "x509: certificate signed by unknown authority'"
)
HUNG = (
    "unix:///tmp/ec-docker-x/docker.sock did not answer POST /v1.41/images/create?"
    "fromImage=… in time (ReadTimeout)"
)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (REFUSED, "unreachable"),
        (PLAIN, "plain-http"),
        (PODMAN_PLAIN, "plain-http"),
        (UNTRUSTED, "untrusted"),
        ("HTTP 500 'dial tcp 10.0.0.2:5000: connect: no route to host'", "unreachable"),
        ("HTTP 500 'dial tcp 10.0.0.2:5000: i/o timeout'", "unreachable"),
        ("HTTP 404 'manifest unknown'", "other"),
    ],
)
def test_the_cause_is_read_from_the_engine_answer(answer, expected):
    assert cause(answer) == expected


def test_no_answer_at_all_is_a_hang_or_unknown_never_the_registry():
    assert cause(HUNG, answered=False) == "hung"
    assert cause("cannot reach unix:///x.sock: connection refused", answered=False) == "other"


@pytest.mark.parametrize(
    ("info", "kind"),
    [
        ({"engine": "docker"}, "docker"),
        (
            {
                "engine": "docker",
                "security_options": ["name=seccomp,profile=builtin", "name=rootless"],
            },
            "docker-rootless",
        ),
        ({"engine": "docker", "operating_system": "Docker Desktop"}, "docker-desktop"),
        ({"engine": "podman", "operating_system": "debian"}, "podman"),
        ({"engine": "podman", "security_options": ["name=rootless"]}, "podman-rootless"),
        # Rootless Podman 4.3's compatible /info says only seccomp; its libpod /info says rootless.
        (
            {
                "engine": "podman",
                "security_options": ["name=seccomp,profile=default"],
                "rootless": True,
            },
            "podman-rootless",
        ),
        (
            {
                "engine": "podman",
                "security_options": ["name=seccomp,profile=default"],
                "rootless": False,
            },
            "podman",
        ),
        # A Podman machine's compatible /info says "fedora" (host.distribution.distribution),
        # as a Fedora workstation's does: only its libpod /info's variant says CoreOS.
        (
            {"engine": "podman", "operating_system": "fedora", "distribution_variant": "coreos"},
            "podman-machine",
        ),
        (
            {
                "engine": "podman",
                "operating_system": "fedora",
                "distribution_variant": "workstation",
            },
            "podman",
        ),
        ({"engine": "podman", "operating_system": "fedora"}, "podman"),
    ],
)
def test_the_engine_kind_comes_from_its_own_answers(info, kind):
    assert engine_kind(info).name == kind


def setup(**kw) -> Setup:
    return Setup(
        **(
            {
                "serve_host": "127.0.0.1",
                "registry_port": 40081,
                "local_addresses": ("192.0.2.10",),
                "timeout": 60.0,
            }
            | kw
        )
    )


def test_refused_on_loopback_means_serve_host_not_insecure_registries():
    steps = registry_steps("unreachable", KINDS["docker"], setup())
    assert "not on this machine's network" in steps[0] and "--serve-host ADDRESS" in steps[0]
    assert "192.0.2.10" in steps[0] and "--registry-port 40081" in steps[0]
    # Then the non-loopback address must be usable: plain HTTP declared, or the CA placed.
    assert '"insecure-registries": ["192.0.2.10:40081"]' in steps[1]
    assert "/etc/docker/certs.d/192.0.2.10:40081/ca.crt" in steps[1]
    assert '"insecure-registries": ["127.0.0.1' not in numbered(steps)


def test_rootless_docker_is_pointed_at_its_own_config():
    steps = registry_steps("unreachable", KINDS["docker-rootless"], setup())
    assert "~/.config/docker/daemon.json" in steps[1]
    assert "~/.config/docker/certs.d/192.0.2.10:40081/ca.crt" in steps[1]
    assert "systemctl --user restart docker" in steps[1]


@pytest.mark.parametrize(
    ("kind", "alias"),
    [("docker-desktop", "host.docker.internal"), ("podman-machine", "host.containers.internal")],
)
@pytest.mark.parametrize("serve_host", ["127.0.0.1", "0.0.0.0"])
def test_vm_engines_are_given_an_address_of_this_machine_never_their_alias(kind, alias, serve_host):
    # --serve-host is also what the engine is sent to: with 0.0.0.0 the VM dials its own
    # 0.0.0.0 (refused), and this machine cannot listen on the VM's alias for it
    # (tests/test_vm_engines.py follows both ways).
    steps = registry_steps("unreachable", KINDS[kind], setup(serve_host=serve_host))
    assert steps[0].startswith(f"{KINDS[kind].label} runs in a VM")
    assert "--serve-host ADDRESS and a fixed --registry-port 40081" in steps[0]
    assert "(this machine's: 192.0.2.10)" in steps[0]
    assert f"not 0.0.0.0 nor {alias}" in steps[0]
    assert "192.0.2.10:40081" in steps[1]
    assert "--serve-host 0.0.0.0" not in numbered(steps) and f"{alias}:" not in numbered(steps)
    several = registry_steps(
        "unreachable", KINDS[kind], setup(local_addresses=("192.0.2.10", "198.51.100.7"))
    )
    assert "ADDRESS:40081" in several[1] and "192.0.2.10:40081" not in several[1]


def test_a_podman_machine_s_ca_goes_inside_the_machine():
    steps = registry_steps("plain-http", KINDS["podman-machine"], setup())
    assert (
        "copy DIR/ca.crt to /etc/containers/certs.d/192.0.2.10:40081/ca.crt inside the "
        "machine (podman machine ssh) (read at each pull, no restart)"
    ) in steps[-1]


def test_plain_http_on_podman_names_registries_conf_and_restart():
    steps = registry_steps("plain-http", KINDS["podman"], setup())
    assert len(steps) == 1
    assert '[[registry]] location = "127.0.0.1:40081" insecure = true' in steps[0]
    assert "/etc/containers/registries.conf" in steps[0] and "restart its service" in steps[0]
    rootless = registry_steps("plain-http", KINDS["podman-rootless"], setup())[0]
    assert "~/.config/containers/registries.conf" in rootless


def test_untrusted_ca_names_the_certs_d_place_and_a_lasting_tls_dir():
    steps = registry_steps(
        "untrusted", KINDS["docker"], setup(serve_host="192.0.2.10", serving_tls=True)
    )
    assert "copy DIR/ca.crt to /etc/docker/certs.d/192.0.2.10:40081/ca.crt" in steps[0]
    assert "--tls-dir" in steps[1]
    kept = registry_steps(
        "untrusted",
        KINDS["docker"],
        setup(serve_host="192.0.2.10", serving_tls=True, tls_dir="/srv/ec-tls"),
    )
    assert kept == [kept[0]] and "/srv/ec-tls/ca.crt" in kept[0]


def test_a_hung_engine_is_said_to_have_hung_and_nothing_learned():
    (step,) = registry_steps("hung", KINDS["docker"], setup())
    assert "did not answer the canary request within 60 s" in step
    assert "nothing about its reach" in step and "insecure" not in step


def test_remote_target_with_loopback_serving_is_told_to_serve_host():
    steps = registry_steps("other", KINDS["docker"], setup(remote=True))
    assert "--serve-host ADDRESS" in steps[0]


def test_file_server_steps():
    assert (
        "--file-server-port"
        in file_server_steps("unreachable", KINDS["docker"], setup(file_server_port=40082))[0]
    )
    trust = file_server_steps("untrusted", KINDS["docker"], setup(tls_dir="/srv/ec-tls"))
    assert "update-ca-certificates" in trust[0] and "/srv/ec-tls/ca.crt" in trust[0]


@pytest.mark.parametrize("kind", ["podman", "podman-rootless", "podman-machine"])
def test_the_podman_entry_is_given_as_the_lines_to_write(kind):
    # As one line, [[registry]] location = … insecure = true is not TOML: every pull then
    # fails ("expected a top-level item to end with a newline"). The step names the lines.
    import re
    import tomllib

    step = registry_steps("plain-http", KINDS[kind], setup())[-1]
    # A VM's 127.0.0.1 is its own: its entry names this machine's one address.
    address = "192.0.2.10:40081" if kind == "podman-machine" else "127.0.0.1:40081"
    lines = re.search(r"as three lines: `([^`]+)`, `([^`]+)`, `([^`]+)`", step)
    assert lines, step
    assert tomllib.loads("\n".join(lines.groups())) == {
        "registry": [{"location": address, "insecure": True}]
    }


def test_rootless_podman_is_told_its_own_file_replaces_the_system_one():
    (step,) = registry_steps("plain-http", KINDS["podman-rootless"], setup())
    assert "read instead of /etc/containers/registries.conf" in step
    assert "read instead of" not in registry_steps("plain-http", KINDS["podman"], setup())[0]


def test_with_several_addresses_the_steps_name_the_one_chosen():
    # Step 1 lets the user pick ADDRESS; the steps after it must not name another one.
    steps = registry_steps(
        "unreachable",
        KINDS["docker-rootless"],
        setup(local_addresses=("192.0.2.10", "198.51.100.7")),
    )
    assert "192.0.2.10, 198.51.100.7" in steps[0] and "--serve-host ADDRESS" in steps[0]
    assert '"insecure-registries": ["ADDRESS:40081"]' in steps[1]
    assert "~/.config/docker/certs.d/ADDRESS:40081/ca.crt" in steps[1]
    assert "192.0.2.10:40081" not in numbered(steps)
    moved = registry_steps(
        "unreachable",
        KINDS["docker"],
        setup(serve_host="192.0.2.10", local_addresses=("192.0.2.10", "198.51.100.7")),
    )
    assert "--serve-host ADDRESS" in moved[0] and "another address" in moved[0]
    assert '"insecure-registries": ["ADDRESS:40081"]' in moved[1]


@pytest.mark.parametrize("kind", ["docker", "docker-rootless", "docker-desktop"])
def test_the_docker_entry_says_how_it_goes_into_daemon_json(kind):
    # daemon.json is one JSON object, and Debian's docker.io ships none: the key alone,
    # written as the new file, stops dockerd ("cannot unmarshal string into Go value").
    import json
    import re

    step = registry_steps("plain-http", KINDS[kind], setup())[-1]
    address = re.search(r'add "insecure-registries": \["([^"]+)"\]', step)[1]
    assert address.endswith(":40081")
    new = re.search(r"a file that is missing or empty becomes (\{.*?\});", step)
    assert new, step
    assert json.loads(new[1]) == {"insecure-registries": [address]}
    assert f'where the key is there already, "{address}" joins its list' in step
    # The note follows the restart and the port: the step still reads as before up to there.
    assert re.search(
        r'add "insecure-registries": \["[^"]+"\] to .+, then .+, and keep the port '
        r"with --registry-port 40081 \(daemon\.json is one JSON object",
        step,
    )
    assert (
        "daemon.json is one JSON object"
        not in registry_steps("plain-http", KINDS["podman"], setup())[-1]
    )


def test_an_ipv6_serve_host_is_written_in_brackets():
    steps = registry_steps("plain-http", KINDS["docker"], setup(serve_host="fd00::2"))
    assert '"insecure-registries": ["[fd00::2]:40081"]' in steps[0]
