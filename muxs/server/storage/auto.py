"""The file store the settings name: an S3 bucket for ``storage``, else the local root."""

from __future__ import annotations

from typing import TYPE_CHECKING

from muxs.server.storage.local import LocalRoot
from muxs.server.storage.root import Root

if TYPE_CHECKING:
    from muxs.server.settings import ServerSettings
    from muxs.server.storage.interface import FileStore


def open_store(settings: ServerSettings) -> FileStore:
    """The store of ``settings`` (the caller closes it with ``aclose``)."""
    if settings.storage is not None:
        from muxs.server.storage.s3 import S3Bucket  # the optional obstore is needed

        return S3Bucket(settings)
    return LocalRoot(Root(settings.root))
