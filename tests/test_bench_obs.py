"""`bench obs`: the OBS's execute step in one process, the order path beside the specification."""

import sys

import pytest

from benchmarks import obs
from servers.obs import MAX_MESSAGES_PER_TURN
from servers.processes import json_result
from servers.protocol import BookCancel, BookReplace, BookSubmit, Codec, ObsRequest
from servers.shard import TES_SHIFT


def test_the_commands_are_the_standard_workload_as_one_tes_sends_them():
    made = obs.commands(5_000)
    assert {type(command) for command in made} <= {BookSubmit, BookCancel, BookReplace}
    submits = [command for command in made if type(command) is BookSubmit]
    assert {(command.order_type, command.time_in_force) for command in submits} >= {(0, 0), (1, 1)}
    assert any(type(command) is BookCancel for command in made)
    assert len(made) == 5_000, "the standard stream has no kind the OBS could not take"
    assert {command.order_id >> TES_SHIFT for command in made} == {1}
    assert {command.symbol for command in made} == {obs.SYMBOL}
    work = obs.turns(made)
    assert [len(turn) for turn in work] == [MAX_MESSAGES_PER_TURN, 5_000 - MAX_MESSAGES_PER_TURN]
    assert [item[2] for turn in work for item in turn] == list(range(1, 5_001))
    assert all(item[0] == obs.IDENTITY for turn in work for item in turn)


def test_both_paths_write_the_same_entries_and_the_report_says_so(capsys):
    report = obs.run(messages=6_000, repeats=2)
    assert report["commands"] == 6_000 and report["repeats"] == 2
    assert all(len(values) == 2 and min(values) > 0 for values in report["runs"].values())
    figures = report["us_per_command"]
    assert report["ratio"] == round(figures["specification"] / figures["order_path"], 2)
    assert report["reading_ratio"] == round(figures["msgspec_frames"] / figures["c_frames"], 2)
    table = capsys.readouterr().out
    assert "both paths wrote the same journal entries" in table and "both wrote the same journal entries" in table
    assert "| the order path in C (the OBS's loop) |" in table
    assert "| read in C, sequenced, the order path (the OBS's loop) |" in table


def test_the_frames_are_the_commands_as_one_tes_sends_them_in_turns():
    made = obs.commands(10_000)
    framed = obs.frames(made)
    per_turn, count = MAX_MESSAGES_PER_TURN // obs.FRAME, -(-10_000 // obs.FRAME)
    assert [len(turn) for turn in framed] == [per_turn, per_turn, count - 2 * per_turn]
    codec = Codec(ObsRequest)
    assert [command for turn in framed for frame in turn for command in codec.decode(frame)] == made
    assert all(len(codec.decode(frame)) == obs.FRAME for turn in framed for frame in turn[:-1])


@pytest.mark.parametrize(("path", "message"), [("order_path", "the order path and the specification"),
                                                ("read_in_c", "the frames read in C and decoded by msgspec")])
def test_paths_that_disagree_are_an_error(monkeypatch, path, message):
    measure = getattr(obs, path)
    monkeypatch.setattr(obs, path, lambda work: (measure(work)[0], "another digest"))
    with pytest.raises(RuntimeError, match=message):
        obs.run(messages=1_000, repeats=1)


def test_bench_obs_from_the_command_line():
    report = json_result([sys.executable, "main.py", "bench", "obs", "--messages", "3000", "--repeats", "1"],
                         "bench obs", timeout=120)
    assert report["commands"] == 3_000 and set(report["us_per_command"]) == set(obs.PATHS)
