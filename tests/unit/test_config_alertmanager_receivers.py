"""Alertmanager's receivers come from the environment (deploy/alertmanager/render-receivers.sh).

Alertmanager expands no variables; compose runs the script in the Alertmanager container
before starting it, the no-Docker stack on the host (stack.alertmanager_config). The
rendered file must still pass `amtool check-config`, route as before, and carry each
receiver's URL exactly as set.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.config_tools import REPO_ROOT, assert_ok, load_yaml, run_tool
from tests.support.stack import load_stack_module

SHIPPED = REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
SCRIPT = REPO_ROOT / "deploy" / "alertmanager" / "render-receivers.sh"
DEFAULT_URL = "http://127.0.0.1:9095/alerts"
VARIABLES = (
    "EXAI_ALERT_WEBHOOK_URL",
    "EXAI_ALERT_PAGE_WEBHOOK_URL",
    "EXAI_ALERT_TICKET_WEBHOOK_URL",
    "EXAI_ALERT_INFO_WEBHOOK_URL",
)
STACK = load_stack_module()


def _render(tmp_path: Path, **urls: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    return subprocess.run(
        ["sh", str(SCRIPT), str(SHIPPED), str(tmp_path / "alertmanager.yml")],
        env={**env, **urls},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _urls(config: dict[str, Any]) -> dict[str, list[str]]:
    return {r["name"]: [hook["url"] for hook in r["webhook_configs"]] for r in config["receivers"]}


def test_unset_the_rendered_config_is_the_shipped_one(tmp_path: Path) -> None:
    result = _render(tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "alertmanager.yml").read_bytes() == SHIPPED.read_bytes()
    shipped = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    assert _urls(shipped) == {name: [DEFAULT_URL] for name in ("page", "ticket", "info")}


def test_each_receiver_takes_its_own_url_else_the_common_one(tmp_path: Path) -> None:
    # Query strings with & and # survive: a webhook URL often carries its token there.
    common = "https://hooks.example.com/alertmanager?token=t0k&team=exai#ops"
    page = "https://events.pager.example/integration/abc123/enqueue"
    result = _render(tmp_path, EXAI_ALERT_WEBHOOK_URL=common, EXAI_ALERT_PAGE_WEBHOOK_URL=page)
    assert result.returncode == 0, result.stderr
    rendered = tmp_path / "alertmanager.yml"
    config = yaml.safe_load(rendered.read_text(encoding="utf-8"))
    assert _urls(config) == {"page": [page], "ticket": [common], "info": [common]}
    # Nothing else changed: routes, inhibitions, send_resolved, timeouts.
    shipped = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    for receiver, original in zip(config["receivers"], shipped["receivers"], strict=True):
        for hook, before in zip(
            receiver["webhook_configs"], original["webhook_configs"], strict=True
        ):
            assert {k: v for k, v in hook.items() if k != "url"} == {
                k: v for k, v in before.items() if k != "url"
            }
    assert {k: v for k, v in config.items() if k != "receivers"} == {
        k: v for k, v in shipped.items() if k != "receivers"
    }
    # The URLs may hold credentials: only the owner reads the file.
    assert stat.S_IMODE(rendered.stat().st_mode) == 0o600
    check = run_tool("amtool", "check-config", str(rendered))
    assert_ok(check)
    assert "SUCCESS" in check.stdout
    routed = run_tool(
        "amtool", "config", "routes", "test", f"--config.file={rendered}", "severity=page"
    )
    assert_ok(routed)
    assert routed.stdout.split() == ["page"]


def test_a_malformed_url_fails_amtool_and_a_quote_is_refused(tmp_path: Path) -> None:
    result = _render(tmp_path, EXAI_ALERT_TICKET_WEBHOOK_URL="not a url")
    assert result.returncode == 0, result.stderr
    check = run_tool("amtool", "check-config", str(tmp_path / "alertmanager.yml"))
    assert check.returncode != 0
    refused = _render(tmp_path, EXAI_ALERT_INFO_WEBHOOK_URL='https://x.example/"a"')
    assert refused.returncode != 0
    assert "EXAI_ALERT_INFO_WEBHOOK_URL" in refused.stderr


def test_the_local_stack_renders_the_same_receivers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    ticket = "https://chat.example/hooks/exai-tickets"
    overrides = {
        "EXAI_ALERT_TICKET_WEBHOOK_URL": ticket,
        # The end-to-end timings apply on top of the rendered receivers.
        "EXAI_ALERTMANAGER_GROUP_WAIT": "5s",
    }
    path = STACK.alertmanager_config(tmp_path, overrides)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert _urls(config) == {"page": [DEFAULT_URL], "ticket": [ticket], "info": [DEFAULT_URL]}
    assert config["route"]["group_wait"] == "5s"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert_ok(run_tool("amtool", "check-config", str(path)))


def test_compose_renders_before_starting_alertmanager() -> None:
    service = load_yaml("docker-compose.yml")["services"]["alertmanager"]
    entrypoint, command = service["entrypoint"], service["command"]
    assert entrypoint[:2] == ["/bin/sh", "/etc/alertmanager/render-receivers.sh"]
    rendered = entrypoint[3]
    assert f"--config.file={rendered}" in command
    assert entrypoint[4] == "/bin/alertmanager"
    # The container's file system is read-only: the rendered file goes to a tmpfs.
    assert service["read_only"] is True
    assert any(rendered.startswith(mount.rstrip("/") + "/") for mount in service["tmpfs"])
    mounts = {volume.split(":")[1] for volume in service["volumes"]}
    assert {entrypoint[1], entrypoint[2]} <= mounts
    for variable in VARIABLES:
        assert service["environment"][variable] == f"${{{variable}:-}}"
    documented = (REPO_ROOT / ".env.example").read_text(encoding="utf-8")
    for variable in VARIABLES:
        assert f"# {variable}=" in documented
