"""Provider adapters: where requests go, with which key, in which dialect."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from provider_proxy.adapters import (
    PLACEHOLDER_KEY,
    GlmAdapter,
    KimiAdapter,
    build_adapters,
    is_internal_url,
    startup_note,
)
from provider_proxy.settings import ProxySettings

KEY = "sk-kimi-test-0123456789"


def test_without_keys_both_providers_use_the_simulator_with_a_placeholder() -> None:
    adapters = build_adapters(ProxySettings())
    assert adapters["kimi"].endpoint.base_url == "http://127.0.0.1:8099/v1"
    assert adapters["glm"].endpoint.base_url == "http://127.0.0.1:8099/api/paas/v4"
    for adapter in adapters.values():
        assert adapter.endpoint.simulated
        assert adapter.headers() == {"Authorization": f"Bearer {PLACEHOLDER_KEY}"}
        note = startup_note(adapter)
        assert note is not None and "\n" not in note
        assert adapter.endpoint.base_url in note
        assert f"{adapter.name.upper()}_API_KEY" in note


def test_with_a_key_the_real_api_is_the_default() -> None:
    adapters = build_adapters(ProxySettings(kimi_api_key=SecretStr(KEY)))
    kimi = adapters["kimi"]
    assert kimi.endpoint.base_url == "https://api.moonshot.ai/v1"
    assert kimi.headers() == {"Authorization": f"Bearer {KEY}"}
    assert not kimi.endpoint.simulated
    assert startup_note(kimi) is None
    assert (kimi.endpoint.address, kimi.endpoint.port) == ("api.moonshot.ai", 443)
    assert adapters["glm"].endpoint.simulated


def test_base_url_and_timeouts_are_per_provider() -> None:
    settings = ProxySettings(
        glm_api_key=SecretStr(KEY),
        glm_base_url="http://glm.internal:9000/api/paas/v4/",
        glm_read_timeout_s=7,
        glm_deadline_s=9,
    )
    glm = build_adapters(settings)["glm"]
    assert glm.endpoint.base_url == "http://glm.internal:9000/api/paas/v4"
    assert (glm.endpoint.address, glm.endpoint.port) == ("glm.internal", 9000)
    assert (glm.timeouts.read_s, glm.timeouts.deadline_s) == (7, 9)


def adapter(cls: type[KimiAdapter] | type[GlmAdapter]) -> KimiAdapter | GlmAdapter:
    return build_adapters(ProxySettings())[cls.name]  # type: ignore[return-value]


def body(**extra: object) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.mark.parametrize("cls", [KimiAdapter, GlmAdapter])
def test_max_completion_tokens_becomes_max_tokens(cls: type[KimiAdapter]) -> None:
    payload = adapter(cls).prepare(body(max_completion_tokens=64), "model-x")
    assert payload["max_tokens"] == 64
    assert "max_completion_tokens" not in payload
    assert payload["model"] == "model-x"


@pytest.mark.parametrize("cls", [KimiAdapter, GlmAdapter])
def test_developer_role_becomes_system(cls: type[KimiAdapter]) -> None:
    original = body(messages=[{"role": "developer", "content": "be brief"}])
    payload = adapter(cls).prepare(original, "m")
    assert payload["messages"][0]["role"] == "system"  # type: ignore[index]
    assert original["messages"][0]["role"] == "developer"  # type: ignore[index]


@pytest.mark.parametrize(("given", "sent"), [(0, 0.01), (0.5, 0.5), (1.7, 1.0)])
def test_glm_clamps_temperature_into_its_range(given: float, sent: float) -> None:
    assert adapter(GlmAdapter).prepare(body(temperature=given), "m")["temperature"] == sent


def test_glm_gets_no_stream_options() -> None:
    payload = adapter(GlmAdapter).prepare(
        body(stream=True, stream_options={"include_usage": True}), "m"
    )
    assert "stream_options" not in payload


@pytest.mark.parametrize(("given", "sent"), [(0, 0.0), (1.5, 1.0)])
def test_kimi_clamps_temperature_to_one(given: float, sent: float) -> None:
    assert adapter(KimiAdapter).prepare(body(temperature=given), "m")["temperature"] == sent


def test_kimi_streams_always_ask_for_usage() -> None:
    payload = adapter(KimiAdapter).prepare(body(stream=True), "m")
    assert payload["stream_options"] == {"include_usage": True}
    assert "stream_options" not in adapter(KimiAdapter).prepare(body(), "m")


def test_unrelated_fields_pass_through() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    payload = adapter(KimiAdapter).prepare(body(tools=tools, seed=3), "m")
    assert payload["tools"] == tools
    assert payload["seed"] == 3


@pytest.mark.parametrize(
    ("url", "internal"),
    [
        ("http://127.0.0.1:8099/v1", True),  # the simulator (default EXAI_SIMULATOR_URL)
        ("http://127.0.0.1:40123/v1", True),  # loopback, any port
        ("http://127.8.9.10:1/v1", True),
        ("http://[::1]:9000/v1", True),
        ("http://localhost:9000/v1", True),
        ("http://LOCALHOST:9000/v1", True),
        ("https://api.moonshot.ai/v1", False),
        ("https://open.bigmodel.cn/api/paas/v4", False),
        ("http://glm.internal:9000/api/paas/v4", False),
        ("http://10.0.0.5:8099/v1", False),
        ("http://localhost.example.com/v1", False),
    ],
)
def test_only_the_simulator_and_loopback_are_internal(url: str, internal: bool) -> None:
    assert is_internal_url(url, "http://127.0.0.1:8099") is internal


def test_the_simulators_own_host_is_internal() -> None:
    assert is_internal_url("http://llm-simulator:8099/v1", "http://llm-simulator:8099")
    assert not is_internal_url("http://llm-simulator:8099/v1", "http://127.0.0.1:8099")


def test_trace_context_goes_to_the_simulator_never_to_the_real_apis() -> None:
    adapters = build_adapters(
        ProxySettings(kimi_api_key=SecretStr(KEY), simulator_url="http://llm-simulator:8099")
    )
    assert not adapters["kimi"].endpoint.propagate_context  # api.moonshot.ai
    assert adapters["glm"].endpoint.propagate_context  # no key: the simulator
    keyed = build_adapters(
        ProxySettings(
            kimi_api_key=SecretStr(KEY),
            glm_api_key=SecretStr(KEY),
            simulator_url="http://llm-simulator:8099",
        )
    )
    assert not any(a.endpoint.propagate_context for a in keyed.values())
    # A key pointed at a simulator (tests, demos) keeps the trace in one piece.
    at_simulator = build_adapters(
        ProxySettings(
            glm_api_key=SecretStr(KEY),
            glm_base_url="http://llm-simulator:8099/api/paas/v4",
            simulator_url="http://llm-simulator:8099",
        )
    )
    assert at_simulator["glm"].endpoint.propagate_context


@pytest.mark.parametrize("cls", [KimiAdapter, GlmAdapter])
def test_prepare_copies_only_what_it_changes(cls: type[KimiAdapter]) -> None:
    # No deep copy: whatever the client nested is shared, never walked (a deep copy of
    # 600 levels raised RecursionError, a 500).
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    original = body(
        messages=[{"role": "developer", "content": "be brief"}, {"role": "user", "content": "x"}],
        stream=True,
        stream_options={"include_usage": False},
        x=deep,
    )
    payload = adapter(cls).prepare(original, "m")
    assert payload["x"] is deep
    assert payload["messages"][1] is original["messages"][1]  # type: ignore[index]
    assert original["messages"][0]["role"] == "developer"  # type: ignore[index]
    assert original["stream_options"] == {"include_usage": False}
    assert original["model"] == "m" and "max_tokens" not in original
