"""Which provider serves a model, and where a failed call falls back to.

The model map's keys are exact names or glob patterns (`kimi-*`); exact names win,
then patterns in their configured order. A fallback target is a provider plus the
model to ask it for: the first fallback-model-map entry matching the original model
whose value the target provider serves, else the target's first known model.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from provider_proxy.errors import UnknownModel
from provider_proxy.types import ProviderName

DEFAULT_MODEL_MAP: dict[str, ProviderName] = {
    "kimi-*": "kimi",
    "moonshot-*": "kimi",
    "glm-*": "glm",
}


def is_pattern(name: str) -> bool:
    return any(ch in name for ch in "*?[")


@dataclass(frozen=True)
class Target:
    provider: ProviderName
    model: str


class ModelRouter:
    def __init__(
        self,
        model_map: Mapping[str, ProviderName],
        *,
        known_models: Iterable[str] = (),
        fallbacks: Mapping[ProviderName, ProviderName] | None = None,
        fallback_models: Mapping[str, str] | None = None,
    ) -> None:
        self._model_map = dict(model_map)
        self._fallbacks = dict(fallbacks or {})
        self._fallback_models = dict(fallback_models or {})
        candidates = [*known_models, *self._model_map, *self._fallback_models.values()]
        self._known = list(
            dict.fromkeys(m for m in candidates if not is_pattern(m) and self.provider_of(m))
        )

    def provider_of(self, model: str) -> ProviderName | None:
        if model in self._model_map:
            return self._model_map[model]
        for pattern, provider in self._model_map.items():
            if fnmatch.fnmatchcase(model, pattern):
                return provider
        return None

    def route(self, model: str) -> Target:
        provider = self.provider_of(model)
        if provider is None:
            raise UnknownModel(model)
        return Target(provider, model)

    def known_models(self) -> list[Target]:
        """Every concrete model name the proxy knows, with its provider (for /v1/models)."""
        return [self.route(m) for m in self._known]

    def is_known(self, model: str) -> bool:
        return model in self._known

    def fallback_for(self, target: Target) -> Target | None:
        provider = self._fallbacks.get(target.provider)
        if provider is None or provider == target.provider:
            return None
        for pattern, model in self._fallback_models.items():
            if fnmatch.fnmatchcase(target.model, pattern) and self.provider_of(model) == provider:
                return Target(provider, model)
        for model in self._known:
            if self.provider_of(model) == provider:
                return Target(provider, model)
        return None
