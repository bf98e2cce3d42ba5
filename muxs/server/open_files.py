"""The process's file descriptor limit, raised once at start by ``muxs serve``.

Each connection, open file, upload and directory being resolved holds a descriptor. Many
systems start processes with a soft ``RLIMIT_NOFILE`` of 1024 under a much higher hard
limit; ``muxs serve`` raises the soft limit to the hard one (what an unprivileged process
may), and says the result in its start-up line. A call that still finds none left is
RESOURCE_EXHAUSTED (``muxs.storage``) and the server keeps serving the others.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (as far as the system allows);
    return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # an unlimited hard limit above the kernel's
            log.debug("cannot raise the open files limit to %s: %s", hard, exc)
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
