"""``python -m lab_registry serve --listen HOST:PORT``: serve the standard catalogue until Ctrl-C.

    $ python -m lab_registry serve --listen 127.0.0.1:5000 --prefix ectest-demo
    lab registry serving http://127.0.0.1:5000 (Ctrl-C to stop)
      127.0.0.1:5000/ectest-demo/single:v1  sha256:...
      ...

With ``--token-auth USER:PASSWORD`` (repeatable) every repository needs a
Bearer token from the registry's own ``/token`` endpoint (distribution's token
auth), which grants pull to those users.

With ``--content FILE`` it serves the content a description file records
(``lab_registry.content``: blobs relative to the file's directory) instead of
the standard catalogue, with its auth rules, token users and faults; it listens
on ``--listen`` if given, else on the recorded address if its port is free,
else on a free port of the recorded host. A recorded TLS registry is served as
plain HTTP (a note on stderr says so).

Errors (a bad option, a busy port) print one line and exit non-zero, with no
traceback: this is a tool for people at a terminal.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from lab_registry.catalogue import Catalogue, standard, valid_name
from lab_registry.server import LabRegistry, parse_listen

PROG = "python -m lab_registry"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints the whole usage block first; one line is kinder.
        self.exit(2, f"{PROG}: error: {message} (see --help)\n")


def _listen(text: str) -> tuple[str, int]:
    try:
        return parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _prefix(text: str) -> str:
    if not valid_name(text):
        raise argparse.ArgumentTypeError(f"invalid prefix {text!r}: lowercase a-z0-9 . _ - /")
    return text


def _size_mib(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a whole number of MiB: {text!r}")
    return int(text)


def _user(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise argparse.ArgumentTypeError("expected USER:PASSWORD")
    return user, password


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="A small OCI distribution registry for tests.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = sub.add_parser("serve", help="serve the standard catalogue until Ctrl-C")
    serve.add_argument(
        "--listen",
        type=_listen,
        default=None,
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1 and a free port; with --content, "
        "the recorded address if its port is free)",
    )
    serve.add_argument(
        "--prefix", type=_prefix, default=None, help="repository prefix (default: lab)"
    )
    serve.add_argument(
        "--large-mib",
        type=_size_mib,
        default=0,
        metavar="N",
        help="also serve <prefix>/large:latest with an N MiB layer",
    )
    serve.add_argument(
        "--token-auth",
        type=_user,
        action="append",
        default=[],
        metavar="USER:PASSWORD",
        help="require a Bearer token for every repository; /token grants it to USER",
    )
    serve.add_argument(
        "--content",
        type=Path,
        default=None,
        metavar="FILE",
        help="serve the lab content a description file records (lab_registry.content) "
        "instead of the standard catalogue",
    )
    return parser


def serve(
    listen: tuple[str, int] | None,
    prefix: str | None,
    large_mib: int,
    token_users: Sequence[tuple[str, str]] = (),
) -> int:
    listen = listen or ("127.0.0.1", 0)
    catalogue = standard(prefix or "lab")
    try:
        if large_mib:
            catalogue.add_large(catalogue.name("large"), "latest", large_mib << 20)
        registry = LabRegistry(catalogue, *listen)
        try:
            registry.start()
        except OSError as exc:
            return _cannot_listen(listen, exc)
        if token_users:
            registry.require_token_auth(users=dict(token_users))
        return _serve_until_stopped(registry)
    finally:
        catalogue.close()


def serve_content(file: Path, listen: tuple[str, int] | None) -> int:
    """Serve what a ``lab_registry.content`` description file records."""
    from lab_registry import content

    try:
        description = json.loads(file.read_text())
        catalogue, apply = content.load(description, file.parent)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        print(f"{PROG}: error: cannot read content {file}: {reason}", file=sys.stderr)
        return 2
    try:
        recorded = description.get("registry") or {}
        if listen is not None:
            host, port = listen
        else:
            host, port = recorded.get("host") or "127.0.0.1", None
        try:
            registry = content.start(catalogue, apply, description, host, port)
        except OSError as exc:
            return _cannot_listen((host, port or 0), exc)
        if recorded.get("tls"):
            print(
                f"{PROG}: note: the recorded registry served TLS; this one serves plain HTTP",
                file=sys.stderr,
            )
        return _serve_until_stopped(registry)
    finally:
        catalogue.close()


def _cannot_listen(listen: tuple[str, int], exc: OSError) -> int:
    print(
        f"{PROG}: error: cannot listen on {listen[0]}:{listen[1]}: {exc.strerror or exc}",
        file=sys.stderr,
    )
    return 1


def _serve_until_stopped(registry: LabRegistry) -> int:
    """Print the banner, serve until Ctrl-C or SIGTERM, stop the registry."""
    catalogue: Catalogue = registry.catalogue
    stop = threading.Event()
    # SIGTERM ends the server as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        print(f"lab registry serving {registry.url} (Ctrl-C to stop)", flush=True)
        if registry.tokens.active:
            print(
                f"  token auth: realm {registry.token_realm}, service {registry.tokens.service}",
                flush=True,
            )
        for repository, tag, artifact in catalogue.artifacts():
            print(f"  {registry.address}/{repository}:{tag}  {artifact.digest}", flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        registry.stop()
    print("lab registry stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    # Started from a background shell, Python inherits SIGINT ignored and Ctrl-C
    # (or a test's SIGINT) would do nothing: a tool at a terminal must stop on it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.content is not None:
        given = [
            option
            for option, value in (
                ("--prefix", args.prefix),
                ("--large-mib", args.large_mib),
                ("--token-auth", args.token_auth),
            )
            if value
        ]
        if given:
            parser.error(f"--content cannot be combined with {', '.join(given)}")
    try:
        if args.content is not None:
            return serve_content(args.content, args.listen)
        return serve(args.listen, args.prefix, args.large_mib, args.token_auth)
    except KeyboardInterrupt:  # Ctrl-C while still building
        return 130


if __name__ == "__main__":
    sys.exit(main())
