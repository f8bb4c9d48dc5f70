"""The suite's guard against a hang (`conftest._leave_unclosed`): a ZeroMQ context that a failed
test leaves to the garbage collector, in one cycle with its open sockets, is left open with a
warning, not terminated (which waits forever for sockets whose weak references are gone)."""

import gc
import re

import pytest
import zmq


class Holder:
    """What a failed test's frames are to the collector: a cycle holding a context and its sockets."""


def test_a_context_collected_in_a_cycle_with_its_open_sockets_is_left_open_with_a_warning():
    holder = Holder()
    holder.cycle = holder
    holder.context = zmq.Context()
    holder.sockets = [holder.context.socket(zmq.DEALER) for _ in range(3)]
    for socket in holder.sockets:
        socket.connect("tcp://127.0.0.1:9")
    described = repr(holder.context)
    del holder, socket
    with pytest.warns(ResourceWarning, match=re.escape(f"unclosed ZeroMQ context {described}, left open")):
        gc.collect()
