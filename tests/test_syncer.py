"""`native.syncer.Syncer`: fsyncs on a thread of its own, answered in order on a pipe."""

import errno
import os
import threading

from native.syncer import Syncer


def test_fsyncs_are_answered_in_the_order_asked_with_their_errno(tmp_path):
    """A file's fsync succeeds (0); a pipe's cannot be done (EINVAL, as a failing disk's EIO
    would be reported); nothing waits once every answer is read."""
    syncer = Syncer("test-fsync")
    pipe = os.pipe()
    try:
        with open(tmp_path / "journal", "wb") as file:
            file.write(b"records")
            file.flush()
            assert syncer.result() is None and not syncer.wait(0)
            syncer.request(file.fileno())
            syncer.request(pipe[0])
            syncer.request(file.fileno())
            answers = []
            while len(answers) < 3:
                assert syncer.wait(10)
                answer = syncer.result()
                if answer is not None:
                    answers.append(answer)
            assert answers == [0, errno.EINVAL, 0]
            assert syncer.result() is None and not syncer.wait(0)
    finally:
        syncer.close()
        for fd in pipe:
            os.close(fd)


def test_close_ends_the_thread_and_may_be_repeated(tmp_path):
    before = {thread.name for thread in threading.enumerate()}
    syncer = Syncer("test-fsync-closed")
    assert "test-fsync-closed" in {thread.name for thread in threading.enumerate()} - before
    with open(tmp_path / "journal", "wb") as file:
        syncer.request(file.fileno())
        syncer.close()
    assert "test-fsync-closed" not in {thread.name for thread in threading.enumerate()}
    syncer.close()
