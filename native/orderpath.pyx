# cython: boundscheck=False, wraparound=False
"""The OBS's order path: a turn's order commands run, journaled and answered in C.

`OrderPath.run` takes a run of a turn's work (`servers.obs.OrderBookServer._execute`) off the
interpreter: each BookSubmit, BookCancel or BookReplace sequenced for a book in CONTINUOUS, a
Struct or as read from its frame in C (`native.commands.OrderCommand`, whose ints it reads with no
object in between), goes straight to the book's encoded core (`NativeBook.execute_encoded` or
`execute_values`: matching, then the journal entry, the Executed reply and the market data
written as msgpack), and the shard's state and the
turn's outputs change as `servers.shard.Shard.execute_encoded` and the OBS's Python loop change
them. It stops at the first item it does not run (another command, a refusal, a Hello, a
query, a book in another phase, a field beyond int64) and after a command whose fills owe a
volatility interruption, and says where: the Python loop handles that item and calls it again.
`OrderPath.execute` is one command of the path, for `Shard.execute_encoded` (the live loop's
other commands and recovery go through it too), so the state each command leaves is made here
once, for both. Before it, `OrderPath.take` reads a turn's frames off the command socket and
sequences them (`OrderPath.sequence`) for as long as each is wholly order commands its sender may
send, the common turn, with no Python loop around each frame; the frame it stops at is handed to
the Python loop, which goes on from there.

Invariant: after each command it runs, the shard is as `Shard.execute_encoded` leaves it (its
sequence and time, the feed's market-data sequence, quote and last price, the order-id high-water
mark as `Shard.max_order_id` reads it (one TES's is kept here in C until read), the GTD expiry
heap, the symbols traded, an interruption owed, the replies kept for `Shard.replay`) and the
turn's outputs hold what the Python loop puts there: the journal entry, the reply to the sender,
and the same reply once to each other TES the command concerns.
"""

from cpython.long cimport PyLong_Check, PyLong_CheckExact
from cpython.object cimport PyObject
from libc.stdint cimport int64_t
from posix.time cimport CLOCK_REALTIME, clock_gettime, timespec

from native.book cimport NativeBook, Outcome
from native.commands cimport OrderCommand
from native.framing cimport Records
from native.replies cimport Replies
from native.int64 cimport as_int64
from native.structs cimport borrowed_field, field, field_offset

from native.sockets import receive

cdef int64_t GTD_ACCEPTED = 2          # `Outcome.accepted` of an order accepted as GTD

cdef enum:
    KINDS = 3                # the order commands: `NativeBook.execute_encoded`'s kinds 0, 1, 2
    MAX_FIELDS = 16          # the most fields of one (BookSubmit has 15)


cdef class FeedState:
    """What the order path reads and changes of a symbol's feed per command, as C fields: the
    base of `servers.marketdata.Feed`, which says what each is."""

    cdef public NativeBook book
    cdef public int64_t sequence
    cdef public object quote, last_price


cdef class Run:
    """`OrderPath.run`'s turn: its outputs, and what the command before looked up (a turn's
    commands come in runs of one symbol from one sender): its symbol with that symbol's feed,
    msgpack, volatility bands and market data so far, and its sender with its replies so far;
    and the last ``concerned`` and sender that `route` sent to no other TES (the ``tes`` it
    reads does not change during a run), whose routing is then skipped."""

    cdef dict outbox, market_data, tes
    cdef Records entries
    cdef list published, replies
    cdef Replies history
    cdef object symbol, guard, identity, alone, alone_sender
    cdef FeedState feed
    cdef bytes packed

    def __cinit__(self, dict outbox, dict market_data, Records entries, dict tes, Replies history):
        self.outbox, self.market_data, self.entries, self.tes = outbox, market_data, entries, tes
        self.history = history


cdef list replies_to(dict outbox, identity):
    """The replies so far to ``identity`` in ``outbox`` (a new list there for the first)."""
    cdef list replies = outbox.get(identity)
    if replies is None:
        replies = outbox[identity] = []
    return replies


cpdef int route(dict outbox, dict tes, identity, reply, tuple concerned) except -1:
    """Queue ``reply`` once to each TES (``tes``: id -> the identity of its Hello) among the ids
    ``concerned`` other than its sender ``identity`` (whose copy the caller queues): the rest of
    a command's routing, for the order path and the OBS's other commands alike. Returns how many
    TESs it was queued to."""
    cdef list sent = None
    for tes_id in concerned:
        destination = tes.get(tes_id)
        if destination is None or destination == identity:
            continue
        if sent is None:
            sent = [destination]
        elif destination in sent:
            continue
        else:
            sent.append(destination)
        replies_to(outbox, destination).append(reply)
    return 0 if sent is None else len(sent)


cpdef void note_accepted(dict max_ids, order_id, int shift) except *:
    """An order was accepted: ``max_ids`` keeps, per TES id (``order_id >> shift``), the largest
    order id accepted with it (what a Hello reply names), for the order path and
    `servers.shard.Shard.execute` alike."""
    tes_id = order_id >> shift
    if order_id > max_ids.get(tes_id, 0):
        max_ids[tes_id] = order_id


cdef class OrderPath:
    """The order path of one `servers.shard.Shard`: its containers, fixed for the shard's life,
    are held here; its scalar state (sequence, time, the replies kept) is read and written on it.

    ``kinds`` maps each order command's type (a msgspec Struct class) to
    `NativeBook.execute_encoded`'s ``kind``, which reads its fields in place, at their offsets
    (`native.structs`); an order id's top bits above ``shift`` name its TES."""

    cdef object shard
    cdef object entry, reply, concerned          # the last command `_execute` ran: its outputs
    cdef int64_t stamp                           # and the stamp of the last item `_run_one` ran
    cdef int64_t noted_tes, noted_max            # a TES id and the largest id accepted with it not yet noted
    cdef dict feeds, symbols, max_ids, traded, guards, kinds
    cdef set owed
    cdef int shift
    cdef Py_ssize_t offsets[KINDS][MAX_FIELDS]
    cdef Py_ssize_t counts[KINDS]
    cdef Py_ssize_t symbol_at[KINDS]
    cdef Py_ssize_t order_id_at[KINDS]

    def __init__(self, shard, dict kinds, int shift):
        self.shard = shard
        self.feeds = shard.feeds
        self.symbols = shard._symbols
        self.max_ids = shard._max_ids
        self.traded = shard.traded
        self.guards = shard.guards
        self.owed = shard.owed
        self.kinds = kinds
        self.shift = shift
        self.noted_tes = -1
        for command, kind in kinds.items():
            names = command.__struct_fields__
            if not 0 <= kind < KINDS or len(names) > MAX_FIELDS:
                raise ValueError(f"{command.__name__}: not an order command of the path")
            self.counts[kind] = len(names)
            for i, name in enumerate(names):
                self.offsets[kind][i] = field_offset(command, name)
            self.symbol_at[kind] = field_offset(command, "symbol")
            self.order_id_at[kind] = field_offset(command, "order_id")

    def sequence(self, list work, identity, list messages, Py_ssize_t start, tes_id, int64_t sequence,
                 int64_t stamp):
        """Sequence ``messages[start:]``, one frame's from ``identity``, into ``work`` as the OBS
        does (`servers.obs.OrderBookServer._serve_commands`), while each is an order command on
        a symbol of the shard (a Struct, or an `OrderCommand` of the shard's
        `native.commands.CommandReader`) that its sender may send, at the next ``sequence`` and the
        exchange time: the wall clock's nanoseconds, read once per call (the commands of one frame
        arrived together), never going back from ``stamp``. A Struct's item is ``(identity,
        command, sequence, stamp)``; an `OrderCommand` is its own item, those written into it
        (no tuple or int is made for it).
        ``tes_id`` is the sender's `servers.security.Peer.tes_id`:
        None may name any order, a positive id the orders of its prefix, anything else none.
        Returns ``(index, sequence, stamp)``: the first message not sequenced
        (``len(messages)`` if none is left), the last sequence and stamp given."""
        index = self._sequence(work, identity, messages, start, tes_id, &sequence, &stamp)
        return index, sequence, stamp

    def take(self, socket, bint with_user, dict peers, anyone, nobody, reader, list work, int64_t sequence,
             int64_t stamp, Py_ssize_t max_frames, Py_ssize_t max_messages):
        """Steps 1 and 2 of the OBS's turn (`servers.obs.OrderBookServer._serve_commands`) for the
        frames that are wholly order commands its sender may send: read each frame queued on the
        command ``socket`` (`native.sockets.receive`; ``with_user``: CURVE is on, the sender is
        ``peers`` of the frame's User-Id, else ``nobody``; off, ``anyone``), read its commands with
        ``reader`` (`native.commands.CommandReader`) and `sequence` them all into ``work``, until
        none is queued, ``max_frames`` frames are read, or ``work`` holds ``max_messages`` items.
        It stops at the first frame it cannot take whole, already read: the rest of that frame
        and of the turn are the Python loop's.
        Returns ``(frames, sequence, stamp, unread, started)``: the frames read, the last sequence
        and stamp given, and the frame it stopped at, if it stopped at one, as one of the last two
        (the other None): ``unread``, ``(parts, user)`` as received (not two parts, or not read by
        ``reader``), or ``started``, ``(identity, peer, messages, index)`` with its message
        ``index`` the first not sequenced."""
        cdef Py_ssize_t frames = 0, index, count
        while frames < max_frames and len(work) < max_messages:
            received = receive(socket, with_user)
            if received is None:
                break
            frames += 1
            if with_user:
                parts, user = received
                peer = peers.get(user, nobody) if peers else anyone
            else:
                parts, user, peer = received, None, anyone
            if len(parts) != 2:
                return frames, sequence, stamp, (parts, user), None
            messages = reader.read(parts[1])
            if messages is None:
                return frames, sequence, stamp, (parts, user), None
            count = len(messages)
            index = self._sequence(work, parts[0], messages, 0, peer.tes_id, &sequence, &stamp)
            if index < count:
                return frames, sequence, stamp, None, (parts[0], peer, messages, index)
        return frames, sequence, stamp, None, None

    cdef Py_ssize_t _sequence(self, list work, identity, list messages, Py_ssize_t start, tes_id,
                              int64_t* sequence_at, int64_t* stamp_at) except -1:
        """`sequence`, the last sequence and stamp given written to ``sequence_at`` and
        ``stamp_at``: the first message not sequenced."""
        cdef Py_ssize_t i, count = len(messages)
        cdef int64_t order_id, now, own = 0, sequence = sequence_at[0], stamp = stamp_at[0]
        cdef int kind
        cdef timespec clock
        cdef OrderCommand read
        cdef bint anyone = tes_id is None, clocked = False
        if not anyone:
            own = tes_id
            if own <= 0:
                return start
        stamped = None
        for i in range(start, count):
            message = messages[i]
            if type(message) is OrderCommand:
                if not anyone and (<OrderCommand>message).values[1] >> self.shift != own:
                    break
            else:
                found = self.kinds.get(type(message))
                if found is None:
                    break
                kind = found
                if field(message, self.symbol_at[kind]) not in self.feeds:
                    break
                if not anyone:
                    value = field(message, self.order_id_at[kind])
                    if not PyLong_Check(value) or as_int64(value, &order_id) or order_id >> self.shift != own:
                        break
            if not clocked:
                clock_gettime(CLOCK_REALTIME, &clock)
                now = clock.tv_sec * 1_000_000_000 + clock.tv_nsec
                if now > stamp:
                    stamp = now
                clocked = True
            sequence += 1
            if type(message) is OrderCommand:
                read = <OrderCommand>message
                read.identity, read.sequence, read.stamp = identity, sequence, stamp
                work.append(read)
            else:
                if stamped is None:
                    stamped = stamp
                work.append((identity, message, sequence, stamped))
        else:
            i = count
        sequence_at[0], stamp_at[0] = sequence, stamp
        return i

    def execute(self, command, int kind, int64_t sequence, int64_t time, list market_data):
        """Run ``command`` (of ``kinds[type(command)]``) as `Shard.execute_encoded` does:
        ``(entry, reply, concerned)``, or None, nothing changed, if its book is not in
        CONTINUOUS or a field is beyond int64 (`Shard.execute` runs it then). KeyError for a
        symbol the shard does not own."""
        symbol = command.symbol
        if not self._execute(command, symbol, self.feeds[symbol], self.symbols[symbol], self.guards.get(symbol), kind,
                             sequence, time, market_data, self.shard.history, None):
            return None
        shard = self.shard
        shard.sequence = sequence
        shard.time = time
        return (self.entry, self.reply, self.concerned)

    cdef bint _execute(self, command, symbol, FeedState feed, bytes packed, guard, int kind, int64_t sequence,
                       int64_t time, list market_data, Replies history, Records entries) except -1:
        """`execute` for ``command`` on ``symbol``, whose feed, msgpack and volatility bands
        (None: none) are ``feed``, ``packed`` and ``guard``, its reply kept in ``history`` (the
        shard's): True if it ran, its outputs then in `entry`, `reply` and `concerned`. With
        ``entries``, the journal entry is framed there from the book's buffer, and `entry` is an
        empty bytes. The shard's sequence and time are the caller's to set."""
        cdef Outcome out
        cdef bytes entry
        cdef NativeBook book = feed.book
        cdef PyObject* fields[MAX_FIELDS]
        cdef Py_ssize_t i, count = self.counts[kind]
        cdef OrderCommand read = None
        out.md_sequence = feed.sequence
        out.framed = entries is not None
        if type(command) is OrderCommand:
            read = <OrderCommand>command
            entry = book.execute_values(kind, read.values, count, read.account, read.account_size, sequence, time,
                                        packed, feed.quote, market_data, self.shift, &out)
        else:
            for i in range(count):
                fields[i] = borrowed_field(command, self.offsets[kind][i])
            entry = book.execute_encoded(fields, count, kind, sequence, time, packed, feed.quote, market_data,
                                         self.shift, &out)
        if entry is None:
            return False
        if entries is not None:
            entries.frame(sequence, out.entry, out.entry_size)
        self.entry, self.reply, self.concerned = entry, book.made_reply, book.made_concerned
        feed.quote = book.made_quote
        feed.sequence = out.md_sequence
        if out.accepted:
            if read is not None:
                self._accepted_id(read.values[1])
            else:
                self._accepted(field(command, self.order_id_at[kind]))
            if out.accepted == GTD_ACCEPTED:   # the id an int only here: most orders are not GTD
                order_id = read.values[1] if read is not None else field(command, self.order_id_at[kind])
                self.shard._expires(out.expire_at, symbol, order_id)
        if out.fills:
            last_price = feed.last_price
            feed.last_price = out.last
            self.traded[symbol] = (sequence, feed.last_price, self.concerned)
            if (guard is not None and symbol not in self.owed
                    and guard.breached((out.low, out.high), last_price, self.shard.phases[symbol].close)):
                self.shard._phase_state(symbol, owed=True)
        history.add(sequence, self.reply, self.concerned)
        return True

    cdef void _accepted(self, order_id) except *:
        """`note_accepted` of ``order_id``, kept in C (`noted_tes`, `noted_max`) while the orders
        accepted come from one TES: `note` writes it into the shard's ``max_ids``."""
        cdef int64_t value
        if not PyLong_CheckExact(order_id) or as_int64(order_id, &value):
            note_accepted(self.max_ids, order_id, self.shift)
            return
        self._accepted_id(value)

    cdef void _accepted_id(self, int64_t value) except *:
        """`_accepted` of an order id read as an int64."""
        cdef int64_t tes_id
        if value <= 0:
            note_accepted(self.max_ids, value, self.shift)
            return
        tes_id = value >> self.shift
        if tes_id != self.noted_tes:
            self.note()
            self.noted_tes, self.noted_max = tes_id, value
        elif value > self.noted_max:
            self.noted_max = value

    def note(self):
        """Write the largest order id accepted here and not yet noted into the shard's
        ``max_ids`` (`note_accepted`): what `servers.shard.Shard.max_order_id` reads is then whole."""
        if self.noted_tes >= 0:
            note_accepted(self.max_ids, self.noted_max, self.shift)
            self.noted_tes = -1

    def run(self, list work, Py_ssize_t start, dict outbox, dict market_data, Records entries, dict tes):
        """Run ``work[start:]`` (items ``(identity, command, sequence, stamp)`` of a turn, or an
        `OrderCommand` sequenced by `sequence`, in arrival order) while each is an order command
        sequenced to run (``sequence`` > 0) that its book takes in C: each at the shard's next
        sequence and its stamp, its journal entry framed into ``entries`` (`native.framing.Records`),
        its market data to ``market_data[symbol]``, its reply to ``outbox[identity]`` (unless the
        identity is None) and to ``outbox[tes[id]]`` for each other TES id it concerns, each
        destination once.
        Returns the index of the first item not run (``len(work)`` if none is left); after a
        command that leaves an interruption owed (`Shard.owed`), the index after it."""
        cdef Py_ssize_t i = start, count = len(work)
        cdef int64_t sequence = self.shard.sequence
        cdef Run run = Run(outbox, market_data, entries, tes, self.shard.history)
        while i < count:
            if not self._run_one(run, work[i], sequence + 1):
                break
            sequence += 1
            i += 1
            if self.owed:
                break
        if i > start:
            shard = self.shard
            shard.sequence = sequence
            shard.time = self.stamp
        return i

    cdef bint _run_one(self, Run run, item, int64_t sequence) except -1:
        """`run`'s step for one item: whether it ran (if not, nothing changed); its stamp then
        in `stamp`."""
        cdef int kind
        cdef int64_t stamp
        cdef OrderCommand read
        cdef tuple sequenced
        if type(item) is OrderCommand:
            read = <OrderCommand>item
            command, identity, stamp = read, read.identity, read.stamp
            if read.sequence <= 0:
                return False
        else:
            sequenced = <tuple>item
            command = sequenced[1]
            if sequenced[2] <= 0:
                return False
            identity, stamp = sequenced[0], sequenced[3]
        if type(command) is OrderCommand:
            kind = (<OrderCommand>command).kind
            symbol = (<OrderCommand>command).symbol
        else:
            found = self.kinds.get(type(command))
            if found is None:
                return False
            kind = found
            symbol = field(command, self.symbol_at[kind])
        if symbol is not run.symbol and symbol != run.symbol:
            run.feed, run.packed, run.guard = self.feeds[symbol], self.symbols[symbol], self.guards.get(symbol)
            run.published = run.market_data.get(symbol)
            if run.published is None:
                run.published = run.market_data[symbol] = []
            run.symbol = symbol
        if not self._execute(command, symbol, run.feed, run.packed, run.guard, kind, sequence, stamp,
                             run.published, run.history, run.entries):
            return False
        reply = self.reply
        if identity is not None:
            if identity is not run.identity:
                run.replies = replies_to(run.outbox, identity)
                run.identity = identity
            run.replies.append(reply)
        concerned = self.concerned
        if concerned is not run.alone or identity is not run.alone_sender:
            if route(run.outbox, run.tes, identity, reply, concerned):
                run.alone = None
            else:
                run.alone, run.alone_sender = concerned, identity
        self.stamp = stamp
        return True

