"""A lane: scenarios that only wait on the engine, run ahead of the checks that read them.

    >>> lane = Lane(run, client, target_info, host="127.0.0.1")      # doctest: +SKIP
    >>> lane.start("faults-cut", scenario)   # scenario(context) runs in a thread of its own
    >>> outcome = lane.result("faults-cut")  # in the check: its value, or None (run it here)
    >>> lane.close()

Some checks spend nearly all their time waiting: after a layer transfer is cut,
Docker retries on its own back-off and FAULTS-007 waits 15 s on an idle engine.
A run starts such a scenario once its checks are collected; the scenario goes on
beside the other checks, and the check that reads it waits only for what is left.

Nothing in the lane can change another check's verdict, nor another check its:

- each scenario has a connection of its own (its exchanges are no check's evidence
  until the reading check cites them, and its clean-up reads only its own) and a lab
  registry of its own (its own journal, faults and auth rules, which it may reset as
  a check's fixture does: the run registry's per-check reset never reaches it);
- what it may create on the engine is known before it sends anything: the images
  its registry serves, whose IDs it claims (:meth:`LaneContext.claim`). The run's
  connection leaves claimed IDs out of every whole-list view
  (``Client.unseen``), so a check that diffs the engine's image list still sees
  only what it made itself; a lane scenario judges what it left by its names and
  those IDs, as it does in its check.

A scenario's registry is used only once the engine is proven to pull from it (the
preflight's canary probe, whose image is claimed too). If it is not (a remote engine
told to trust one port only, say), the scenario runs in its own check as without a
lane: the verdicts are the same either way, only slower.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine_conformance.engine.target import Client, Exchange
from engine_conformance.judge.cleanup import Images, RunNames

WIDTH = 2
"""Scenarios in the lane at once. Docker fetches at most three layers at a time
(``max-concurrent-downloads``) and each lane scenario pulls one layer at a time: with
two in the lane, a check's own pull never waits for a download slot."""
CLOSE_WAIT = 120.0  # seconds a scenario may still take when the run ends (its pulls time out first)


@dataclass
class LaneContext:
    """What a scenario in the lane works with, as a check's fixtures give it in the run.

    ``lab`` is the lane's own lab registry (``lab.catalogue.name`` names under the
    run prefix), ``images`` removes what the scenario tracks once it is over,
    ``claim`` hides image IDs from the run's whole-list views, ``secret`` keeps a
    value out of every output.
    """

    client: Client
    lab: Any
    images: Images
    claim: Callable[..., None]
    secret: Callable[[str], str]


class Lane:
    """Scenarios run ahead in threads of their own, each with its own connection and registry.

    ``run`` is the run's state (its prefix, names and secrets), ``client`` the run's
    connection (whose whole-list views leave the lane's images out), ``host``/``tls``
    how the run serves its lab registry, ``ca`` its CA for the preflight's advice.
    """

    def __init__(
        self,
        run: RunNames,
        client: Client,
        target_info: dict[str, Any],
        *,
        host: str = "127.0.0.1",
        tls: Any = None,
        ca: Path | None = None,
        secrets: set[str] | None = None,
        ports: list[int] | tuple[int, ...] = (),
    ) -> None:
        self.run, self.client, self.target_info = run, client, target_info
        self.host, self.tls, self.ca = host, tls, ca
        self.secrets = secrets if secrets is not None else set()
        self.timings: dict[str, float] = {}  # scenario -> seconds it took in the lane
        self.registries: dict[str, str] = {}  # scenario -> its registry's HOST:PORT
        self.problems: dict[str, str] = {}  # scenario -> why it ran in its check instead
        self._stack = ExitStack()
        self._futures: dict[str, Future[Any]] = {}
        self._clients: list[Client] = []
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, Callable[[LaneContext], Any], Future[Any]]] = (
            queue.Queue()
        )
        self._workers: list[threading.Thread] = []
        # Fixed ports (a managed Podman is told each is a plain-HTTP registry), taken by
        # a scenario for its registry and given back when it ends; else free ones.
        self._ports: queue.Queue[int] = queue.Queue()
        for port in ports:
            self._ports.put(port)
        self._fixed = bool(ports)

    # -- a scenario's connection and registry -----------------------------------------

    def _context(self, key: str, lab: Any) -> LaneContext | None:
        """A connection to ``key``'s registry ``lab``, once the engine is proven to pull from
        it; None if it does not (why: :attr:`problems`)."""
        from engine_conformance.judge.preflight import canary_image, probe_registry
        from lab_registry import content

        catalogue = lab.catalogue
        own = Client(self.client.target, self.client.pinned, self.client.timeouts)
        with self._lock:
            self._stack.callback(own.close)
            self._clients.append(own)
        own.adopt(self.client.version_info)
        own.context["lab"] = lambda: content.snapshot(lab)
        self.registries[key] = lab.address
        canary = canary_image(catalogue.prefix, self.target_info)
        self.claim(canary.config_digest, canary.digest)
        probe = probe_registry(own, lab, self.target_info, self.run.created.add, self.ca)
        if not probe.ok:
            self.problems[key] = probe.reason
            return None
        return LaneContext(own, lab, Images(own, self.run), self.claim, self._secret)

    def claim(self, *image_ids: str) -> None:
        """Image IDs a lane scenario may create: the run's whole-list views leave them out."""
        self.client.unseen.update(i.removeprefix("sha256:") for i in image_ids if i)

    def _secret(self, value: str) -> str:
        self.secrets.add(value)
        return value

    # -- scenarios -------------------------------------------------------------------

    def start(self, key: str, scenario: Callable[[LaneContext], Any]) -> None:
        """Queue ``scenario(context)``, once a key; :data:`WIDTH` threads run the queue in
        the order given (the longest first keeps the lane short)."""
        with self._lock:
            if key in self._futures:
                return
            future: Future[Any] = Future()
            self._futures[key] = future
            self._queue.put((key, scenario, future))
            while len(self._workers) < WIDTH:
                self._workers.append(self._spawn(self._work))

    def _work(self) -> None:
        while True:
            key, scenario, future = self._queue.get()
            try:
                future.set_result(self._run(key, scenario))
            except BaseException as exc:  # noqa: BLE001 - raised in the check that reads it
                future.set_exception(exc)

    def _run(self, key: str, scenario: Callable[[LaneContext], Any]) -> Any:
        from lab_registry import Catalogue, LabRegistry

        port = self._ports.get() if self._fixed else 0
        catalogue = Catalogue(f"{self.run.prefix}/lane-{next(self.run.counter)}")
        lab = LabRegistry(catalogue, host=self.host, port=port, tls=self.tls)
        try:
            try:
                lab.start()
            except OSError as exc:  # the lane only saves time: say why, run it in its check
                self.problems[key] = f"the lane could not serve it: {exc}"
                return None
            context = self._context(key, lab)
            if context is None:
                return None
            began = time.monotonic()
            try:
                return scenario(context)
            finally:
                context.images.cleanup()
                self.timings[key] = round(time.monotonic() - began, 2)
        finally:
            lab.stop()  # a late retry of the engine's finds nothing to fetch
            catalogue.close()
            if self._fixed:
                self._ports.put(port)

    def result(self, key: str) -> Any:
        """What ``key``'s scenario gave (waiting for it), or None: not run ahead, run it here."""
        future = self._futures.get(key)
        return None if future is None else future.result()

    def exchanges(self) -> list[Exchange]:
        """Every request the lane sent to the engine's endpoint (for the run's time figures)."""
        with self._lock:
            return [ex for own in self._clients for ex in own.exchanges]

    def describe(self) -> dict[str, Any]:
        """The lane in ``results.json`` (``run.lane``)."""
        return {
            "used": bool(self.timings),
            "registries": dict(self.registries),
            **({"not_used_because": dict(self.problems)} if self.problems else {}),
            "scenarios": dict(self.timings),
        }

    def close(self, wait: bool = True) -> None:
        """Wait for the scenarios still running (each bounded by its own deadlines; not
        when the run was interrupted), then stop the lane's registries and connections;
        the run's views see every image again."""
        deadline = time.monotonic() + (CLOSE_WAIT if wait else 0.0)
        for future in list(self._futures.values()):
            try:
                future.exception(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                pass
        self._stack.close()
        self.client.unseen.clear()

    @staticmethod
    def _spawn(work: Callable[[], None]) -> threading.Thread:
        # Daemon threads: a run interrupted with Ctrl-C ends without waiting for them
        # (the end-of-run sweep removes what they made under the run prefix).
        thread = threading.Thread(target=work, name="ec-lane", daemon=True)
        thread.start()
        return thread
