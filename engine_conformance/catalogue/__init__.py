"""What is judged: the requirement catalogue, the spec fragment, the Engine API
documents, the expectation files.

Imports only the layers below (base, engine).
"""
