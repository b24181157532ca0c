"""Model → provider routing and fallback targets."""

from __future__ import annotations

import pytest

from provider_proxy.errors import UnknownModel
from provider_proxy.routing import DEFAULT_MODEL_MAP, ModelRouter, Target


def test_default_map_routes_kimi_moonshot_and_glm() -> None:
    router = ModelRouter(DEFAULT_MODEL_MAP)
    assert router.route("kimi-k2-0905-preview") == Target("kimi", "kimi-k2-0905-preview")
    assert router.route("moonshot-v1-8k").provider == "kimi"
    assert router.route("glm-4.5-air").provider == "glm"


@pytest.mark.parametrize("model", ["gpt-4o", "KIMI-K2", "xkimi-k2", ""])
def test_unknown_models_are_refused(model: str) -> None:
    with pytest.raises(UnknownModel) as exc:
        ModelRouter(DEFAULT_MODEL_MAP).route(model)
    assert exc.value.status_code == 400
    assert exc.value.code == "model_not_found"


def test_exact_names_win_over_patterns_and_patterns_keep_their_order() -> None:
    router = ModelRouter({"glm-*": "glm", "glm-special": "kimi", "g*": "kimi"})
    assert router.route("glm-special").provider == "kimi"
    assert router.route("glm-4.6").provider == "glm"
    assert router.route("gemma").provider == "kimi"


def test_known_models_are_the_concrete_routable_names() -> None:
    router = ModelRouter(
        {"kimi-*": "kimi", "glm-4.5": "glm"},
        known_models=["kimi-a", "glm-4.6", "kimi-a", "glm-*"],
    )
    assert router.known_models() == [Target("kimi", "kimi-a"), Target("glm", "glm-4.5")]
    assert router.is_known("kimi-a")
    assert not router.is_known("kimi-b")


def test_fallback_uses_the_model_map_entry_for_the_model() -> None:
    router = ModelRouter(
        DEFAULT_MODEL_MAP,
        known_models=["kimi-a", "glm-x", "glm-y"],
        fallbacks={"kimi": "glm", "glm": "kimi"},
        fallback_models={"kimi-*": "glm-y", "glm-*": "kimi-a"},
    )
    assert router.fallback_for(Target("kimi", "kimi-a")) == Target("glm", "glm-y")
    assert router.fallback_for(Target("glm", "glm-x")) == Target("kimi", "kimi-a")


def test_fallback_without_a_model_mapping_takes_the_providers_first_model() -> None:
    router = ModelRouter(
        DEFAULT_MODEL_MAP, known_models=["kimi-a", "glm-x", "glm-y"], fallbacks={"kimi": "glm"}
    )
    assert router.fallback_for(Target("kimi", "kimi-a")) == Target("glm", "glm-x")


def test_a_mapping_to_another_provider_is_skipped() -> None:
    router = ModelRouter(
        DEFAULT_MODEL_MAP,
        known_models=["kimi-a", "glm-x"],
        fallbacks={"kimi": "glm"},
        fallback_models={"kimi-*": "kimi-b"},
    )
    assert router.fallback_for(Target("kimi", "kimi-a")) == Target("glm", "glm-x")


def test_no_fallback_configured() -> None:
    router = ModelRouter(DEFAULT_MODEL_MAP, known_models=["kimi-a", "glm-x"])
    assert router.fallback_for(Target("kimi", "kimi-a")) is None
