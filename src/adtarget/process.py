"""What a crash leaves behind: whether a process still runs, and making a rename durable.

Why here: the snapshot store (staged build directories named after their pid) and upload jobs
(the pid recorded on a running job) both clean up after a dead process, and must agree on what
"dead" means; the snapshot store and the Parquet event log both publish by rename, which
survives a power loss only once the directory is synced.
"""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists on this host (even one we may not signal)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (a rename in it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
