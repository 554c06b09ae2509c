"""Headless Chromium (Debian's ``chromium``) for reading a report back as a person sees it.

The report's test reads the rendered page with :func:`dump_dom`; the README's
screenshot is taken with :func:`screenshot` by ``scripts/screenshot-report``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

# Root in a container has no sandbox; no network, updates or first-run work may start:
# the page must render from file:// alone.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--hide-scrollbars",
)


def chromium() -> str | None:
    """The browser's path, or None when it is not installed (apt-get install chromium)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    browser = chromium()
    if browser is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="ec-chromium-") as profile:
        proc = subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited {proc.returncode}: {proc.stderr[-1000:]}")
    return proc


def dump_dom(page: Path, timeout: float = 120) -> str:
    """The page's DOM after its scripts ran, loaded from ``file://``."""
    return _run(["--dump-dom", Path(page).resolve().as_uri()], timeout).stdout


def screenshot(
    page: Path, out: Path, width: int = 1280, height: int = 900, timeout: float = 120
) -> Path:
    """A PNG of the page as rendered at ``width`` × ``height``."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    _run(
        [f"--screenshot={out}", f"--window-size={width},{height}", Path(page).resolve().as_uri()],
        timeout,
    )
    if not out.is_file():
        raise RuntimeError(f"chromium wrote no screenshot to {out}")
    return out
