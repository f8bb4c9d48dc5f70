"""A stand-in for a kdb+ tickerplant and its RDB, speaking kdb+ IPC on loopback (aiokdb).

kdb+ itself needs an online licence, so the tests and the IPC benchmark publish to this
instead: ``python -m database.ticks.standin PORT [PASSWORD]`` serves 127.0.0.1:PORT and
prints ``READY PORT`` once listening. It takes what kx's tick.q takes and keeps what an RDB
loaded with ``schema.q`` would:

- the tables and their columns' kdb+ types are read from ``schema.q`` (so a schema.q that
  disagrees with what the publisher sends shows up as an error);
- ``.u.upd[`table; columns]`` (async, or sync) is checked as tick.q and ``insert`` would
  check it (a known table; a timespan first column, as tick.q otherwise prepends its own
  time; as many columns as the schema, each of its type, all of one length); a bad message
  is recorded in ``.standin.errors`` and otherwise ignored, as an async error is in kdb+;
- every good message is counted in the log (``.standin.logged`table``: rows received,
  duplicates included, like the tickerplant's log), then applied as ``.ticks.upd`` does:
  rows whose sequence is at or below the highest the table holds for their shard are dropped.

It answers these synchronous queries (strings, compared exactly): ``::``, ``tables[]``,
``count TABLE``, ``meta TABLE`` (columns ``c`` and ``t``, as q's meta), ``TABLE`` (the
rows), ``.standin.logged`TABLE`` and ``.standin.errors[]``. Anything else is an error.

`StandIn` runs it as a child process for tests and benchmarks, and queries it with pykx.
It needs aiokdb, a development dependency (``pip install -e '.[dev]'``).
"""

import asyncio
import os
import re
import select
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
from aiokdb import TypeEnum, kj, kk, kNil, krr, ktn, xd, xt
from aiokdb.extras import ktns
from aiokdb.server import ServerContext, handle_connection

from config.ports import free_port

SCHEMA_Q = Path(__file__).with_name("schema.q")
TYPES = {"n": TypeEnum.KN, "s": TypeEnum.KS, "f": TypeEnum.KF, "j": TypeEnum.KJ, "c": TypeEnum.KC}
_Q_TYPES = {"timespan": "n", "symbol": "s", "float": "f", "long": "j", "char": "c"}
_TABLE = re.compile(r"^(\w+):\(\[\]\s*(.*)\)\s*$", re.MULTILINE)
_COLUMN = re.compile(r"(\w+):`(\w+)\$\(\)")


def q_schema(text: str) -> dict[str, list[tuple[str, str]]]:
    """The tables ``schema.q`` defines: ``{table: [(column, kdb+ type char), ...]}``."""
    return {
        name: [(column, _Q_TYPES[kind]) for column, kind in _COLUMN.findall(body)]
        for name, body in _TABLE.findall(text)
    }


class Tickerplant(ServerContext):
    """What the stand-in holds: the schema, the log's row counts, the deduplicated tables."""

    def __init__(self, schema: dict[str, list[tuple[str, str]]], password: str | None = None) -> None:
        super().__init__(password)
        self.schema = schema
        self.columns = {table: {name: [] for name, _ in columns} for table, columns in schema.items()}
        self.logged = dict.fromkeys(schema, 0)
        self.marks: dict[tuple[str, str], int] = {}
        self.errors: list[str] = []

    async def on_async_message(self, cmd, writer) -> None:
        self.upd(cmd)

    async def on_sync_request(self, cmd, writer):
        if cmd.t == TypeEnum.K:
            self.upd(cmd)
            return kNil
        query = cmd.aS() if cmd.t == TypeEnum.KC else None
        if query == "::":
            return kNil
        if query == "tables[]":
            return ktns(*self.schema)
        if query == ".standin.errors[]":
            return ktns(*self.errors)
        verb, _, table = (query or "").rpartition(" ")
        if table.startswith(".standin.logged`"):
            verb, table = "logged", table.partition("`")[2]
        if table in self.schema:
            if verb == "count":
                return kj(len(self.columns[table]["sequence"]))
            if verb == "logged":
                return kj(self.logged[table])
            if verb == "meta":
                return xt(xd(ktns("c", "t"), kk(ktns(*(c for c, _ in self.schema[table])),
                                                  _vector("c", "".join(t for _, t in self.schema[table])))))
            if not verb:
                return self.table(table)
        return krr(f"stand-in: unknown query {query!r}")

    def upd(self, cmd) -> None:
        """``.u.upd[table; columns]`` as a message list; errors are recorded, not raised."""
        items = cmd.kK()
        function = items[0].aS() if items and items[0].t in (TypeEnum.KC, -TypeEnum.KS) else None
        if function != ".u.upd" or len(items) != 3:
            self.errors.append(f"not a .u.upd call: {function!r} with {len(items) - 1} arguments")
            return
        table, data = items[1].aS(), items[2]
        problem = self._check(table, data)
        if problem:
            self.errors.append(f"{table}: {problem}")
            return
        values = {name: _values(kind, vector)
                  for (name, kind), vector in zip(self.schema[table], data.kK(), strict=True)}
        count = len(values["sequence"])
        self.logged[table] += count
        keep = [i for i in range(count)
                if values["sequence"][i] > self.marks.get((table, values["shard"][i]), 0)]
        for i in keep:
            key = (table, values["shard"][i])
            self.marks[key] = max(self.marks.get(key, 0), values["sequence"][i])
        for name, column in values.items():
            self.columns[table][name].extend(column[i] for i in keep)

    def table(self, table: str):
        names = [name for name, _ in self.schema[table]]
        vectors = [_vector(kind, self.columns[table][name]) for name, kind in self.schema[table]]
        return xt(xd(ktns(*names), kk(*vectors)))

    def _check(self, table: str, data) -> str | None:
        if table not in self.schema:
            return "no such table"
        if data.t != TypeEnum.K:
            return f"columns sent as type {data.t}, not a list of vectors"
        vectors = data.kK()
        expected = self.schema[table]
        if vectors and vectors[0].t != TypeEnum.KN:
            return f"first column of type {vectors[0].t}, not a timespan: tick.q would prepend its own time"
        if len(vectors) != len(expected):
            return f"{len(vectors)} columns, the table has {len(expected)}"
        for vector, (name, kind) in zip(vectors, expected, strict=True):
            if vector.t != TYPES[kind]:
                return f"column {name} of type {vector.t}, the table's is {int(TYPES[kind])} ({kind})"
        if len({len(vector) for vector in vectors}) > 1:
            return "columns of different lengths"
        return None


def _values(kind: str, vector) -> list:
    if kind in "nj":
        return np.frombuffer(vector.kJ(), dtype=np.int64).tolist()
    if kind == "f":
        return np.frombuffer(vector.kF(), dtype=np.float64).tolist()
    if kind == "s":
        return list(vector.kS())
    return list(vector.aS())


def _vector(kind: str, values: list):
    if kind == "s":
        return ktns(*values)
    vector = ktn(TYPES[kind])
    if kind in "nj":
        vector.kJ().frombytes(np.array(values, dtype=np.int64).tobytes())
    elif kind == "f":
        vector.kF().frombytes(np.array(values, dtype=np.float64).tobytes())
    else:
        vector.kC().fromunicode("".join(values))
    return vector


async def serve(port: int, password: str | None) -> None:
    context = Tickerplant(q_schema(SCHEMA_Q.read_text()), password)
    server = await asyncio.start_server(partial(handle_connection, context), "127.0.0.1", port)
    print(f"READY {port}", flush=True)
    async with server:
        await server.serve_forever()


class StandIn:
    """The stand-in as a child process on a free loopback port; `restart` keeps the port."""

    def __init__(self, password: str | None = None, port: int | None = None) -> None:
        self.password = password
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self.start()

    def __enter__(self) -> "StandIn":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()

    def start(self) -> None:
        """Start it; returns once it listens (it prints its READY line), RuntimeError if it
        does not within 30 s."""
        command = [sys.executable, "-m", "database.ticks.standin", str(self.port)]
        if self.password:
            command.append(self.password)
        self.process = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        ready = select.select([self.process.stdout], [], [], 30)[0]
        line = self.process.stdout.readline() if ready else ""
        if not line.startswith("READY"):
            self.process.kill()
            raise RuntimeError(f"the kdb+ stand-in did not start (exit {self.process.wait()})")

    def kill(self) -> None:
        """``kill -9``: the tickerplant and its RDB are gone, with everything they held."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process.stdout.close()

    def restart(self) -> None:
        self.kill()
        self.start()

    def query(self, text: str):
        """The answer to a synchronous query, over a new pykx connection."""
        from database.ticks.kdb import kx

        with kx.SyncQConnection("127.0.0.1", self.port, password=self.password or "", no_ctx=True,
                                timeout=10.0) as connection:
            return connection(text)

    def count(self, table: str) -> int:
        return self.query(f"count {table}").py()

    def logged(self, table: str) -> int:
        return self.query(f".standin.logged`{table}").py()

    def errors(self) -> list[str]:
        return self.query(".standin.errors[]").py()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))
