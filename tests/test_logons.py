"""Logon checks (`servers.logons`): API keys, equal answers for unknown ids, throttles, bounds.

In process with an injected clock first; then end to end against one real TES on the
shipped configuration, whose traders' keys are hashed with 100,000 PBKDF2 iterations as
in production. The end-to-end tests share that TES, so each uses its own trader ids:
the throttles one test earns never reach another.
"""

import logging
import re
import time
from statistics import median

import pytest
from test_tes import Exchange

from config.settings import ConfigError, load_config
from engine.types import RejectReason
from servers import logons as logons_module
from servers import protocol as p
from servers.auth import hash_api_key, parse_hash
from servers.logons import Authenticator, Backoff, Logons, Verdict

R = RejectReason
HASHES = {"alice": [hash_api_key("alice-key", iterations=1_000)], "bob": [hash_api_key("bob-key", iterations=1_000)]}
ACCEPTED = (None, "")
BAD = (R.BAD_CREDENTIALS, R.BAD_CREDENTIALS.text)
THROTTLED = re.compile(r"too many logon attempts: try again in \d+\.\d s")
BUSY = re.compile(r"logon checks busy: try again in \d+\.\d s")


def throttled(seconds):
    return R.LOGON_THROTTLED, f"too many logon attempts: try again in {seconds:.1f} s"


@pytest.fixture
def pbkdf2_calls(monkeypatch):
    """Counts the real (slow) key verifications, as (key, stored hash)."""
    calls = []
    real = logons_module.verify_api_key

    def counting(api_key, stored):
        calls.append((api_key, stored))
        return real(api_key, stored)

    monkeypatch.setattr(logons_module, "verify_api_key", counting)
    return calls


# ================================================================ the authenticator


def test_right_key_is_accepted_and_remembered(pbkdf2_calls):
    auth = Authenticator(HASHES)
    assert auth.remembered("alice", "alice-key") is None
    assert auth.verify("alice", "alice-key") is True
    assert auth.remembered("alice", "alice-key") is True
    assert auth.verify("alice", "alice-key") is True
    assert [key for key, _ in pbkdf2_calls] == ["alice-key"]


def test_wrong_key_is_refused_and_remembered(pbkdf2_calls):
    auth = Authenticator(HASHES)
    assert auth.verify("alice", "bob-key") is False
    assert auth.remembered("alice", "bob-key") is False
    assert auth.verify("alice", "bob-key") is False
    assert [key for key, _ in pbkdf2_calls] == ["bob-key"]


def test_a_remembered_good_key_does_not_admit_another_key(pbkdf2_calls):
    auth = Authenticator(HASHES)
    auth.verify("alice", "alice-key")
    assert auth.remembered("alice", "alice-key ") is None
    assert auth.verify("alice", "alice-key ") is False
    assert auth.remembered("bob", "alice-key") is None


def test_unknown_trader_costs_one_pbkdf2_with_a_known_traders_parameters_and_is_refused(pbkdf2_calls):
    auth = Authenticator(HASHES)
    assert auth.verify("mallory", "guess") is False
    assert auth.verify("alice", "guess") is False
    (key, dummy), (_, alices) = pbkdf2_calls
    assert key == "guess" and dummy == auth.dummy
    (iterations, salt, _), (alices_iterations, alices_salt, _) = parse_hash(dummy), parse_hash(alices)
    assert (iterations, len(salt)) == (alices_iterations, len(alices_salt))
    assert auth.remembered("mallory", "guess") is False and auth.remembered("alice", "guess") is False


def test_dummy_hash_has_the_most_common_iteration_count_and_the_other_traders_are_named(caplog):
    hashes = {name: [hash_api_key(name, iterations=n)] for name, n in (("a", 1_000), ("b", 1_000), ("c", 2_000))}
    with caplog.at_level(logging.WARNING, logger="servers.logons"):
        auth = Authenticator(hashes)
    assert parse_hash(auth.dummy)[0] == 1_000
    assert "hashes of c do not have 1000 iterations" in caplog.text


def test_verification_on_the_worker_thread():
    auth = Authenticator(HASHES)
    try:
        assert auth.verify_later("bob", "bob-key").result(10) is True
        assert auth.verify_later("bob", "nope").result(10) is False
    finally:
        auth.close()


# ================================================================ checks and throttles


@pytest.fixture
def logons():
    """Three failures allowed, then 1 s, 2 s, 4 s, 8 s, 8 s ...; four checks waiting at most."""
    logons = Logons(Authenticator(HASHES), failures=3, backoff_s=1.0, backoff_max_s=8.0, queue=4)
    yield logons
    logons.close()


def answer(logons, identity, trader_id, api_key, now):
    """(reason, text) of the answer to one logon, waiting for the worker if it checks the key."""
    verdict = logons.check(identity, trader_id, api_key, False, now)
    if verdict is None:
        logons.pending[identity].answer.result(10)
        [verdict] = logons.finished(now)
    return verdict.reason, verdict.text


def test_logon_is_checked_by_the_worker_then_answered_at_once_when_remembered(logons):
    assert logons.check(b"c1", "alice", "alice-key", True, 0.0) is None
    assert logons.check(b"c1", "alice", "alice-key", True, 0.0) == Verdict(
        b"c1", "alice", True, R.ALREADY_LOGGED_ON, R.ALREADY_LOGGED_ON.text)
    logons.pending[b"c1"].answer.result(10)
    assert logons.finished(0.0) == [Verdict(b"c1", "alice", True)]
    assert not logons.pending and logons.finished(0.0) == []
    assert logons.check(b"c2", "alice", "alice-key", False, 0.0) == Verdict(b"c2", "alice", False)


def test_unknown_and_known_ids_get_the_same_answers_after_one_pbkdf2_each(logons, pbkdf2_calls):
    assert answer(logons, b"c1", "alice", "guess", 0.0) == answer(logons, b"c2", "mallory", "guess", 0.0) == BAD
    assert len(pbkdf2_calls) == 2
    # a key found wrong before is refused at once, for either
    assert logons.check(b"c3", "alice", "guess", False, 0.0)[3:] == BAD
    assert logons.check(b"c4", "mallory", "guess", False, 0.0)[3:] == BAD
    assert len(pbkdf2_calls) == 2


@pytest.mark.parametrize("trader", ["alice", "mallory"])
def test_failed_logons_of_a_trader_id_earn_a_doubling_capped_wait_known_or_not(logons, pbkdf2_calls, trader):
    schedule = [  # (now, answer); every attempt from a new connection, with a new wrong key
        (0.0, BAD), (0.0, BAD), (0.0, BAD),
        (0.0, throttled(1.0)), (0.5, throttled(0.5)),
        (1.0, BAD), (2.9, throttled(0.1)),
        (3.0, BAD), (3.0, throttled(4.0)),
        (7.0, BAD), (7.0, throttled(8.0)),
        (15.0, BAD), (15.0, throttled(8.0)),
    ]
    assert [(now, answer(logons, f"c{n}".encode(), trader, f"guess-{n}", now))
            for n, (now, _) in enumerate(schedule)] == schedule
    assert len(pbkdf2_calls) == 7  # refusals cost no check


def test_failed_logons_on_one_connection_throttle_it_for_any_trader_id(logons):
    assert [answer(logons, b"c", f"ghost-{n}", "x", 0.0) for n in range(3)] == [BAD] * 3
    assert answer(logons, b"c", "bob", "bob-key", 0.5) == throttled(0.5)
    assert answer(logons, b"c", "bob", "bob-key", 1.0) == ACCEPTED


def test_a_success_forgets_the_failures_of_its_trader_id_and_connection(logons):
    assert [answer(logons, b"c", "alice", f"guess-{n}", 0.0) for n in range(2)] == [BAD] * 2
    assert answer(logons, b"c", "alice", "alice-key", 0.0) == ACCEPTED
    assert logons.traders.entries == {} and logons.connections.entries == {}
    assert [answer(logons, b"c", "alice", f"again-{n}", 0.0) for n in range(3)] == [BAD] * 3
    assert logons.traders.wait("alice", 0.0) == logons.connections.wait(b"c", 0.0) == 1.0


def test_a_trader_who_logged_on_is_admitted_without_a_check_while_its_id_is_throttled(logons, pbkdf2_calls):
    assert answer(logons, b"alice-1", "alice", "alice-key", 0.0) == ACCEPTED
    assert [answer(logons, f"guesser-{n}".encode(), "alice", f"guess-{n}", 0.0) for n in range(3)] == [BAD] * 3
    assert answer(logons, b"guesser-3", "alice", "guess-3", 0.1) == throttled(0.9)
    checks = len(pbkdf2_calls)
    assert answer(logons, b"alice-2", "alice", "alice-key", 0.2) == ACCEPTED
    assert len(pbkdf2_calls) == checks
    assert logons.traders.wait("alice", 0.2) == 0.0


def test_wrong_keys_for_a_throttled_id_count_against_the_connection(logons):
    """What bounds guessing against a remembered key: a few guesses per connection."""
    assert answer(logons, b"alice-1", "alice", "alice-key", 0.0) == ACCEPTED
    assert [answer(logons, f"c{n}".encode(), "alice", f"guess-{n}", 0.0) for n in range(3)] == [BAD] * 3
    refused = [answer(logons, b"guesser", "alice", f"more-{n}", 0.1) for n in range(3)]
    assert refused[:2] == [throttled(0.9)] * 2 and refused[2] == throttled(1.0)
    assert answer(logons, b"guesser", "alice", "alice-key", 0.1)[0] is R.LOGON_THROTTLED


def test_one_check_at_a_time_per_connection_and_per_trader_id(logons, pbkdf2_calls):
    assert logons.check(b"c1", "alice", "guess", False, 0.0) is None
    assert logons.check(b"c1", "bob", "bob-key", False, 0.0)[3:] == (
        R.ALREADY_LOGGED_ON, R.ALREADY_LOGGED_ON.text)
    busy = logons.check(b"c2", "alice", "alice-key", False, 0.0)
    assert busy.reason is R.LOGON_THROTTLED and BUSY.fullmatch(busy.text)
    logons.pending[b"c1"].answer.result(10)
    assert [v.reason for v in logons.finished(0.0)] == [R.BAD_CREDENTIALS]
    assert answer(logons, b"c2", "alice", "alice-key", 0.0) == ACCEPTED
    assert [key for key, _ in pbkdf2_calls] == ["guess", "alice-key"]


def test_logons_beyond_the_queue_are_refused_busy_without_a_check(logons, pbkdf2_calls):
    assert all(logons.check(f"c{n}".encode(), f"ghost-{n}", "x", False, 0.0) is None for n in range(4))
    busy = logons.check(b"c4", "bob", "bob-key", False, 0.0)
    assert busy.reason is R.LOGON_THROTTLED and BUSY.fullmatch(busy.text)
    for logon in list(logons.pending.values()):
        logon.answer.result(10)
    assert [v.reason for v in logons.finished(0.0)] == [R.BAD_CREDENTIALS] * 4
    assert len(pbkdf2_calls) == 4
    assert answer(logons, b"c4", "bob", "bob-key", 0.0) == ACCEPTED


# ================================================================ the back-off tables


def test_backoff_keeps_at_most_its_capacity_dropping_the_oldest_failures():
    backoff = Backoff(allowed=3, first_s=1.0, max_s=8.0, capacity=100)
    for n in range(1_000):
        backoff.failed(n, now=n / 1_000)
    assert list(backoff.entries) == list(range(900, 1_000))


def test_backoff_forgets_a_key_forget_s_after_its_last_failure():
    backoff = Backoff(allowed=3, first_s=1.0, max_s=8.0)
    assert backoff.forget_s == (3 + 3) * 8.0  # 3 failures at once, then waits of 1, 2, 4 shorter than 8
    for key, now in (("a", 0.0), ("a", 0.0), ("a", 0.0), ("b", 0.0), ("b", 0.0), ("b", 0.0)):
        backoff.failed(key, now)
    backoff.failed("b", 47.9)  # within forget_s: b's count goes on (4 failures: 2 s)
    assert backoff.wait("b", 47.9) == pytest.approx(2.0)
    backoff.failed("c", 48.0)  # a is forgotten and dropped
    assert list(backoff.entries) == ["b", "c"]
    backoff.failed("a", 48.0)
    assert backoff.entries["a"][0] == 1


@pytest.mark.parametrize("allowed, first_s, max_s", [(3, 1.0, 8.0), (5, 1.0, 60.0), (1, 5.0, 5.0), (2, 0.3, 10.0)])
def test_starting_afresh_never_gets_more_tries_than_waiting_out_the_backoff(allowed, first_s, max_s):
    horizon = 20 * Backoff(allowed, first_s, max_s).forget_s

    def tries(burst):
        """Tries in ``horizon``, trying whenever allowed; after ``burst`` tries, waiting to be forgotten."""
        backoff, now, count, since, last = Backoff(allowed, first_s, max_s), 0.0, 0, 0, 0.0
        while now < horizon:
            if since == burst:
                now, since = last + backoff.forget_s, 0
                continue
            now += backoff.wait("k", now)
            backoff.failed("k", now)
            count, since, last = count + 1, since + 1, now
        return count

    patient = tries(None)
    assert all(tries(burst) <= patient for burst in range(1, allowed + 12))


def test_a_maximum_logon_backoff_below_the_first_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^tes: logon_backoff_max_ms \(500\) must be at least logon_backoff_ms"):
        load_config(environ={"EXCHANGE__TES__LOGON_BACKOFF_MAX_MS": "500"})


# ================================================================ end to end

KNOWN = ("alice", "mm1", "mm2", "load")
"""Shipped traders, hashed with 100,000 iterations like all of them."""
BAD_REPLY = p.LogonRejected(*BAD)
QUEUE = 16


@pytest.fixture(scope="module")
def tes(tmp_path_factory):
    """A TES without a book server (logons need none). A first wait of 10 s keeps every
    throttle a test relies on in force however slowly the machine runs the test."""
    exchange = Exchange(tmp_path_factory.mktemp("logons"), obs=False, EXCHANGE__TES__LOGON_BACKOFF_MS="10000")
    yield exchange
    exchange.close()


def connected(tes, count=1):
    """``count`` clients whose connections are up: each has had an answer (NOT_LOGGED_ON)."""
    clients = [tes.client() for _ in range(count)]
    for client in clients:
        client.send(p.Heartbeat())
    for client in clients:
        assert client.one(10.0).reason is R.NOT_LOGGED_ON
    return clients


def timed(client, trader, key):
    """The answer to a logon and the seconds it took."""
    start = time.perf_counter()
    client.send(p.Logon(trader, key))
    reply = client.one(10.0)
    return reply, time.perf_counter() - start


def test_thirty_wrong_keys_for_one_trader_are_refused_throttled_after_five_without_a_check(tes):
    [client] = connected(tes)
    replies, seconds = zip(*(timed(client, "flow1", f"guess-{n}") for n in range(30)), strict=True)
    assert replies[:5] == (BAD_REPLY,) * 5
    assert all(r.reason is R.LOGON_THROTTLED and THROTTLED.fullmatch(r.text) for r in replies[5:])
    assert median(seconds[5:]) < median(seconds[:5]) / 3, "no key derivation (tens of ms) behind a throttled answer"
    assert re.search(r"logons refused: the latest '[^']+' \(.*\); \d+ so far", tes.tes.output()), "the operator is told"


def test_unknown_and_known_trader_ids_get_the_same_answer_in_comparable_time(tes):
    unknown = ("alicia", "mm3", "root", "admin")
    seconds = {trader: [] for trader in KNOWN + unknown}
    replies = []
    for attempt in range(3):  # interleaved, so both kinds see the same noise
        for trader in KNOWN + unknown:
            [client] = connected(tes)
            reply, elapsed = timed(client, trader, f"wrong-{attempt}")
            replies.append(reply)
            seconds[trader].append(elapsed)
    assert replies == [BAD_REPLY] * len(replies)
    known = median(s for trader in KNOWN for s in seconds[trader])
    not_known = median(s for trader in unknown for s in seconds[trader])
    assert known / 4 < not_known < known * 4


def test_a_good_logon_in_a_flood_of_bad_ones_is_answered_at_once_and_a_retry_accepted(tes):
    """300 bad logons from as many connections: at most QUEUE wait for a check, the rest are
    refused busy at once. A good logon sent behind them is refused busy at once too (or,
    if it got a place, accepted after at most QUEUE checks); once the queue has drained
    its retry is accepted after one check."""
    flood = connected(tes, 300)
    [good] = connected(tes)
    start = time.perf_counter()
    for n, client in enumerate(flood):
        client.send(p.Logon(f"ghost-{n}", "x"))
    good.send(p.Logon("bob", "bob-demo-key"))
    first = good.one(10.0)
    answered = time.perf_counter() - start
    flood_replies = [client.one(20.0) for client in flood]
    drained = time.perf_counter() - start
    busy = [r for r in flood_replies if r != BAD_REPLY]
    assert all(r.reason is R.LOGON_THROTTLED and BUSY.fullmatch(r.text) for r in busy)
    assert len(flood_replies) - len(busy) <= 2 * QUEUE
    if isinstance(first, p.LogonRejected):
        assert first.reason is R.LOGON_THROTTLED and BUSY.fullmatch(first.text)
        assert answered < drained / 2, "not queued behind the flood's checks"
        retry, retried = timed(good, "bob", "bob-demo-key")
        assert isinstance(retry, p.LogonAccepted) and retried < 1.0
    else:
        assert isinstance(first, p.LogonAccepted) and answered <= drained


def test_a_trader_who_logged_on_before_is_admitted_while_its_key_is_being_guessed(tes):
    [first, guesser, other, again] = connected(tes, 4)
    first.logon("flow2")
    first.send(p.Logout())
    assert isinstance(first.one(), p.LoggedOut)
    replies = [timed(guesser, "flow2", f"guess-{n}")[0] for n in range(10)]
    assert replies[:5] == [BAD_REPLY] * 5 and all(r.reason is R.LOGON_THROTTLED for r in replies[5:])
    assert timed(other, "flow2", "another-guess")[0].reason is R.LOGON_THROTTLED  # the id itself is throttled
    assert timed(again, "flow2", "flow2-demo-key")[0] == p.LogonAccepted("flow2", 1000, 5000)
