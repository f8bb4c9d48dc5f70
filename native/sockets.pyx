# cython: boundscheck=False, wraparound=False
"""A ZeroMQ socket's messages read and sent in C, for the servers' loops and the load generator.

pyzmq makes every socket option it reads into an `enum` member first (`Socket.get`): on this
project's AMD EPYC host a ``get(zmq.EVENTS)`` or ``get(zmq.RCVMORE)`` costs 1.7-3.7 µs, most of
it that conversion, and `Socket.recv_multipart` reads ``RCVMORE`` after every part. A loop that
reads a two-part message and then asks whether another is queued spends 5-10 µs on that alone,
more than the rest of reading it. `receive` reads a message with libzmq's own calls, without
waiting, until libzmq says none is queued (``EAGAIN``: no exception made), so nothing is asked
twice. `send` likewise: pyzmq's ``send_multipart`` checks each part in Python first (4.4 µs for
two parts here, against 0.5 µs for one part through its extension's ``send``).

The libzmq calls are those of the library pyzmq itself runs on: looked up, once, among the
libraries pyzmq's extension module loaded (``dlopen`` of that module with ``RTLD_NOLOAD``, then
``dlsym``, which searches the module and what it depends on), so a socket's handle
(`zmq.Socket.underlying`) is only ever given to the library that made it. Where that lookup
fails (another platform, another build of pyzmq), or for an object that is not a pyzmq socket
(a benchmark's stand-in), `receive`, `queued` and `send` do what pyzmq's API does, with the
same result.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.string cimport memcpy
from libc.errno cimport EAGAIN, EHOSTUNREACH, EINTR
from libc.stddef cimport size_t

import zmq
from zmq.backend.cython import _zmq

from native.framing import join_frames


cdef extern from "dlfcn.h" nogil:
    void* dlopen(const char* filename, int flags)
    void* dlsym(void* handle, const char* symbol)
    int RTLD_NOW
    int RTLD_NOLOAD


cdef extern from *:
    """
    /* libzmq's zmq_msg_t: 64 opaque bytes, aligned as a pointer (zmq.h). */
    typedef struct { unsigned char opaque[64]; } __attribute__((aligned(sizeof(void *)))) zmq_message_t;
    """
    ctypedef struct zmq_message_t:
        pass


ctypedef int (*msg_init_t)(zmq_message_t*) noexcept nogil
ctypedef int (*msg_init_size_t)(zmq_message_t*, size_t) noexcept nogil
ctypedef int (*msg_send_t)(zmq_message_t*, void*, int) noexcept nogil
ctypedef int (*msg_recv_t)(zmq_message_t*, void*, int) noexcept nogil
ctypedef void* (*msg_data_t)(zmq_message_t*) noexcept nogil
ctypedef size_t (*msg_size_t)(const zmq_message_t*) noexcept nogil
ctypedef int (*msg_more_t)(const zmq_message_t*) noexcept nogil
ctypedef int (*msg_close_t)(zmq_message_t*) noexcept nogil
ctypedef int (*msg_copy_t)(zmq_message_t*, zmq_message_t*) noexcept nogil
ctypedef const char* (*msg_gets_t)(const zmq_message_t*, const char*) noexcept nogil
ctypedef int (*getsockopt_t)(void*, int, void*, size_t*) noexcept nogil
ctypedef int (*errno_t)() noexcept nogil

cdef enum:
    SEND_ON_STACK = 4      # parts of a message `send` holds on its stack (more: on the heap)
    ZMQ_DONTWAIT = 1       # zmq.h
    ZMQ_SNDMORE = 2
    ZMQ_EVENTS = 15
    ZMQ_POLLIN = 1

cdef msg_init_t msg_init = NULL
cdef msg_init_size_t msg_init_size = NULL
cdef msg_send_t msg_send = NULL
cdef msg_recv_t msg_recv = NULL
cdef msg_data_t msg_data = NULL
cdef msg_size_t msg_size = NULL
cdef msg_more_t msg_more = NULL
cdef msg_close_t msg_close = NULL
cdef msg_copy_t msg_copy = NULL
cdef msg_gets_t msg_gets = NULL
cdef getsockopt_t getsockopt = NULL
cdef errno_t zmq_errno = NULL


cdef void* _lookup(void* module, const char* name, list missing) except? NULL:
    """``name``'s address in ``module`` or what it loaded; NULL, and ``name`` added to ``missing``,
    if neither has it."""
    cdef void* found = dlsym(module, name)
    if found == NULL:
        missing.append(name)
    return found


cdef bint _bind() except -1:
    """Look up the libzmq calls in the library pyzmq runs on; False if any is missing."""
    global msg_init, msg_init_size, msg_send, msg_recv, msg_data, msg_size, msg_more, msg_close, msg_copy, msg_gets
    global getsockopt, zmq_errno
    path = _zmq.__file__.encode()
    cdef void* module = dlopen(path, RTLD_NOW | RTLD_NOLOAD)
    if module == NULL:
        return False
    cdef list missing = []
    msg_init = <msg_init_t>_lookup(module, b"zmq_msg_init", missing)
    msg_init_size = <msg_init_size_t>_lookup(module, b"zmq_msg_init_size", missing)
    msg_send = <msg_send_t>_lookup(module, b"zmq_msg_send", missing)
    msg_recv = <msg_recv_t>_lookup(module, b"zmq_msg_recv", missing)
    msg_data = <msg_data_t>_lookup(module, b"zmq_msg_data", missing)
    msg_size = <msg_size_t>_lookup(module, b"zmq_msg_size", missing)
    msg_more = <msg_more_t>_lookup(module, b"zmq_msg_more", missing)
    msg_close = <msg_close_t>_lookup(module, b"zmq_msg_close", missing)
    msg_copy = <msg_copy_t>_lookup(module, b"zmq_msg_copy", missing)
    msg_gets = <msg_gets_t>_lookup(module, b"zmq_msg_gets", missing)
    getsockopt = <getsockopt_t>_lookup(module, b"zmq_getsockopt", missing)
    zmq_errno = <errno_t>_lookup(module, b"zmq_errno", missing)
    return not missing


IN_C = _bind()
"""Whether pyzmq's sockets are read and sent on with libzmq's calls here (else through pyzmq's API)."""

cdef object SOCKET = zmq.Socket
cdef object AGAIN = zmq.Again


cdef void* _handle(socket) except NULL:
    """The libzmq socket of the pyzmq ``socket``; ZMQError (ENOTSOCK) once it is closed (its
    ``_closed``, which pyzmq's own ``send`` and ``recv`` check; its ``closed`` asks libzmq)."""
    if socket._closed:
        raise zmq.ZMQError(zmq.ENOTSOCK)
    cdef size_t address = socket.underlying
    if address == 0:
        raise zmq.ZMQError(zmq.ENOTSOCK)
    return <void*>address


def receive(socket, bint user_id=False):
    """The parts (bytes) of the next message queued on ``socket``, read without waiting; None if
    none is queued. With ``user_id``, ``(parts, user)``: the ``User-Id`` libzmq gives the last
    part (its peer's, as authenticated; None if it has none). Other errors raise `zmq.ZMQError`,
    as pyzmq's ``recv`` does. A message's parts are all read, however many it has: libzmq
    delivers a message whole or not at all."""
    if not IN_C or not isinstance(socket, SOCKET):
        return _receive_in_python(socket, user_id)
    cdef void* handle = _handle(socket)
    cdef zmq_message_t message
    cdef list parts = []
    cdef int rc, error
    cdef bint more = True
    cdef const char* user = NULL
    user_text = None
    while more:
        msg_init(&message)
        rc = msg_recv(&message, handle, ZMQ_DONTWAIT)
        if rc < 0:
            error = zmq_errno()
            msg_close(&message)
            if error == EINTR:
                continue
            if error == EAGAIN and not parts:
                return None
            raise zmq.ZMQError(error)
        more = msg_more(&message)
        try:
            parts.append(PyBytes_FromStringAndSize(<const char*>msg_data(&message), msg_size(&message)))
            if user_id and not more:
                user = msg_gets(&message, b"User-Id")
                if user != NULL:
                    user_text = user.decode()
        except BaseException:
            msg_close(&message)
            if more:
                _discard(handle)
            raise
        msg_close(&message)
    return (parts, user_text) if user_id else parts


cdef void _discard(void* handle) noexcept:
    """Read and drop the rest of a message whose part could not be taken (out of memory), so that
    the next read starts at a message, not inside one."""
    cdef zmq_message_t message
    cdef bint more = True
    while more:
        msg_init(&message)
        if msg_recv(&message, handle, ZMQ_DONTWAIT) < 0:
            more = zmq_errno() == EINTR
        else:
            more = msg_more(&message)
        msg_close(&message)


def queued(socket) -> bool:
    """Whether a message is queued on ``socket`` (``ZMQ_EVENTS`` has ``POLLIN``)."""
    cdef int events = 0
    cdef size_t size = sizeof(int)
    if not IN_C or not isinstance(socket, SOCKET):
        return bool(socket.get(zmq.EVENTS) & ZMQ_POLLIN)
    while getsockopt(_handle(socket), ZMQ_EVENTS, &events, &size) < 0:
        error = zmq_errno()
        if error != EINTR:
            raise zmq.ZMQError(error)
    return bool(events & ZMQ_POLLIN)


def signals(socket) -> int:
    """The descriptor that signals ``socket``'s ZeroMQ commands (``ZMQ_FD``), polled in its place
    for a socket that is seldom readable: a ZeroMQ socket in a poll costs a check of its command
    queue (a system call) before the wait and another after it, where a descriptor costs only its
    place in ``poll``. With its monitor and its marks feed (since moved onto its command socket)
    polled so, the TES's idle CPU at 10,000 orders/s fell by 1.3 µs per order on this project's AMD
    EPYC host (`bench e2e`, the medians of four alternating pairs).

    The descriptor is edge-triggered: it becomes readable when a command reaches the socket
    while its reader has found its queues empty (a message on an empty pipe, a new connection),
    and any call on the socket that reads its commands (a receive, a send, `queued`) clears it.
    So each time it signals, and once before the first poll (a pipe's first messages signal
    nothing until it has been found empty once), the socket must be read until nothing is
    queued; or, where a turn reads only so many or also sends on it, `queued` asked last, and
    the socket read again without waiting while that says a message is queued."""
    return socket.getsockopt(zmq.FD)


cdef int _send_part(zmq_message_t* message, void* handle, int flags) noexcept:
    """``zmq_msg_send``; one that may wait (no ``ZMQ_DONTWAIT``) lets other threads run meanwhile,
    as pyzmq does."""
    cdef int rc
    if flags & ZMQ_DONTWAIT:
        return msg_send(message, handle, flags)
    with nogil:
        rc = msg_send(message, handle, flags)
    return rc


def send(socket, parts, int flags=0):
    """Send ``parts`` (a sequence of bytes, at least one) as one message on ``socket``, each
    copied, as pyzmq's ``send_multipart(parts, flags)`` does; ``flags`` 0 or ``zmq.NOBLOCK``.
    TypeError, nothing sent, unless every part is bytes; MemoryError, nothing sent, if a part
    cannot be copied (every part is copied before the first is sent, so no part of a message is
    left in the socket to join the next).
    `zmq.Again` if the socket would not take it without waiting (with ``zmq.NOBLOCK``; nothing of
    it is sent then: libzmq takes the rest of a message whose first part it took), `zmq.ZMQError`
    for any other failure."""
    if not IN_C or not isinstance(socket, SOCKET):
        socket.send_multipart(parts, flags)
        return
    cdef void* handle = _handle(socket)
    cdef Py_ssize_t count = len(parts), i, made = 0, sent = 0
    cdef zmq_message_t few[SEND_ON_STACK]
    cdef zmq_message_t* messages = few
    cdef bytes part
    cdef int error = 0
    if count == 0:
        raise ValueError("a message has at least one part")
    for i in range(count):
        if type(parts[i]) is not bytes:
            raise TypeError(f"a message's parts are bytes, not {type(parts[i]).__name__}")
    if count > SEND_ON_STACK:
        messages = <zmq_message_t*>PyMem_Malloc(count * sizeof(zmq_message_t))
        if messages == NULL:
            raise MemoryError("out of memory for a ZeroMQ message")
    try:
        while made < count:
            part = parts[made]
            if msg_init_size(&messages[made], <size_t>PyBytes_GET_SIZE(part)) < 0:
                raise MemoryError("out of memory for a ZeroMQ message")
            memcpy(msg_data(&messages[made]), PyBytes_AS_STRING(part), <size_t>PyBytes_GET_SIZE(part))
            made += 1
        while sent < count:
            if _send_part(&messages[sent], handle, flags | (ZMQ_SNDMORE if sent < count - 1 else 0)) >= 0:
                sent += 1
                continue
            error = zmq_errno()
            if error != EINTR:
                break
        if error == EAGAIN:
            raise AGAIN()
        if sent < count:
            raise zmq.ZMQError(error)
    finally:
        for i in range(sent, made):
            msg_close(&messages[i])
        if messages != few:
            PyMem_Free(messages)


def send_each(socket, identities, bytes topic, bytes frame):
    """Send the message ``(identity, topic, frame)`` to each of ``identities`` (bytes) on ``socket``,
    a ROUTER with ROUTER_MANDATORY set, none waiting: ``(full, gone)``, how many were not sent
    because that connection's queue was full, and the identities of no connection (EHOSTUNREACH),
    in their order. The frame is copied once, whatever the number of identities: libzmq's copies
    of a message share its buffer. Other errors raise `zmq.ZMQError`, TypeError for an identity
    that is not bytes (nothing sent to it or after it)."""
    cdef Py_ssize_t full = 0
    cdef list gone = []
    if not IN_C or not isinstance(socket, SOCKET):
        for identity in identities:
            try:
                socket.send_multipart((identity, topic, frame), zmq.NOBLOCK)
            except AGAIN:
                full += 1
            except zmq.ZMQError as exc:
                if exc.errno != EHOSTUNREACH:
                    raise
                gone.append(identity)
        return full, gone
    cdef void* handle = _handle(socket)
    cdef zmq_message_t body
    cdef int error
    if msg_init_size(&body, <size_t>PyBytes_GET_SIZE(frame)) < 0:
        raise MemoryError("out of memory for a ZeroMQ message")
    memcpy(msg_data(&body), PyBytes_AS_STRING(frame), <size_t>PyBytes_GET_SIZE(frame))
    try:
        for identity in identities:
            if type(identity) is not bytes:
                raise TypeError(f"an identity is bytes, not {type(identity).__name__}")
            error = _send_bytes(handle, identity, ZMQ_DONTWAIT | ZMQ_SNDMORE)
            if error == EAGAIN:
                full += 1
                continue
            if error == EHOSTUNREACH:
                gone.append(identity)
                continue
            if error == 0:
                error = _send_bytes(handle, topic, ZMQ_DONTWAIT | ZMQ_SNDMORE)
            if error == 0:
                error = _send_copy(handle, &body)
            if error != 0:
                raise zmq.ZMQError(error)
    finally:
        msg_close(&body)
    return full, gone


cdef int _send_bytes(void* handle, bytes data, int flags) except -1:
    """Send ``data`` as one part; 0, or the error's number (nothing of it sent)."""
    cdef zmq_message_t part
    if msg_init_size(&part, <size_t>PyBytes_GET_SIZE(data)) < 0:
        raise MemoryError("out of memory for a ZeroMQ message")
    memcpy(msg_data(&part), PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data))
    return _send_now(handle, &part, flags)


cdef int _send_copy(void* handle, zmq_message_t* body) noexcept:
    """Send a copy of ``body`` (its buffer shared) as the last part; 0, or the error's number."""
    cdef zmq_message_t part
    cdef int error
    msg_init(&part)
    if msg_copy(&part, body) < 0:
        error = zmq_errno()
        msg_close(&part)
        return error
    return _send_now(handle, &part, ZMQ_DONTWAIT)


cdef int _send_now(void* handle, zmq_message_t* part, int flags) noexcept:
    """``zmq_msg_send`` of ``part``, again while a signal interrupts it (a message it did not take
    is still the caller's, whole); 0, ``part`` taken, or the error's number, ``part`` closed."""
    cdef int error
    while msg_send(part, handle, flags) < 0:
        error = zmq_errno()
        if error != EINTR:
            msg_close(part)
            return error
    return 0


def send_joined(socket, dict outbox, encode, Py_ssize_t max_messages, Py_ssize_t max_bytes):
    """Send each destination's messages in ``outbox`` (destination -> list) joined into frames
    (`native.framing.join_frames` with ``encode``, ``max_messages`` and ``max_bytes``), each frame
    as the message ``(destination, frame)``, with `send` (waiting if the socket would: a ROUTER
    drops rather than waits)."""
    for destination, messages in outbox.items():
        for frame in join_frames(messages, encode, max_messages, max_bytes):
            send(socket, (destination, frame))


def _receive_in_python(socket, bint user_id):
    """`receive` through pyzmq's API (or a stand-in's ``recv_multipart``)."""
    try:
        if not user_id:
            return socket.recv_multipart(zmq.NOBLOCK)
        frames = socket.recv_multipart(zmq.NOBLOCK, copy=False)
    except AGAIN:
        return None
    try:
        user = frames[len(frames) - 1].get("User-Id")
    except zmq.ZMQError:
        user = None
    return [frame.bytes for frame in frames], user
