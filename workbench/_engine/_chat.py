"""Render a model's chat template (Jinja, from GGUF or tokenizer_config.json) safely.

Templates come from model files, i.e. untrusted input, so they run in Jinja's
``ImmutableSandboxedEnvironment``: no attribute access to internals, no mutation of the
arguments. A template that fails to parse or render raises
:class:`~workbench.errors.ConfigError`. Without a template, messages are rendered as ChatML
(``<|im_start|>role\\ncontent<|im_end|>\\n``), which SmolLM2 and many small models use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

from jinja2 import Template, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from workbench.errors import ConfigError

__all__ = ["render_chat"]

MAX_TEMPLATE_CHARS = 100_000
MAX_RENDERED_CHARS = 10_000_000


def render_chat(template: str | None, messages: Sequence[Mapping[str, str]], *,
                add_generation_prompt: bool = True, bos_token: str = "",
                eos_token: str = "") -> str:
    """The prompt text for ``messages`` ([{"role": ..., "content": ...}, ...])."""
    for message in messages:
        if not isinstance(message.get("role"), str) or not isinstance(message.get("content"),
                                                                       str):
            raise ConfigError(f"chat message {dict(message)!r} needs string 'role' and "
                              "'content'")
    if template is None:
        return _chatml(messages, add_generation_prompt)
    try:
        text = _compile(template).render(
            messages=[dict(m) for m in messages], add_generation_prompt=add_generation_prompt,
            bos_token=bos_token, eos_token=eos_token)
    except TemplateError as exc:
        raise ConfigError(f"the model's chat template failed: {exc}; pass a prompt string "
                          "instead of messages, or fix the template") from exc
    if len(text) > MAX_RENDERED_CHARS:
        raise ConfigError(f"the chat template rendered {len(text)} characters, over "
                          f"{MAX_RENDERED_CHARS}")
    return str(text)


def _chatml(messages: Sequence[Mapping[str, str]], add_generation_prompt: bool) -> str:
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


@lru_cache(maxsize=16)
def _compile(template: str) -> Template:
    if len(template) > MAX_TEMPLATE_CHARS:
        raise ConfigError(f"chat template is {len(template)} characters, over "
                          f"{MAX_TEMPLATE_CHARS}")
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    try:
        return env.from_string(template)
    except TemplateError as exc:
        raise ConfigError(f"the model's chat template does not parse: {exc}") from exc


def _raise(message: str) -> None:
    raise TemplateError(message)
