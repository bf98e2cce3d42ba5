"""betterproto's ``__version__``, given to it without ``importlib.metadata``.

betterproto 2.0.0b7's ``betterproto/_version.py`` is one line, ``__version__ =
importlib.metadata.version("betterproto")``: importing ``importlib.metadata`` (email, zipfile,
csv...) and searching ``sys.path`` for the distribution was about 20 ms of ``import muxs``
and 40 ms of a CLI command's wall time (docs/PERFORMANCE.md, "Start-up"), for a string
muxs never reads. When the installed betterproto is the release muxs pins (its
``.dist-info`` beside the package says so) and betterproto is not imported yet, this module
registers ``betterproto._version`` holding that version, which betterproto's
``from ._version import __version__`` then finds in ``sys.modules``: its ``__version__`` is
the same string. Otherwise it does nothing and betterproto reads its metadata as before.
No betterproto code is changed. Imported first by ``muxs/__init__.py``.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

#: The betterproto release pyproject.toml pins (a test checks they agree).
PINNED = "2.0.0b7"
VERSION_MODULE = "betterproto._version"


def is_pinned_release(package_dir: Path) -> bool:
    """Whether the betterproto package in ``package_dir`` was installed as the pinned release."""
    return (package_dir.parent / f"betterproto-{PINNED}.dist-info").is_dir()


def provide_version() -> bool:
    """Register ``betterproto._version`` if betterproto is the pinned release and not yet
    imported; return whether it did."""
    if "betterproto" in sys.modules or VERSION_MODULE in sys.modules:
        return False
    spec = importlib.util.find_spec("betterproto")
    if spec is None or spec.origin is None or not is_pinned_release(Path(spec.origin).parent):
        return False
    module = types.ModuleType(VERSION_MODULE)
    module.__dict__["__version__"] = PINNED
    sys.modules[VERSION_MODULE] = module
    return True


provide_version()
