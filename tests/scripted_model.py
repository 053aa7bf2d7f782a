"""A chat model that answers each agent role from a script: the one fake, at the LangChain seam."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

from scenario_lib.agent.providers import read_request_block


def fenced(language: str, body: str) -> str:
    """A model-style answer with ``body`` in a fenced block."""
    return f"Here you go.\n```{language}\n{body.rstrip()}\n```\n"


APPROVE = fenced("json", '{"approve": true, "issues": []}')


class ScriptedChatModel(BaseChatModel):
    """Answers each agent role from its own list (the last answer repeats) and records every prompt."""

    answers: dict[str, list[str]]
    model_name: str = "scripted-model"
    _prompts: dict[str, list[list[BaseMessage]]] = PrivateAttr(default_factory=dict)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def prompts(self) -> dict[str, list[list[BaseMessage]]]:
        return self._prompts

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        role = read_request_block(messages)["role"]
        asked = self._prompts.setdefault(role, [])
        asked.append(list(messages))
        script = self.answers[role]
        text = script[min(len(asked), len(script)) - 1]
        usage = {"input_tokens": 1000, "output_tokens": 200, "total_tokens": 1200}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text, usage_metadata=usage))])
