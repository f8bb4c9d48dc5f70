"""One log format for every server process (`servers.logs`): text with the role first, or JSON lines."""

import json
import logging
import re

from procs import Role, exchange_env

from servers.logs import JsonFormatter, TextFormatter

LINE = re.compile(r"^(?P<role>\S+) (?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<level>[A-Z]+) "
                  r"(?P<logger>[\w.]+): (?P<message>.*)$")


def record(message="shard %s ready", args=("A",), exc_info=None):
    return logging.LogRecord("servers.tes", logging.INFO, __file__, 1, message, args, exc_info)


def test_text_puts_the_role_first_then_utc_time_level_logger_message():
    line = TextFormatter("TES").format(record())
    match = LINE.match(line)
    assert match and match.group("role", "level", "logger", "message") == ("TES", "INFO", "servers.tes",
                                                                             "shard A ready")


def test_json_has_the_same_fields_and_the_traceback():
    try:
        raise ValueError("broken")
    except ValueError:
        import sys

        fields = json.loads(JsonFormatter("OBS-A").format(record(exc_info=sys.exc_info())))
    assert {k: fields[k] for k in ("role", "level", "logger", "message")} == {
        "role": "OBS-A", "level": "INFO", "logger": "servers.tes", "message": "shard A ready"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", fields["time"])
    assert "ValueError: broken" in fields["exception"]


def test_every_server_logs_in_the_configured_format(tmp_path):
    for kind in ("text", "json"):
        env = exchange_env(tmp_path / kind, EXCHANGE__LOGGING__FORMAT=kind)
        roles = [Role(["-s", "OBS"], env), Role(["-s", "TES"], env)]
        roles[1].wait_for("shard A ready", 10)
        for role in roles:
            assert role.stop() == 0
        for role, tag in zip(roles, ("OBS-A", "TES"), strict=True):
            lines = [line for line in role.lines if not line.startswith("READY")]
            assert lines, role.output()
            for line in lines:
                if kind == "text":
                    assert (match := LINE.match(line)) and match.group("role") == tag, line
                else:
                    fields = json.loads(line)
                    assert fields["role"] == tag and set(fields) >= {"time", "level", "logger", "message"}, line


def test_the_tes_logs_what_an_operator_needs(tmp_path):
    """Logons, how sessions ended, and a shard it has been waiting for (every 10 s)."""
    from clients.client import ExchangeClient

    env = exchange_env(tmp_path)
    tes = Role(["-s", "TES"], env)
    try:
        tes.wait_for("waiting for shard A for 10 s (not connected): its symbols cannot trade", 15)
        obs = Role(["-s", "OBS"], env)
        tes.wait_for("shard A ready", 10)
        with ExchangeClient(env["EXCHANGE__TES__CLIENT_ENDPOINT"], "alice", "alice-demo-key") as client:
            client.logon()
            tes.wait_for("alice logged on; 0 reports it missed sent", 5)
        tes.wait_for("session of alice ended: logged out", 5)
        assert tes.stop() == 0 and obs.stop() == 0
    finally:
        tes.kill()


def test_a_library_s_chatter_is_not_logged(tmp_path):
    """Alembic logs a line per plugin when it is imported (the TES opens the database)."""
    env = exchange_env(tmp_path)
    tes = Role(["-s", "TES"], env)
    assert tes.stop() == 0
    assert "trading on reference data version 1 from the database" in tes.output()
    assert "alembic" not in tes.output()
