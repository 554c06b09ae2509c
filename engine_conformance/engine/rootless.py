"""Managed rootless engines: Podman and Docker run by a dedicated unprivileged user.

    >>> with RootlessPodman(insecure_registries=["127.0.0.1:5000"]) as podman:  # doctest: +SKIP
    ...     podman.target        # 'unix:///tmp/ec-podman-rootless-xxxx/podman-rootless.sock'
    >>> with RootlessDocker() as docker:                                       # doctest: +SKIP
    ...     docker.home / ".config/docker/daemon.json"

The suite runs as root; these engines run as :data:`SUITE_USER` (``ec-rootless``),
made on first use with subordinate uid/gid ranges of its own (:func:`ensure_user`;
no other user is ever touched). Each engine lives in one private directory owned by
that user and removed on stop, which is also the user's ``HOME`` and
``XDG_RUNTIME_DIR`` for the engine: what the fixes call ``~/.config/containers/
registries.conf`` or ``~/.config/docker/daemon.json`` is ``engine.home / …``, and the
image store (Podman's graphroot, Docker's data root) is in there too, so nothing of a
run outlives it. The engines read their usual rootless places, unredirected (no
``CONTAINERS_REGISTRIES_CONF``, no ``--config-file``), so that a fix followed as
written is a fix for them.

* :class:`RootlessPodman`: ``podman system service`` as the user. It shares this
  machine's network namespace: its 127.0.0.1 is the host's.
* :class:`RootlessDocker`: Debian's ``dockerd-rootless.sh`` (docker.io 20.10) as the
  user, under RootlessKit with slirp4netns and ``--disable-host-loopback``: its
  127.0.0.1 is its own, so the suite must serve on an address of this machine the
  engine reaches (``--serve-host``), like for a remote engine.

``restart()`` stops the engine and starts it again in the same directory (what a fix
that says "restart it" asks for). ``stop()`` ends the processes the engine started,
by their ids: the service, and what outlives it (Podman's pause process, which holds
the user namespace; RootlessKit's children).
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from engine_conformance.engine.engines import EngineUnavailable, ManagedDocker, ManagedPodman

SUITE_USER = "ec-rootless"
"""The unprivileged user the suite runs its rootless engines as."""

SUBID_COUNT = 65536
"""Subordinate uids (and gids) given to :data:`SUITE_USER`: one full 16-bit range."""

SUBID_MIN = 100000

DOCKERD_ROOTLESS = (
    "/usr/share/docker.io/contrib/dockerd-rootless.sh",  # Debian's docker.io
    "dockerd-rootless.sh",
)  # upstream packages put it on PATH
_LOCK = Path("/run/lock") if Path("/run/lock").is_dir() else Path(tempfile.gettempdir())


@dataclass(frozen=True)
class SuiteUser:
    name: str
    uid: int
    gid: int


# -- what the machine must offer --------------------------------------------------


def userns_problem() -> str | None:
    """Why an unprivileged user cannot make a user namespace here, or None."""
    try:
        if int(Path("/proc/sys/user/max_user_namespaces").read_text()) == 0:
            return "user namespaces are off (sysctl user.max_user_namespaces = 0)"
    except (OSError, ValueError):
        pass
    for knob, bad in (
        ("kernel/unprivileged_userns_clone", "0"),
        ("kernel/apparmor_restrict_unprivileged_userns", "1"),
    ):
        try:
            if Path("/proc/sys", knob).read_text().strip() == bad:
                return (
                    f"unprivileged user namespaces are off (sysctl "
                    f"{knob.replace('/', '.')} = {bad})"
                )
        except OSError:
            pass
    if shutil.which("unshare") and shutil.which("setpriv"):
        # The real test: nobody (65534) makes one.
        probe = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
                "unshare",
                "--user",
                shutil.which("true") or "/bin/true",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if probe.returncode != 0:
            return (
                "an unprivileged user cannot make a user namespace (unshare --user: "
                f"{probe.stderr.strip()[-200:]})"
            )
    return None


def tun_problem() -> str | None:
    """Why :data:`SUITE_USER` could not open ``/dev/net/tun`` (slirp4netns needs it), or None."""
    try:
        st = os.stat("/dev/net/tun")
    except OSError:
        return "/dev/net/tun is missing (the tun device: modprobe tun)"
    if not stat.S_ISCHR(st.st_mode):
        return "/dev/net/tun is not a character device"
    if st.st_mode & 0o006 == 0o006:
        return None
    return (
        f"/dev/net/tun is not usable by an unprivileged user (mode "
        f"{stat.S_IMODE(st.st_mode):04o}; needs 0666)"
    )


def _missing_programs(*names: str) -> list[str]:
    return [n for n in names if shutil.which(n) is None]


def common_problems() -> list[str]:
    """What every rootless engine needs and this machine lacks (``[]``: nothing)."""
    problems = []
    if _missing_programs("newuidmap", "newgidmap"):
        problems.append("uidmap is not installed (newuidmap, newgidmap)")
    if _missing_programs("setpriv", "useradd", "usermod"):
        problems.append("util-linux's setpriv or passwd's useradd/usermod is missing")
    if os.geteuid() != 0:
        problems.append(f"the suite is not running as root (it runs the engine as {SUITE_USER})")
    userns = userns_problem()
    if userns:
        problems.append(userns)
    return problems


# -- the user ---------------------------------------------------------------------


def _ranges(path: str) -> list[tuple[str, int, int]]:
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            out.append((parts[0], int(parts[1]), int(parts[2])))
    return out


def _has_range(path: str, user: pwd.struct_passwd) -> bool:
    return any(
        owner in (user.pw_name, str(user.pw_uid)) and count >= SUBID_COUNT
        for owner, _, count in _ranges(path)
    )


def ensure_user(name: str = SUITE_USER) -> SuiteUser:
    """The suite's user, made if missing (no home, no login shell), with a subordinate
    uid range in ``/etc/subuid`` and a gid range in ``/etc/subgid`` past every range
    there. Only this user is ever created or changed."""
    with open(_LOCK / "engine-conformance-rootless.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            made = subprocess.run(
                [
                    "useradd",
                    "--user-group",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    "--comment",
                    "engine-conformance rootless engines",
                    name,
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if made.returncode not in (0, 9):  # 9: it exists
                raise EngineUnavailable(f"useradd {name}: {made.stderr.strip()}") from None
            user = pwd.getpwnam(name)
        files = (("/etc/subuid", "--add-subuids"), ("/etc/subgid", "--add-subgids"))
        for path, option in files:
            if _has_range(path, user):
                continue
            # Past every range either file gives anyone: no overlap with another user's.
            end = max(
                [SUBID_MIN] + [start + count for p, _ in files for _, start, count in _ranges(p)]
            )
            added = subprocess.run(
                ["usermod", option, f"{end}-{end + SUBID_COUNT - 1}", name],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if added.returncode != 0:
                raise EngineUnavailable(f"usermod {option} for {name}: {added.stderr.strip()}")
    return SuiteUser(user.pw_name, user.pw_uid, user.pw_gid)


# -- processes --------------------------------------------------------------------


def _started(pid: int) -> str | None:
    """The process's start time (``/proc/PID/stat`` field 22), which tells it from a reuse."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return data.rsplit(")", 1)[1].split()[19]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[tuple[int, str]]:
    """``pid``'s descendants now, each with its start time."""
    tree, out, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            started = _started(child)
            if started is not None:
                out.append((child, started))
                todo.append(child)
    return out


def _kill_exact(processes: list[tuple[int, str]], sig: int = signal.SIGKILL) -> None:
    for pid, started in processes:
        if _started(pid) == started:  # the same process, not a reused id
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


def _wait_gone(processes: list[tuple[int, str]], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(_started(pid) != started for pid, started in processes):
            return True
        time.sleep(0.1)
    return False


# -- the engines ------------------------------------------------------------------


class _Rootless:
    """Run the engine as :data:`SUITE_USER` in a private ``HOME`` and ``XDG_RUNTIME_DIR``.

    Mixed into a :class:`~engine_conformance.engine.engines.ManagedEngine` subclass, which
    gives ``prepare``, ``command``, ``_wait_ready`` and the final clean-up.
    """

    dir: Path | None
    process: subprocess.Popen[bytes] | None
    socket: str
    name: str
    user: SuiteUser | None = None
    command: Callable[[], list[str]]  # the engine class's own (see the docstring)

    def problems(self) -> list[str]:
        """What this machine lacks for the engine (``[]``: nothing)."""
        return common_problems()

    def available(self) -> bool:
        return not self.problems()

    @property
    def missing(self) -> str:
        return "; ".join(self.problems())

    @property
    def home(self) -> Path:
        """The engine's ``~``: where its rootless configuration is read from."""
        assert self.dir is not None
        return self.dir / "home"

    @property
    def runtime_dir(self) -> Path:
        """The engine's ``XDG_RUNTIME_DIR``."""
        assert self.dir is not None
        return self.dir / "run"

    def _layout(self) -> None:
        """The private directory, owned by the user: home and runtime dir (0700)."""
        assert self.dir is not None
        for d in (self.home, self.runtime_dir, self.dir / "tmp"):
            d.mkdir(mode=0o700, exist_ok=True)
        self._own(self.dir, self.home, self.runtime_dir, self.dir / "tmp")

    def _own(self, *paths: Path) -> None:
        """Give the user what root made for it: never anything the engine wrote (its
        image store holds files of its subordinate uids)."""
        assert self.user is not None
        for path in paths:
            os.lchown(path, self.user.uid, self.user.gid)

    def write(self, relative: str, text: str) -> Path:
        """Write ``~/relative`` as the user would have (its owner, parents made)."""
        path = self.home / relative
        made = [p for p in reversed(path.parents) if p.is_relative_to(self.home) and not p.exists()]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self._own(*made, path)
        return path

    def user_environment(self) -> dict[str, str]:
        """A clean environment, as a login of the user would have: nothing of root's."""
        assert self.dir is not None and self.user is not None
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
            "HOME": str(self.home),
            "USER": self.user.name,
            "LOGNAME": self.user.name,
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "TMPDIR": str(self.dir / "tmp"),
            "LANG": "C.UTF-8",
        }
        # Not typed below: ManagedEngine's, which this mixin is always mixed into (see the class
        # docstring).
        trusted: dict[str, str] = self._trusting_environment(env)  # type: ignore[attr-defined]
        return trusted

    def start(self) -> Self:
        problems = self.problems()
        if problems:
            raise EngineUnavailable("; ".join(problems))
        self.user = ensure_user()
        # Short: unix socket paths are limited to 108 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix=f"ec-{self.name}-", dir="/tmp"))
        self.socket = str(self.dir / f"{self.name}.sock")
        try:
            self._layout()
            # Not typed below: ManagedEngine's, which this mixin is always mixed into.
            self.prepare()  # type: ignore[attr-defined]
            self._launch()
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self) -> None:
        assert self.dir is not None and self.user is not None
        with open(self.dir / "engine.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    "setpriv",
                    f"--reuid={self.user.uid}",
                    f"--regid={self.user.gid}",
                    "--init-groups",
                    "--",
                    *self.command(),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.user_environment(),
                cwd=self.home,
                start_new_session=True,
            )
        # Not typed below: ManagedEngine's, which this mixin is always mixed into.
        self._wait_ready()  # type: ignore[attr-defined]

    def restart(self) -> None:
        """Stop the engine and start it again with the same directory and configuration."""
        self._terminate()
        try:
            self._launch()
        except BaseException:
            self.stop()
            raise

    def _leftovers(self) -> list[tuple[int, str]]:
        """Processes the engine started that are no longer its descendants."""
        return []

    def _terminate(self) -> None:
        if self.process is None:
            return
        family = descendants(self.process.pid)  # before it goes: then they are orphans
        # Not typed below: the next class in the MRO is a ManagedEngine; mypy cannot see a mixin's.
        super()._terminate()  # type: ignore[misc]
        # What it started and left behind, by id: processes that wait for nothing but a
        # signal (Podman's pause process) are told at once, its children given a moment.
        left = self._leftovers()
        _kill_exact(left, signal.SIGTERM)
        rest = family + left
        if not _wait_gone(rest, 5.0):
            _kill_exact(rest)
            _wait_gone(rest, 5.0)

    def stop(self) -> None:
        self._terminate()
        # Not typed below: the next class in the MRO is a ManagedEngine; mypy cannot see a mixin's.
        super().stop()  # type: ignore[misc]


class RootlessPodman(_Rootless, ManagedPodman):
    """``podman system service`` as :data:`SUITE_USER`.

    Its ``~/.config/containers/registries.conf`` is what :class:`ManagedPodman` writes
    (``insecure_registries`` as ``[[registry]] insecure = true`` entries), and its
    ``~/.config/containers/storage.conf`` keeps the image store in the private
    directory (Podman's default rootless driver for this kernel).
    """

    name = "podman-rootless"

    def problems(self) -> list[str]:
        missing = ["podman is not installed"] if shutil.which("podman") is None else []
        return missing + common_problems()

    def prepare(self) -> None:
        assert self.dir is not None
        entries = "".join(
            f'\n[[registry]]\nlocation = "{r}"\ninsecure = true\n' for r in self.insecure_registries
        )
        self.write(
            ".config/containers/registries.conf",
            'unqualified-search-registries = []\nshort-name-mode = "permissive"\n' + entries,
        )
        self.write(
            ".config/containers/storage.conf",
            f'[storage]\ngraphroot = "{self.dir / "storage"}"\n'
            f'runroot = "{self.runtime_dir / "containers"}"\n',
        )

    @property
    def registries_conf(self) -> Path:
        """``~/.config/containers/registries.conf`` as this Podman reads it."""
        return self.home / ".config/containers/registries.conf"

    def environment(self) -> dict[str, str]:
        return self.user_environment()

    def trust_registry_ca(self, address: str, ca_path: Path) -> None:
        """``~/.config/containers/certs.d/ADDRESS/ca.crt``, read at each pull."""
        self.write(f".config/containers/certs.d/{address}/ca.crt", Path(ca_path).read_text())

    def command(self) -> list[str]:
        return [
            "podman",
            "--events-backend",
            "file",
            "--cgroup-manager",
            "cgroupfs",
            "system",
            "service",
            "--time=0",
            f"unix://{self.socket}",
        ]

    def _leftovers(self) -> list[tuple[int, str]]:
        # The pause process holds the user namespace and outlives the service; its pid
        # file is in the private runtime dir, so it is this engine's.
        assert self.dir is not None and self.user is not None
        found = []
        for pidfile in self.dir.glob("run/**/pause.pid"):
            try:
                pid = int(pidfile.read_text().strip())
                owner = os.stat(f"/proc/{pid}").st_uid
            except (OSError, ValueError):
                continue
            started = _started(pid)
            if owner == self.user.uid and started is not None:
                found.append((pid, started))
        return found


class RootlessDocker(_Rootless, ManagedDocker):
    """Debian's ``dockerd-rootless.sh`` (docker.io 20.10) as :data:`SUITE_USER`.

    RootlessKit with slirp4netns and ``--disable-host-loopback`` (the script's
    defaults): the engine does not reach this machine's 127.0.0.1. Its configuration
    is ``~/.config/docker/daemon.json`` (``insecure_registries`` go there), its
    registry CAs ``~/.config/docker/certs.d``, its data root
    ``~/.local/share/docker``: all in the private directory. No bridge, no
    iptables, as for :class:`ManagedDocker`.
    """

    program = "dockerd-rootless.sh"
    name = "docker-rootless"

    def __init__(self, insecure_registries: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__()
        self.insecure_registries = list(insecure_registries)

    @staticmethod
    def script() -> str | None:
        for candidate in DOCKERD_ROOTLESS:
            found = shutil.which(candidate)
            if found:
                return found
        return None

    def problems(self) -> list[str]:
        problems = []
        if self.script() is None:
            problems.append(
                "dockerd-rootless.sh is missing (Debian's docker.io ships it in "
                "/usr/share/docker.io/contrib)"
            )
        if shutil.which("dockerd") is None:
            problems.append("dockerd is not installed")
        if shutil.which("rootlesskit") is None:
            problems.append("rootlesskit is not installed (apt-get install rootlesskit)")
        if shutil.which("slirp4netns") is None:
            problems.append("slirp4netns is not installed (apt-get install slirp4netns)")
        tun = tun_problem()
        return problems + ([tun] if tun else []) + common_problems()

    def prepare(self) -> None:
        self.socket = str(self.runtime_dir / "docker.sock")
        config = (
            {"insecure-registries": self.insecure_registries} if self.insecure_registries else {}
        )
        self.write(".config/docker/daemon.json", json.dumps(config, indent=2) + "\n")

    @property
    def daemon_json(self) -> Path:
        """``~/.config/docker/daemon.json`` as this dockerd reads it."""
        return self.home / ".config/docker/daemon.json"

    @property
    def certs_d(self) -> Path:
        """``~/.config/docker/certs.d``: rootless dockerd's ``registry.CertsDir()``."""
        return self.home / ".config/docker/certs.d"

    def environment(self) -> dict[str, str]:
        return self.user_environment()

    def trust_registry_ca(self, address: str, ca_path: Path) -> None:
        """``~/.config/docker/certs.d/ADDRESS/ca.crt``, read at each pull (no restart)."""
        self.write(f".config/docker/certs.d/{address}/ca.crt", Path(ca_path).read_text())

    def _forget_trust(self) -> None:
        """Nothing outside the private directory was written."""

    def command(self) -> list[str]:
        script = self.script()
        assert script is not None
        return [
            script,
            "--host",
            f"unix://{self.socket}",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
        ]


__all__ = [
    "SUITE_USER",
    "RootlessDocker",
    "RootlessPodman",
    "SuiteUser",
    "common_problems",
    "ensure_user",
    "tun_problem",
    "userns_problem",
]
