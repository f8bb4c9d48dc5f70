"""`native.idtable.IdTable`, the TES's orders by id: held to a dict on random operations, its
references counted, its refusals."""

import gc
import sys
import tracemalloc
import weakref

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from native.idtable import IdTable

INT64 = st.integers(-(2**63), 2**63 - 1)
FEW = st.integers(0, 40)
"""Ids from a small range, so that operations meet the ids already in the table."""
OPERATIONS = st.lists(st.tuples(st.sampled_from(["set", "pop", "del", "get", "clear"]),
                                st.one_of(FEW, INT64), st.integers()), max_size=400)


class Item:
    """An object that can be watched (`weakref`) and compared by its value."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Item) and other.value == self.value


def same(table: IdTable, model: dict) -> None:
    assert len(table) == len(model) and bool(table) == bool(model)
    assert table.keys() == list(model) == list(table)
    assert table.values() == list(model.values()) and table.items() == list(model.items())
    assert table == model and model == table and not table != model


@settings(max_examples=300, deadline=None)
@given(OPERATIONS)
def test_it_does_what_a_dict_does_in_the_order_ids_were_added(operations):
    table, model = IdTable(), {}
    for operation, key, value in operations:
        if operation == "set":
            table[key] = model[key] = Item(value)
        elif operation == "pop":
            assert table.pop(key, None) == model.pop(key, None)
        elif operation == "del":
            if key in model:
                del table[key], model[key]
            else:
                with pytest.raises(KeyError):
                    del table[key]
        elif operation == "get":
            assert table.get(key) == model.get(key) and (key in table) == (key in model)
        else:
            table.clear()
            model.clear()
        same(table, model)


@pytest.mark.parametrize("count", [1, 7, 8, 9, 1_000, 100_000])
def test_many_ids_added_and_removed_again_and_again(count):
    """Tables grown past several rebuilds, emptied from the front and the back, filled again:
    every id found, none that left."""
    table = IdTable()
    ids = [(1 << 48) | n for n in range(count)]
    for id_ in ids:
        table[id_] = id_
    for id_ in ids[::2]:
        assert table.pop(id_) == id_
    for round_ in range(3):
        for id_ in ids[::2]:
            table[id_] = -id_
        assert len(table) == count and table[ids[0]] == -ids[0]
        for id_ in ids[::2]:
            del table[id_]
        assert len(table) == count // 2 and all(table[id_] == id_ for id_ in ids[1::2])
        assert all(id_ not in table for id_ in ids[::2]), f"round {round_}"
    assert table.keys() == ids[1::2], "the ids left, in the order they were first added"
    left = ids[1::2][-2:]
    for id_ in ids[1::2][:-2]:
        del table[id_]
    for n in range(count + 40):  # past the entries allocated: rebuilt, smaller once most are gone
        table[-n - 1] = n
        del table[-n - 1]
    assert table.keys() == left and all(table[id_] == id_ for id_ in left)


def test_an_order_added_and_removed_again_and_again_keeps_the_table_small():
    """As a trader's open orders on the load flow: one order in at a time, ids ever growing. The
    table rebuilds in place, at its smallest size: its memory does not grow."""
    table = IdTable({0: 0})
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for id_ in range(1, 100_001):
            table[id_] = id_
            assert table.pop(id_) == id_
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert table.keys() == [0] and grown < 1_000


def test_it_holds_one_reference_to_each_object_while_it_is_in_the_table():
    items = [Item(n) for n in range(20)]
    watched = [weakref.ref(item) for item in items]
    table = IdTable()
    for n, item in enumerate(items):
        table[n] = item
    table[3] = Item(-3)  # replacing an entry lets its object go
    del items, item
    gc.collect()
    assert [ref() is None for ref in watched] == [n == 3 for n in range(20)]
    table.pop(4)
    del table[5]
    assert watched[4]() is None and watched[5]() is None and watched[6]() is not None
    table.clear()
    assert all(ref() is None for ref in watched)
    table[1] = kept = Item(1)
    watch = weakref.ref(kept)
    del kept, table
    assert watch() is None, "a table freed lets its objects go"


def test_other_keys_are_never_in_it_and_cannot_be_set():
    table = IdTable({1: "one"})
    for key in (None, "1", 1.0, 2**63, -(2**63) - 1, (1,)):
        assert key not in table and table.get(key, "none") == "none" and table.pop(key, "none") == "none"
        with pytest.raises(KeyError):
            table[key]
    with pytest.raises(TypeError, match="keyed by int64 ids, not str"):
        table["2"] = "two"
    with pytest.raises(OverflowError, match="lies beyond int64"):
        table[2**63] = "two"
    with pytest.raises(KeyError):
        table.pop(2)
    assert table == {1: "one"} and table != {1: "uno"} and table != {1: "one", 2: "two"}
    assert table != [1] and repr(table) == "IdTable({1: 'one'})"
    with pytest.raises(TypeError):
        hash(table)


def test_a_loop_over_its_items_may_change_it():
    table = IdTable((n, n) for n in range(10))
    for id_, value in table.items():
        if value % 2:
            del table[id_]
    for id_ in table:
        table[id_ + 100] = id_
    assert table.keys() == [0, 2, 4, 6, 8, 100, 102, 104, 106, 108]




def test_a_frame_of_orders_rising_and_falling_again_and_again_keeps_its_arrays():
    """As the registry's orders on the load flow: a frame's hundred orders in, then all out, turn
    after turn. Once grown, the table keeps its arrays through every rebuild, whatever its count
    when one comes (one early in a frame must not shrink what the frame's end needs again): its
    size, read after every change, never moves."""
    table, order = IdTable(), object()
    frames = [range(start, start + 100) for start in range(0, 52_000, 100)]
    sizes = []
    for ids in frames:
        for id_ in ids:
            table[id_] = order
            sizes.append(sys.getsizeof(table))
        for id_ in ids:
            del table[id_]
            sizes.append(sys.getsizeof(table))
    assert len(table) == 0 and len(set(sizes[20 * 200:])) == 1
    assert sizes[-1] < 16_000


def test_a_large_table_emptied_gives_its_memory_back():
    """A table that held 100,000 orders and then none: rebuilt small once its entries run out."""
    order = object()
    table = IdTable((id_, order) for id_ in range(100_000))
    large = sys.getsizeof(table)
    for id_ in range(100_000):
        del table[id_]
    for id_ in range(100_000, 200_000):
        table[id_] = order
        del table[id_]
    assert len(table) == 0 and large > 3_000_000 and sys.getsizeof(table) < 2_000
