"""What ingest tells operators: a log line per delivery without secrets, and Prometheus metrics."""

from __future__ import annotations

import structlog

from tests.sources import fixtures as fx
from tests.web.conftest import Hub


def _signature_values() -> list[str]:
    values: list[str] = []
    for delivery in fx.accepted():
        for name, value in delivery.headers.items():
            if "signature" in name.lower() or name.lower() in ("authorization", "x-api-key"):
                values.extend(part.split(",", 1)[-1] for part in value.split())
                values.append(value)
    return [v for v in values if len(v) > 8]


def test_logs_never_hold_secrets_or_signatures(hub: Hub) -> None:
    """Deliveries, rejects and handshakes log one line each, and no secret or signature in any."""
    with structlog.testing.capture_logs() as logs:
        for delivery in fx.accepted():
            assert hub.send(delivery).status_code == 200
        for delivery in fx.accepted()[:12]:  # again, now with a tampered body: rejected
            response = hub.client.post(
                delivery.path, content=delivery.body + b" ", headers=delivery.headers
            )
            assert response.status_code in (200, 401)
        hub.client.post(
            "/hooks/pipedream",
            content=b"{}",
            headers={"authorization": "Bearer " + fx.BEARER[::-1]},
        )
        params = {
            "hub.mode": "subscribe",
            "hub.challenge": "1",
            "hub.verify_token": fx.FB_VERIFY_TOKEN,
        }
        assert hub.client.get("/hooks/facebook", params=params).status_code == 200
        hub.client.get("/hooks/facebook", params={**params, "hub.verify_token": "guess"})
    received = [e for e in logs if e["event"] == "delivery_received"]
    assert len(received) == len(fx.accepted()) + 12 + 1
    assert {e["outcome"] for e in received} == {"accepted", "duplicate", "rejected"}
    assert all(e["endpoint"] for e in received)
    assert all(e["delivery_id"] for e in received if e["outcome"] != "rejected")
    assert any(e.get("reason") == "unauthorized" and e.get("detail") for e in received)
    text = repr(logs)
    for secret in (*fx.ALL_SECRETS, *_signature_values(), "aHVidXNlcjpodWJwYXNzLWV4YW1wbGU="):
        assert secret not in text, secret


def test_metrics_count_outcomes_and_events(hub: Hub) -> None:
    """/metrics counts accepted, duplicate and rejected deliveries and stored events by state."""
    d = fx.load("typeform", "form_response_full", "typeform")
    hub.send(d)
    hub.send(d)
    hub.client.post(d.path, content=d.body, headers={"content-type": "application/json"})
    hub.client.post("/hooks/who", content=b"{}")
    response = hub.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = set(response.text.splitlines())
    for expected in (
        'leadhub_deliveries_total{endpoint="typeform",outcome="accepted",reason=""} 1.0',
        'leadhub_deliveries_total{endpoint="typeform",outcome="duplicate",reason=""} 1.0',
        'leadhub_deliveries_total{endpoint="typeform",outcome="rejected",'
        'reason="unauthorized"} 1.0',
        'leadhub_deliveries_total{endpoint="",outcome="rejected",reason="unknown_endpoint"} 1.0',
        'leadhub_ingest_seconds_count{endpoint="typeform"} 3.0',
        'leadhub_events{state="queued"} 1.0',
        'leadhub_events{state="dead"} 0.0',
    ):
        assert expected in lines, expected


def test_each_app_has_its_own_registry(tmp_path: object, hub: Hub) -> None:
    """The metrics registry is per app and exposed for other parts to add collectors to."""
    from prometheus_client import REGISTRY, CollectorRegistry

    registry = hub.app.state.metrics  # type: ignore[attr-defined]
    assert isinstance(registry, CollectorRegistry) and registry is not REGISTRY
    from prometheus_client import Counter

    Counter("leadhub_test_extra", "added by another part", registry=registry).inc()
    assert "leadhub_test_extra_total 1.0" in hub.client.get("/metrics").text
