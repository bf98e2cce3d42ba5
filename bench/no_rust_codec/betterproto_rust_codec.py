"""Shadows betterproto's rust codec for servers the benchmark runs without it.

On ``PYTHONPATH`` (inherited by worker processes), this makes ``import betterproto_rust_codec``
fail the way a missing package does, so betterproto keeps its pure-Python codec.
"""

raise ModuleNotFoundError("betterproto_rust_codec is hidden by the muxs benchmark")
