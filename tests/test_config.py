"""Settings turned into what the rest needs: the secrets to scrub, and one-line problems that show no secret."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from scenario_lib.config import LlmSettings, Settings, StoreSettings, summarize_validation_error


def test_secret_values_are_every_configured_key_and_only_those() -> None:
    settings = Settings(
        llm=LlmSettings(api_key="sk-model-key"), store=StoreSettings(access_key="AKIA-ACCESS", secret_key="")
    )
    assert settings.secret_values() == ["sk-model-key", "AKIA-ACCESS"]  # an empty secret is not one


def test_problems_name_the_field_and_value_but_never_a_secret() -> None:
    with pytest.raises(ValidationError) as info:
        Settings.model_validate({"llm": {"temperature": 7, "api_key": 12345}, "store": {"secret_key": ["hunter2"]}})
    text = summarize_validation_error(info.value)
    assert "llm.temperature: Input should be less than or equal to 2 (got 7)" in text
    assert "llm.api_key: " in text and "store.secret_key: " in text
    assert "12345" not in text and "hunter2" not in text and text.count("(got ***)") == 2
    assert "(got" not in summarize_validation_error(info.value, with_input=False)
    assert summarize_validation_error(info.value, prefix="x.").startswith("x.")
