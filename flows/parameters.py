"""Flow parameters → scenario_lib settings: a parameter, when given, wins over the worker's SCENARIOS_* environment."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from scenario_lib.config import ENV_PREFIX, Settings, summarize_validation_error, load_settings
from scenario_lib.errors import ConfigError


def settings_for(*, store_url: str | None = None, provider: str | None = None) -> Settings:
    """Read the settings once for this flow run, with the flow's ``store_url`` and ``provider`` on top.

    The other store fields (endpoint, keys) still come from the environment, so ``store_url`` can name
    another bucket or prefix on the same S3 server. Invalid values raise `ConfigError` naming the setting.
    """
    overrides: dict[str, Any] = {}
    if store_url is not None:
        overrides["store"] = {"url": store_url}
    if provider is not None:
        overrides["llm"] = {"provider": provider}
    try:
        return load_settings(**overrides)
    except ValidationError as err:
        raise ConfigError(
            f"invalid settings for this flow run: {summarize_validation_error(err)}. Fix the flow parameter, or the worker's "
            f"{ENV_PREFIX}* environment (e.g. {ENV_PREFIX}LLM__PROVIDER) / scenarios.toml"
        ) from err


__all__ = ["settings_for"]
