"""Static checks of deploy/alertmanager/alertmanager.yml.

`amtool check-config`, route tests and a live inhibition test run in
test_config_tools.py; this pins the contract the end-to-end tests and the compose
webhook rely on.
"""

from __future__ import annotations

from tests.config_tools import alert_rules, load_yaml

CONFIG = load_yaml("deploy/alertmanager/alertmanager.yml")
WEBHOOK_URL = "http://127.0.0.1:9095/alerts"


def test_routes_by_severity_to_webhook_receivers() -> None:
    route = CONFIG["route"]
    assert {"alertname", "service_name"} <= set(route["group_by"])
    routed = {r["matchers"][0]: r["receiver"] for r in route["routes"]}
    assert routed == {
        'severity="page"': "page",
        'severity="ticket"': "ticket",
        'severity="info"': "info",
    }
    severities = {rule["labels"]["severity"] for _, rule in alert_rules()}
    assert {f'severity="{s}"' for s in severities} <= set(routed)


def test_every_receiver_posts_to_the_local_webhook() -> None:
    for receiver in CONFIG["receivers"]:
        urls = [hook["url"] for hook in receiver["webhook_configs"]]
        assert urls == [WEBHOOK_URL], receiver["name"]


def test_notifications_are_quick_enough_for_the_e2e_alert_test() -> None:
    # Prometheus fires within ~75 s of a provider fault; delivery must add little.
    assert CONFIG["route"]["group_wait"] in ("5s", "10s", "15s")
    for route in CONFIG["route"]["routes"]:
        if route["receiver"] in ("page", "ticket"):
            assert route.get("group_wait", CONFIG["route"]["group_wait"]) in ("5s", "10s", "15s")


def test_circuit_open_inhibits_error_ratio_for_the_same_provider() -> None:
    assert {
        "source_matchers": ['alertname="ProviderCircuitOpen"'],
        "target_matchers": ['alertname="ProviderErrorRatioHigh"'],
        "equal": ["gen_ai_provider_name"],
    } in CONFIG["inhibit_rules"]


def test_inhibitions_name_existing_alerts() -> None:
    alerts = {rule["alert"] for _, rule in alert_rules()}
    for rule in CONFIG["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            name = matcher.removeprefix('alertname="').removesuffix('"')
            assert name in alerts, matcher
