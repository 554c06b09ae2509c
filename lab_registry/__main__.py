"""``python -m lab_registry serve --listen HOST:PORT``: serve the standard catalogue until Ctrl-C.

    $ python -m lab_registry serve --listen 127.0.0.1:5000 --prefix ectest-demo
    lab registry serving http://127.0.0.1:5000 (Ctrl-C to stop)
      127.0.0.1:5000/ectest-demo/single:v1  sha256:...
      ...

With ``--token-auth USER:PASSWORD`` (repeatable) every repository needs a
Bearer token from the registry's own ``/token`` endpoint (distribution's token
auth), which grants pull to those users.

Errors (a bad option, a busy port) print one line and exit non-zero, with no
traceback: this is a tool for people at a terminal.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from lab_registry.catalogue import standard, valid_name
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
        default=("127.0.0.1", 0),
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1 and a free port)",
    )
    serve.add_argument(
        "--prefix", type=_prefix, default="lab", help="repository prefix (default: lab)"
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
    return parser


def serve(
    listen: tuple[str, int],
    prefix: str,
    large_mib: int,
    token_users: Sequence[tuple[str, str]] = (),
) -> int:
    catalogue = standard(prefix)
    try:
        if large_mib:
            catalogue.add_large(catalogue.name("large"), "latest", large_mib << 20)
        registry = LabRegistry(catalogue, *listen)
        try:
            registry.start()
        except OSError as exc:
            print(
                f"{PROG}: error: cannot listen on {listen[0]}:{listen[1]}: {exc.strerror or exc}",
                file=sys.stderr,
            )
            return 1
        if token_users:
            registry.require_token_auth(users=dict(token_users))
        stop = threading.Event()
        # SIGTERM ends the server as cleanly as Ctrl-C does.
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        print(f"lab registry serving {registry.url} (Ctrl-C to stop)", flush=True)
        if token_users:
            print(
                f"  token auth: realm {registry.token_realm}, service {registry.tokens.service}",
                flush=True,
            )
        for repository, tag, artifact in catalogue.artifacts():
            print(f"  {registry.address}/{repository}:{tag}  {artifact.digest}", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            registry.stop()
        print("lab registry stopped", flush=True)
        return 0
    finally:
        catalogue.close()


def main(argv: Sequence[str] | None = None) -> int:
    # Started from a background shell, Python inherits SIGINT ignored and Ctrl-C
    # (or a test's SIGINT) would do nothing: a tool at a terminal must stop on it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = build_parser().parse_args(argv)
    try:
        return serve(args.listen, args.prefix, args.large_mib, args.token_auth)
    except KeyboardInterrupt:  # Ctrl-C while still building
        return 130


if __name__ == "__main__":
    sys.exit(main())
