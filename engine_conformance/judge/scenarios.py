"""Scenarios a suite module runs once per run, each read by several checks.

    >>> book = Scenarios("faults", evidence=lambda pulled: [pulled.exchange])
    >>> @book.scenario("cut")                                         # doctest: +SKIP
    ... def cut(setup, observed):                                     # doctest: +SKIP
    ...     return pull_that_fails(setup)
    >>> pulled = book.read("cut", done, lane, make_setup, client, observe)   # doctest: +SKIP

A scenario (one pull the registry cuts short, two pulls sent at once) is costly and
several requirements judge it. It runs once, for whichever check reads it first, or
ahead in the run's lane (``engine_conformance.run.lane``); a later reader cites its
exchanges as evidence and takes its observations. What stopped it (a precondition that
did not hold, the target failing) is raised in every check that reads it, so no
verdict depends on the order the checks run in, nor on where the scenario ran.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from engine_conformance.engine.target import Client, Exchange


@dataclass
class Outcome:
    """What a scenario gave (``value``) or what stopped it, and what was observed;
    ``ahead``: the seconds it took in the run's lane, when it ran there."""

    observed: dict[str, Any]
    value: Any = None
    stopped: Exception | None = None
    ahead: float | None = None


Scenario = Callable[[Any, dict[str, Any]], Any]
"""``scenario(setup, observed)``: runs, fills ``observed``, returns its value."""


class Scenarios:
    """A suite module's scenarios by label.

    ``evidence(value)`` gives the exchanges a later reader cites; ``finish(setup,
    value, observed)``, when given, completes a value that ran (what it left, say).
    """

    def __init__(
        self,
        name: str,
        evidence: Callable[[Any], Iterable[Exchange]],
        finish: Callable[[Any, Any, dict[str, Any]], None] | None = None,
    ) -> None:
        self.name, self.evidence, self.finish = name, evidence, finish
        self._scenarios: dict[str, Scenario] = {}

    def scenario(self, label: str) -> Callable[[Scenario], Scenario]:
        """Register a scenario under ``label`` (a decorator)."""

        def register(run: Scenario) -> Scenario:
            self._scenarios[label] = run
            return run

        return register

    def key(self, label: str) -> str:
        """The scenario's key in the run's lane (``faults-cut``)."""
        return f"{self.name}-{label}"

    def run(self, label: str, setup: Any) -> Outcome:
        """Run ``label`` now; what stops it is kept in the outcome, not raised."""
        outcome = Outcome({})
        try:
            value = self._scenarios[label](setup, outcome.observed)
            if self.finish is not None:
                self.finish(setup, value, outcome.observed)
        except Exception as exc:  # noqa: BLE001 - kept, and raised by each check that reads it
            outcome.stopped = exc
            return outcome
        outcome.value = value
        return outcome

    def read(
        self,
        label: str,
        done: MutableMapping[str, Outcome],
        lane: Any,
        setup: Callable[[], Any],
        client: Client,
        observe: dict[str, Any],
        case: str = "",
    ) -> Any:
        """``label``'s value for the check now running: read before in this run
        (``done``), else run ahead in ``lane`` (None: no lane), else run now with
        ``setup()``. Its observations become the check's (``case`` prefixes their keys,
        for a check with several scenarios); its exchanges are cited unless it ran now."""
        outcome = done.get(label)
        cite = outcome is not None
        if outcome is None and lane is not None:
            outcome = lane.result(self.key(label))  # None: not run ahead
            if outcome is not None:
                outcome.ahead = lane.timings.get(self.key(label))
                cite = True
        if outcome is None:
            outcome = self.run(label, setup())
        done[label] = outcome
        if cite and outcome.value is not None:
            client.cite(self.evidence(outcome.value))
        key = f"{case}: " if case else ""
        observe.update({f"{key}{k}": v for k, v in outcome.observed.items()})
        if outcome.ahead is not None:
            observe[f"{key}ran"] = f"ahead, in the run's lane ({outcome.ahead} s)"
        if outcome.stopped is not None:
            raise outcome.stopped
        return outcome.value
