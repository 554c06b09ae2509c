"""The bottom layer: paths, exit codes, API versions, the stream parser, archives.

Nothing here imports another part of the project.
"""
