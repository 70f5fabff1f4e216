"""The load balancer's pure decisions: ports, health answers, affinity, routing, headers, addressing,
and the endpoint type's spellings and scaler rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from emulator.config import Settings
from emulator.loadbalancer import rules
from emulator.loadbalancer.rules import Affinity, Candidate
from emulator.models import Endpoint, EndpointPatch, EndpointSpec
from emulator.workers import ports
from emulator.workers.env import worker_env
from emulator.workers.records import WorkerRecord


# --- endpoint type ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "given, stored",
    [("QB", "QB"), ("QUEUE", "QB"), ("queue", "QB"), ("LB", "LB"), ("LOAD_BALANCER", "LB"), ("lb", "LB")],
)
def test_endpoint_type_takes_runpods_spellings(given: str, stored: str) -> None:
    spec = EndpointSpec.model_validate({"name": "x", "imageName": "i", "type": given})
    assert spec.type == stored


def test_endpoint_type_defaults_to_queue_based_and_refuses_others() -> None:
    assert EndpointSpec.model_validate({"name": "x", "imageName": "i"}).type == "QB"
    with pytest.raises(ValidationError, match="type"):
        EndpointSpec.model_validate({"name": "x", "imageName": "i", "type": "ROUND_ROBIN"})


def test_load_balancing_scales_by_request_count_only() -> None:
    spec = EndpointSpec.model_validate({"name": "x", "imageName": "i", "type": "LB"})
    assert spec.scalerType == "REQUEST_COUNT"
    with pytest.raises(ValidationError, match="REQUEST_COUNT"):
        EndpointSpec.model_validate(
            {"name": "x", "imageName": "i", "type": "LB", "scalerType": "QUEUE_DELAY"}
        )


def test_patching_to_load_balancing_switches_the_scaler_and_bumps_the_version() -> None:
    endpoint = Endpoint.model_validate({"name": "x", "imageName": "i", "id": "x"})
    assert endpoint.scalerType == "QUEUE_DELAY"
    updated, bumped = endpoint.apply_patch(EndpointPatch.model_validate({"type": "LOAD_BALANCER"}))
    assert (updated.type, updated.scalerType, bumped, updated.version) == ("LB", "REQUEST_COUNT", True, 2)


# --- ports and the worker's env -------------------------------------------------------------------------
def test_ports_defaults_and_overrides() -> None:
    assert ports.ports({}) == ports.Ports(80, 80, "/ping")
    assert ports.ports({"PORT": "5000"}) == ports.Ports(5000, 5000, "/ping")
    assert ports.ports(
        {"PORT": "5000", "PORT_HEALTH": "5001", "HEALTH_CHECK_PATH": "/health"}
    ) == ports.Ports(5000, 5001, "/health")
    for bad in ({"PORT": "http"}, {"PORT_HEALTH": "70000"}, {"HEALTH_CHECK_PATH": "ping"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ports.ports(bad)


def test_load_balancing_workers_get_runpods_port_variables_endpoint_env_wins(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    worker = WorkerRecord(id="w1", endpoint_id="e", token="t", version=1)
    lb = Endpoint.model_validate(
        {"name": "e", "id": "e", "imageName": "i", "type": "LB", "env": {"PORT": "5000"}}
    )
    env = worker_env(settings, "http://cp:1", lb, worker)
    assert (env["PORT"], env["PORT_HEALTH"], env["HEALTH_CHECK_PATH"]) == ("5000", "5000", "/ping")
    qb = Endpoint.model_validate({"name": "e", "id": "e", "imageName": "i"})
    assert "PORT" not in worker_env(settings, "http://cp:1", qb, worker)


# --- health -------------------------------------------------------------------------------------------
def test_verdicts() -> None:
    assert [rules.verdict(s) for s in (200, 204, 404, 500, None)] == [
        "ready",
        "initializing",
        "bad",
        "bad",
        "silent",
    ]


def test_health_steps() -> None:
    ok = rules.health_step("ready", "200", False, 5.0, 10.0, 3.0)
    assert (ok.routable, ok.contact, ok.bad_since, ok.fail) == (True, True, None, None)
    init = rules.health_step("initializing", "204", False, None, 10.0, 3.0)
    assert (init.routable, init.contact, init.fail) == (False, False, None)
    # a wrong answer starts a run of failures, fails once it lasted unhealthy_after_s
    first = rules.health_step("bad", "answered 404", False, None, 10.0, 3.0)
    assert (first.bad_since, first.fail) == (10.0, None)
    later = rules.health_step("bad", "answered 404", False, 10.0, 13.0, 3.0)
    assert later.fail is not None and "answered 404" in later.fail and "3.0s" in later.fail
    # a starting worker that does not answer is left to the start-up timeout
    assert rules.health_step("silent", "refused", False, 0.0, 100.0, 3.0).fail is None
    # a ready worker that stops answering fails like one that answers wrong
    assert rules.health_step("silent", "refused", True, 0.0, 100.0, 3.0).fail is not None
    # ... unless it is serving requests (a one-thread server busy with a long one): alive, not routable
    busy = rules.health_step("silent", "no answer within 2s", True, None, 100.0, 3.0, busy=True)
    assert (busy.routable, busy.contact, busy.bad_since, busy.fail) == (False, True, None, None)
    assert rules.health_step("bad", "answered 500", True, 0.0, 100.0, 3.0, busy=True).fail is not None


# --- affinity and routing -------------------------------------------------------------------------------
def test_affinity_header_forms() -> None:
    assert rules.affinity(None) == Affinity()
    assert rules.affinity("  ") == Affinity()
    assert rules.affinity("w1") == Affinity("soft", "w1")
    assert rules.affinity("strict w1") == Affinity("strict", "w1")
    assert rules.affinity("strict-resume  w1 ") == Affinity("strict-resume", "w1")
    with pytest.raises(ValueError, match="names no worker"):
        rules.affinity("strict")


def c(wid: str, routable: bool = True, in_flight: int = 0, last_pick: int = 0, **kw: bool) -> Candidate:
    return Candidate(wid, routable, in_flight, last_pick, **kw)


def test_choose_least_loaded_then_least_recently_used() -> None:
    assert rules.choose([c("a", in_flight=2), c("b", in_flight=1)], Affinity(), 4, False).worker_id == "b"
    assert rules.choose([c("a", last_pick=5), c("b", last_pick=3)], Affinity(), 4, False).worker_id == "b"
    assert rules.choose([c("a", routable=False), c("b", in_flight=3)], Affinity(), 4, False).worker_id == "b"


def test_choose_waits_for_a_starting_worker_when_all_are_at_the_cap() -> None:
    busy = [c("a", in_flight=1), c("b", in_flight=1)]
    assert rules.choose(busy, Affinity(), 1, coming=True).action == "wait"
    # nobody coming (workersMax reached, none starting): the least loaded takes it (no queue to hold it)
    assert (
        rules.choose([c("a", in_flight=2), c("b", in_flight=1)], Affinity(), 1, coming=False).worker_id == "b"
    )
    assert rules.choose([], Affinity(), 1, coming=False).action == "wait"


def test_soft_affinity_prefers_its_worker_and_falls_back() -> None:
    pool = [c("a", in_flight=0), c("b", in_flight=2)]
    assert rules.choose(pool, Affinity("soft", "b"), 4, False).worker_id == "b"
    assert rules.choose(pool, Affinity("soft", "b"), 2, False).worker_id == "a"  # b at its cap
    assert rules.choose(pool, Affinity("soft", "gone"), 4, False).worker_id == "a"


def test_strict_affinity_routes_waits_or_is_gone() -> None:
    pool = [c("a"), c("b", routable=False, paused=True), c("old", alive=False)]
    assert rules.choose(pool, Affinity("strict", "a"), 4, False) == rules.Choice("route", "a")
    assert rules.choose(pool, Affinity("strict", "b"), 4, False) == rules.Choice("wait", "b", resume=False)
    assert rules.choose(pool, Affinity("strict-resume", "b"), 4, False) == rules.Choice(
        "wait", "b", resume=True
    )
    assert rules.choose(pool, Affinity("strict", "old"), 4, False).action == "gone"
    assert rules.choose(pool, Affinity("strict", "nobody"), 4, False).action == "gone"
    assert rules.choose([c("a", in_flight=4)], Affinity("strict", "a"), 4, False).action == "wait"


def test_per_worker_cap_and_stats() -> None:
    assert [rules.per_worker(v) for v in (0.5, 1, 2.5, 4)] == [1, 1, 3, 4]
    s = rules.stats(waiting=2, in_flight=5, oldest_wait_s=1.5)
    assert (s.in_queue, s.in_queue_scaling, s.in_progress, s.oldest_scaling_wait_s) == (2, 2, 5, 1.5)


# --- addressing and headers --------------------------------------------------------------------------------
def test_host_and_path_forms() -> None:
    assert rules.endpoint_from_host("abc123.localhost:8000") == "abc123"
    assert rules.endpoint_from_host("abc123.LOCALHOST") == "abc123"
    assert rules.endpoint_from_host("localhost:8000") is None
    assert rules.endpoint_from_host("127.0.0.1:8000") is None
    assert rules.endpoint_from_host(None) is None
    assert rules.split_lb_path("/lb/ep/v1/chat?x") == ("ep", "/v1/chat?x")
    assert rules.split_lb_path("/lb/ep") == ("ep", "/")
    assert rules.split_lb_path("/lb/") is None
    assert rules.split_lb_path("/v2/ep/run") is None


def test_request_headers_drop_hop_by_hop_and_the_key_and_add_forwarding() -> None:
    given = [
        (b"Host", b"ep.localhost:8000"),
        (b"Authorization", b"Bearer secret"),
        (b"Connection", b"keep-alive, X-Private"),
        (b"X-Private", b"1"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Transfer-Encoding", b"chunked"),
        (b"X-Forwarded-For", b"10.0.0.1"),
        (b"Content-Type", b"application/json"),
        (b"Content-Length", b"12"),
    ]
    out = dict(rules.request_headers(given, "127.0.0.1", "http"))
    assert out == {
        "content-type": "application/json",
        "content-length": "12",
        "x-forwarded-for": "10.0.0.1, 127.0.0.1",
        "x-forwarded-proto": "http",
        "x-forwarded-host": "ep.localhost:8000",
    }
    ws = dict(
        rules.request_headers([(b"Sec-WebSocket-Key", b"k"), (b"Upgrade", b"websocket")], None, "ws", True)
    )
    assert "sec-websocket-key" not in ws and "upgrade" not in ws


def test_response_headers_set_the_worker_id() -> None:
    out = rules.response_headers(
        [
            ("Content-Type", "text/plain"),
            ("Connection", "close"),
            ("Date", "x"),
            ("X-Runpod-Worker-Id", "fake"),
        ],
        "w1",
    )
    assert out == [(b"Content-Type", b"text/plain"), (b"x-runpod-worker-id", b"w1")]


def test_api_key_forms() -> None:
    assert (
        rules.has_token("Bearer k", "k") and rules.has_token("k", "k") and rules.has_token("bearer  k ", "k")
    )
    assert not rules.has_token(None, "k") and not rules.has_token("Bearer x", "k")


def test_transport_error_names_a_refusal() -> None:
    try:
        raise OSError("All connection attempts failed") from ConnectionRefusedError(111, "Connection refused")
    except OSError as exc:
        assert rules.transport_error(exc) == "connection refused (nothing listens on that port)"
    assert rules.transport_error(TimeoutError("slow")) == "slow"
