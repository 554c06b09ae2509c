"""A deviating engine: a proxy in front of a real engine that bends one thing.

The harness's own tests use it to show that each suite check can fail: the
proxy forwards everything to a real engine except the exchanges a
:class:`Deviation` matches, whose request or answer it rewrites.

    >>> text_errors = Deviation(
    ...     "errors are text/plain",
    ...     match=lambda req: req.endpoint == "/images/create",
    ...     response=lambda req, resp: resp.replace(headers={"Content-Type": "text/plain"})
    ...     if resp.status >= 400 else resp,
    ... )
    >>> with DeviantProxy("unix:///tmp/d/docker.sock", [text_errors]) as proxy:  # doctest: +SKIP
    ...     proxy.target          # 'tcp://127.0.0.1:PORT' -- point the suite here

It lives apart from the harness and from the tests, as urllib3 keeps its test
servers: the harness never imports it.
"""

from .proxy import DeviantProxy, Deviation, Request, Response

__all__ = ["Deviation", "DeviantProxy", "Request", "Response"]
