"""Where an S3 bucket is: ``s3://bucket/prefix`` and the endpoint, checked before serving."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from muxs.tls import is_loopback

#: S3's bucket naming rules (lowercase letters, digits, dots and hyphens; 3 to 63 long).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class S3Location:
    """A bucket, and the prefix every key gets (empty, or ending with ``/``)."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """``s3://bucket`` or ``s3://bucket/prefix`` (``ValueError`` saying why not)."""
        parts = urlsplit(url)
        if parts.scheme != "s3":
            raise ValueError(f"{url!r} is not s3://bucket/prefix")
        if "@" in parts.netloc or parts.query or parts.fragment:
            raise ValueError(
                "must be s3://bucket/prefix alone (credentials go in s3_access_key_id and "
                "s3_secret_access_key or AWS_* variables; the value is not shown)"
            )
        if not _BUCKET.fullmatch(parts.netloc):
            raise ValueError(f"{parts.netloc!r} is not an S3 bucket name")
        components = [part for part in parts.path.split("/") if part]
        if any(part in (".", "..") for part in components):
            raise ValueError(f"the prefix of {url!r} has a '.' or '..' component")
        return cls(parts.netloc, "".join(f"{part}/" for part in components))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def check_endpoint(url: str) -> None:
    """An endpoint is https, or http on a loopback address (``ValueError`` saying why not)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s)://host[:port] URL")
    if parts.username or parts.password:
        raise ValueError("must not hold credentials (the value is not shown)")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(
            f"{url!r} is plain http to a non-loopback host: credentials and files would cross "
            "the network in clear; use https"
        )
