"""Where a verdict is made: the checks' helpers, the verdict rules, clean-up,
the preflight, the property phase, and the evidence a verdict carries
(reproducers, bundles).

Imports only the layers below (base, engine, catalogue).
"""
