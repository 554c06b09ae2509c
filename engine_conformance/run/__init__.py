"""Running the suites: the ``engine-conformance`` command, the pytest plugin,
the child run, doctor, replay.

The top layer: nothing imports it.
"""
