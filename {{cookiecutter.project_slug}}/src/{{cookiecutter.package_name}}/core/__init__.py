"""The bottom layer: errors, command line, config schema, metrics, label map, run folder, run records.

Imports nothing of the package outside core/. Every other layer builds on it.
"""
