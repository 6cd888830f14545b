"""Whether a process still runs: how a new start tells a dead writer's leftovers from a live one's.

Why here: the snapshot store (staged build directories named after their pid) and upload jobs
(the pid recorded on a running job) both clean up after a dead process, and must agree on what
"dead" means.
"""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists on this host (even one we may not signal)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
