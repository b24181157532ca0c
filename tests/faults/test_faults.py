"""Faults against the real no-Docker stack (issue 8, "Suites that keep it true").

For each fault kind: chat traffic through the gateway (native protocol, streaming and
not, with a continuation_id so every exchange is stored) while the fault lasts; then

- every call the gateway acknowledged as stored is in the database exactly once (prompt
  and answer), and storage-adapter's API returns it; no call is stored twice;
- the gateway's in-flight counters are back to 0 for every session of the run;
- the matching alert reached the pager (Alertmanager's webhook) and resolved after the
  fault was undone; calls are stored again after it (recovery).

One campaign (tests/faults/campaign.py) runs every fault once, independent ones at the
same time; each test below checks one fault's record. Figures: docs/reliability.md.
"""

from __future__ import annotations

import pytest

from tests.faults.campaign import Campaign, FaultRun, answered

pytestmark = pytest.mark.e2e


def _assert_handled(run: FaultRun) -> None:
    """The properties every fault must keep."""
    assert not run.problems, run.problems
    assert not run.traffic.failures, run.traffic.failures
    assert run.fired, f"{run.match} never fired"
    assert run.resolved_at is not None, f"{run.match} never resolved"
    assert run.first_good_at is not None, "no call worked after recovery"
    # Exactly once: what was acknowledged as stored is there once, nothing twice. (The
    # provider faults' calls may all meet a storage fault of the other lane.)
    assert run.stored_acks or run.healthy is answered, "no call was acknowledged as stored"
    assert not run.store.lost, run.store.lost
    assert not run.store.duplicated, run.store.duplicated
    assert run.store.stored_exactly_once == len(run.stored_acks)
    assert not run.store.api_missing, run.store.api_missing
    # Counters: no session keeps a slot once its calls ended, however they ended.
    assert not run.leaked_sessions, run.leaked_sessions
    # The client always gets an ending: an answer, or an error it can act on.
    unexpected = {code: n for code, n in run.errors.items() if code not in run.expected_errors}
    assert not unexpected, unexpected


def _assert_nothing_lost(run: FaultRun) -> None:
    """A fault that must not cost a single call or a single stored message."""
    assert not run.errors, run.errors
    assert len(run.stored_acks) == len(run.calls), run.memory_not_stored


def test_kill_storage_adapter_while_streaming(campaign: Campaign) -> None:
    run = campaign.runs["kill_storage_adapter"]
    _assert_handled(run)
    assert run.streaming_at_fault >= 1
    # Chat answers without memory while storage is gone, and says so: no call fails,
    # and the gateway stays ready (storage is optional for it).
    assert not run.errors, run.errors
    assert run.ready_during_fault == 200


def test_kill_provider_proxy_while_streaming(campaign: Campaign) -> None:
    run = campaign.runs["kill_provider_proxy"]
    _assert_handled(run)
    assert run.streaming_at_fault >= 1
    assert run.errors["PROVIDER_ERROR"] >= run.streaming_at_fault
    # No tool works without the proxy: the gateway takes itself out of rotation.
    assert run.ready_during_fault == 503


def test_kill_otel_collector_while_streaming(campaign: Campaign) -> None:
    run = campaign.runs["kill_otel_collector"]
    _assert_handled(run)
    assert run.streaming_at_fault >= 1
    # Telemetry is never in the request path.
    _assert_nothing_lost(run)
    assert run.ready_during_fault == 200


def test_redis_down(campaign: Campaign) -> None:
    run = campaign.runs["redis_down"]
    _assert_handled(run)
    assert run.ready_during_fault == 200
    # The cache is optional: every call is answered and stored while it is down.
    _assert_nothing_lost(run)


def test_postgres_down(campaign: Campaign) -> None:
    run = campaign.runs["postgres_down"]
    _assert_handled(run)
    # Chat answers without memory while the durable store is down (memory.write says
    # so), and a database outage does not drain the gateway (issue 8, point 10).
    assert not run.errors, run.errors
    assert run.ready_during_fault == 200


def test_provider_rate_limited(campaign: Campaign) -> None:
    _assert_handled(campaign.runs["provider_429"])


def test_provider_server_errors(campaign: Campaign) -> None:
    _assert_handled(campaign.runs["provider_500"])


def test_provider_hangs(campaign: Campaign) -> None:
    run = campaign.runs["provider_hang"]
    _assert_handled(run)
    # Every call ended well before the client would give up (the proxy's deadline).
    assert "client_timeout" not in run.errors


def test_provider_slow_first_token(campaign: Campaign) -> None:
    run = campaign.runs["provider_slow"]
    _assert_handled(run)
    # Slow is not broken: every call is answered. (Not every one stored: the storage
    # faults run at the same time.)
    assert not run.errors, run.errors


def test_nothing_stays_in_flight_after_the_campaign(campaign: Campaign) -> None:
    assert campaign.final == {
        "gateway_inflight": 0,
        "gateway_connections": 0,
        "prometheus_inflight": 0.0,
        "simulator_streaming": 0,
        "simulator_hanging": 0,
    }
