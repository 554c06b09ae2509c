"""What the property phase may spend, and its seed: its settings, apart from the phase
itself so that reading them (the options table, the CLI) imports neither hypothesis
nor schemathesis.

    >>> Budget.parse("60s"), str(Budget.parse("200"))
    (Budget(seconds=60.0, examples=400), '200 examples')
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SEED = 20_240_601
DEFAULT_BUDGET = "60s"
MAX_EXAMPLES = 400  # with a time budget: an upper bound the clock normally comes first


@dataclass(frozen=True)
class Budget:
    """``--property-budget``: ``60s`` (seconds) or ``200`` (examples)."""

    seconds: float | None
    examples: int

    @classmethod
    def parse(cls, text: str) -> Budget:
        text = text.strip().lower()
        try:
            if text.endswith("s"):
                seconds = float(text[:-1])
                if seconds > 0:
                    return cls(seconds, MAX_EXAMPLES)
            elif int(text) > 0:
                return cls(None, int(text))
        except ValueError:
            pass
        raise ValueError(f"--property-budget {text!r}: seconds as '60s' or examples as '200'")

    def __str__(self) -> str:
        return f"{self.seconds:g}s" if self.seconds is not None else f"{self.examples} examples"
