"""A journal's fsync on a thread of its own, which never takes the GIL: the TES's loop goes on
reading the book server's replies and its clients while its records are made durable, and is
woken when they are (`servers.tes.TradingEngineServer._flush`).

Invariants: requests are served one at a time, in the order made, each answered once on the
pipe that `fileno` reads, with the fsync's errno (0: done); the thread runs only C between its
start and `close`, so a loop holding the GIL never delays an answer, and an fsync never waits
for the loop. `close` lets the fsync in hand finish, then ends the thread: a file may be closed
once it returns, never while its fsync runs."""

import os
import select
import threading

from libc.errno cimport errno
from libc.stdint cimport int64_t
from posix.unistd cimport close as close_fd
from posix.unistd cimport read, write


cdef extern from "unistd.h" nogil:
    int fdatasync(int fd)


cdef class Syncer:
    """One thread fsyncing (``fdatasync``) the files it is asked to, answering on a pipe."""

    cdef int request_read, request_write, answer_read, answer_write
    cdef object thread

    def __init__(self, str name="journal-fsync") -> None:
        self.request_read, self.request_write = os.pipe()
        self.answer_read, self.answer_write = os.pipe()
        os.set_blocking(self.answer_read, False)
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        """The thread: read a request (a file descriptor), fsync it, write its errno; until the
        request pipe is closed (or the answer pipe cannot be written: the owner is gone)."""
        cdef int64_t message = 0
        cdef int requests = self.request_read, answers = self.answer_write
        with nogil:
            while read(requests, &message, sizeof(message)) == sizeof(message):
                message = 0 if fdatasync(<int>message) == 0 else errno
                if write(answers, &message, sizeof(message)) != sizeof(message):
                    break

    def fileno(self) -> int:
        """The descriptor that is readable while an answer waits (`result`): poll it."""
        return self.answer_read

    def request(self, int fd) -> None:
        """Ask for an fsync of ``fd``, which must stay open until it is answered."""
        cdef int64_t message = fd
        if write(self.request_write, &message, sizeof(message)) != sizeof(message):
            raise OSError(errno, os.strerror(errno))

    def result(self):
        """The errno of the oldest fsync answered and not yet read (0: it succeeded); None if
        no answer waits."""
        cdef int64_t message = 0
        if read(self.answer_read, &message, sizeof(message)) != sizeof(message):
            return None
        return message

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds (None: for ever) for an answer: whether one waits."""
        readable, _, _ = select.select([self.answer_read], [], [], timeout)
        return bool(readable)

    def close(self) -> None:
        """End the thread once the fsync in hand, if any, is done; close the pipes."""
        if self.request_write < 0:
            return
        close_fd(self.request_write)
        self.request_write = -1
        self.thread.join()
        for fd in (self.request_read, self.answer_read, self.answer_write):
            close_fd(fd)
