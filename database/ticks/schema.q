/ The exchange's tick tables for kx kdb+tick, matching database/ticks/schema.py (the tests
/ compare the two). The tickerplant loads it as its schema: copy it to tick/exchange.q and run
/   TZ=UTC q tick.q exchange /var/lib/tplog -p 5010
/ The RDB loads it for .ticks.upd: in a copy of kx's tick/r.q, replace the line upd:insert; with
/   system"l /path/to/schema.q"; upd:.ticks.upd;
/ (before the log replay at its end, so the replay drops duplicates too).
/
/ time is a timespan: the time of day, UTC, of the exchange time (nanoseconds since midnight).
/ The date is the tickerplant's partition (its .z.D when the message arrives): run tick.q with
/ TZ=UTC so its days are the exchange's UTC days. price, bid and ask are currency units (0n:
/ an empty side); sizes are lots; side is the aggressor, "B" or "S"; (shard; sequence) name
/ the journal record of the command that made the row.

trade:([]time:`timespan$();sym:`symbol$();price:`float$();size:`long$();trade_id:`long$();side:`char$();shard:`symbol$();sequence:`long$())
quote:([]time:`timespan$();sym:`symbol$();bid:`float$();ask:`float$();bsize:`long$();asize:`long$();shard:`symbol$();sequence:`long$())

/ Exactly once at the RDB. The recorder sends again, after a crash or a lost connection,
/ the batches the tickerplant had not confirmed, so the tickerplant's log may hold them
/ twice. .ticks.hw holds, per table and shard, the highest sequence this RDB has stored;
/ .ticks.upd (the RDB's upd, live and while replaying the log) drops rows at or below it.
/ Every row of one command shares its sequence and is sent in one message, so a command is
/ stored whole or not at all. .ticks.hw is not a table of the root namespace: end of day
/ (.u.end) neither saves nor clears it.

.ticks.hw:([tab:`symbol$();shard:`symbol$()] sequence:`long$())

/ x as a table: the tickerplant publishes tables; its log holds lists of columns, or one row
.ticks.rows:{[t;x] $[98h=type x; x; 0h>type first x; enlist cols[t]!x; flip cols[t]!x]}

.ticks.upd:{[t;x]
  x:.ticks.rows[t;x];
  if[not `sequence in cols x; :t insert x];
  held:exec shard!sequence from .ticks.hw where tab=t;
  x:select from x where sequence>0^held shard;
  if[count x;
    t insert x;
    `.ticks.hw upsert select tab:(count i)#t, shard, sequence from 0!select max sequence by shard from x];
  }
