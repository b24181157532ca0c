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


def test_pages_are_delivered_soon_after_they_fire() -> None:
    # A page has already waited out its rule's `for:`; the production defaults keep the
    # first notification within seconds of that. (The end-to-end stack runs a copy with
    # shorter group timings: test_config_prometheus.py checks that variant.)
    (page,) = [r for r in CONFIG["route"]["routes"] if r["receiver"] == "page"]
    assert page.get("group_wait", CONFIG["route"]["group_wait"]) in ("5s", "10s", "15s")
    assert CONFIG["route"]["group_wait"] in ("10s", "15s", "30s")


def test_circuit_open_inhibits_error_ratio_for_the_same_provider() -> None:
    assert {
        "source_matchers": ['alertname="ProviderCircuitOpen"'],
        "target_matchers": ['alertname="ProviderErrorRatioHigh"'],
        "equal": ["gen_ai_provider_name"],
    } in CONFIG["inhibit_rules"]


def test_inhibitions_name_existing_alerts_and_labels() -> None:
    rules = list(alert_rules())
    alerts = {rule["alert"] for _, rule in rules}
    labels_by_alert: dict[str, set[tuple[str, str]]] = {}
    for _, rule in rules:
        labels_by_alert.setdefault(rule["alert"], set()).update(
            (k, str(v)) for k, v in (rule.get("labels") or {}).items()
        )
    for rule in CONFIG["inhibit_rules"]:
        for side in ("source_matchers", "target_matchers"):
            matchers = dict(m.split("=", 1) for m in rule[side])
            name = matchers.pop("alertname").strip('"')
            assert name in alerts, rule[side]
            # Any other matcher names a static label that rule really sets.
            for label, value in matchers.items():
                assert (label, value.strip('"')) in labels_by_alert[name], rule[side]
