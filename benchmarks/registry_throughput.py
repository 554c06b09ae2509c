"""Pull throughput of the lab registry against the real distribution registry.

    python benchmarks/registry_throughput.py                       # private dockerd
    python benchmarks/registry_throughput.py --target unix:///tmp/ec1234/docker.sock
    python benchmarks/registry_throughput.py --size-mib 64 --repeats 3

Builds one image with a ``--size-mib`` layer, serves it from the lab registry
and from ``docker-registry serve`` (pushed over HTTP), and has one engine pull
it from each in turn: alternating, deleting the image before every pull so
each pull downloads and extracts everything. The time of a pull runs from the
request to the end of the progress stream; the figure is the median. The last
line printed is always::

    lab/distribution throughput ratio: X.XX

(lab throughput divided by distribution throughput; above 1 means the lab is
faster). The engine must treat 127.0.0.1 registries as insecure, as Docker does
by default.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from engine_conformance.engine.engines import ManagedDocker
from engine_conformance.engine.target import Client, Target, Timeouts
from lab_registry import Catalogue, LabRegistry
from lab_registry.distribution import DistributionRegistry

TIMEOUTS = Timeouts(read=600.0, stream=1200.0)

REPOSITORY = "bench/large"
TAG = "latest"


def timed_pull(engine: Client, address: str) -> float:
    """Seconds from the request to the end of the stream; raises if the pull failed."""
    name = f"{address}/{REPOSITORY}"
    engine.delete_image(f"{name}:{TAG}")
    # Flush dirty pages (the last pull's layer, its deletion) so that their
    # writeback is not billed to whichever pull happens to come next.
    os.sync()
    t0 = time.perf_counter()
    ex = engine.create_image({"fromImage": name, "tag": TAG})
    elapsed = time.perf_counter() - t0
    if ex.status != 200 or ex.stream_error or not ex.messages:
        raise SystemExit(f"pull of {name}:{TAG} failed: HTTP {ex.status} {ex.stream_error}")
    engine.delete_image(f"{name}:{TAG}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", help="engine URL (default: start a private dockerd)")
    parser.add_argument("--size-mib", type=int, default=256, help="layer size (default 256)")
    parser.add_argument("--repeats", type=int, default=5, help="pulls per registry (default 5)")
    args = parser.parse_args(argv)
    if args.size_mib <= 0 or args.repeats <= 0:
        parser.error("--size-mib and --repeats must be positive")

    with Catalogue() as catalogue:
        t0 = time.perf_counter()
        image = catalogue.add_large(REPOSITORY, TAG, args.size_mib << 20, seed=1)
        size = image.size
        print(f"built {args.size_mib} MiB layer image {image.digest[:19]} "
              f"({size / 2**20:.1f} MiB to pull) in {time.perf_counter() - t0:.1f} s")  # fmt: skip
        with LabRegistry(catalogue) as lab, DistributionRegistry() as real:
            t0 = time.perf_counter()
            real.push(REPOSITORY, TAG, image)
            print(f"pushed to distribution {real.address} in {time.perf_counter() - t0:.1f} s")
            with engine_target(args.target) as target:
                print(f"engine {target}")
                with Client(Target.parse(target), timeouts=TIMEOUTS) as engine:
                    engine.negotiate()
                    # One unmeasured pull from each warms page caches and the engine.
                    timed_pull(engine, lab.address)
                    timed_pull(engine, real.address)
                    times: dict[str, list[float]] = {"lab": [], "distribution": []}
                    for i in range(args.repeats):
                        order = [("lab", lab.address), ("distribution", real.address)]
                        for label, address in order if i % 2 == 0 else order[::-1]:
                            elapsed = timed_pull(engine, address)
                            times[label].append(elapsed)
                            print(f"  {label:>12}: {elapsed:6.2f} s  "
                                  f"{size / elapsed / 2**20:7.1f} MiB/s")  # fmt: skip
    medians = {k: statistics.median(v) for k, v in times.items()}
    for label, median in medians.items():
        print(f"{label:>14} median: {median:6.2f} s  {size / median / 2**20:7.1f} MiB/s")
    ratio = medians["distribution"] / medians["lab"]  # throughput ratio = inverse time ratio
    print(f"lab/distribution throughput ratio: {ratio:.2f}")
    return 0


@contextmanager
def engine_target(given: str | None) -> Iterator[str]:
    """``given``, or a throw-away managed Docker's target."""
    if given:
        yield given
        return
    docker = ManagedDocker()
    if not docker.available():
        raise SystemExit("dockerd is not installed: give --target or apt-get install docker.io")
    with docker:
        yield docker.target


if __name__ == "__main__":
    sys.exit(main())
