"""The engine side: one client for any target, what an engine says it is,
managed and rootless engines, namespaces, TLS, and the servers the engine is sent to.

Imports only :mod:`engine_conformance.base`.
"""
