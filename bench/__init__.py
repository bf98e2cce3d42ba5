"""The muxs benchmark: ``python -m bench`` (see ``bench/__main__.py`` and docs/PERFORMANCE.md)."""
