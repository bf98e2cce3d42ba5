"""Developer tools for working on muxs (not part of the installed package)."""
