"""Child processes that do not outlive their parent: ``up``'s servers, bots and apps, and the
Streamlit server under ``main.py --frontend``."""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int):
    """A ``preexec_fn`` asking the kernel to SIGTERM the child when process ``parent`` dies
    (Linux; elsewhere None, no such request). A parent already gone by then ends the child at once."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec
