"""Render a model's chat template (Jinja, from GGUF or tokenizer_config.json) safely.

Templates come from model files, i.e. untrusted input, so they run in Jinja's
``ImmutableSandboxedEnvironment``: no attribute access to internals, no mutation of the
arguments. A template that fails to parse or render raises
:class:`~workbench.errors.ConfigError`. Without a template, messages are rendered as ChatML
(``<|im_start|>role\\ncontent<|im_end|>\\n``), which SmolLM2 and many small models use.

Control tokens come only from the template. :func:`render_chat_segments` renders with every
special-token string inside the messages replaced by a private placeholder character, so the
only special tokens in the rendered text are the template's own; it returns the text split
into plain-text runs (placeholders restored: the message text is kept verbatim) and those
control tokens. The tokenizer then encodes the runs with special-token matching off.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from functools import lru_cache

from jinja2 import Template, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from workbench.errors import ConfigError

__all__ = ["Segment", "render_chat", "render_chat_segments"]

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


Segment = tuple[bool, str]
"""(is a control token, text): a control token's exact string, or a run of plain text."""

_PLACEHOLDERS = range(0xF0000, 0x10FFFE)  # supplementary private use planes


def render_chat_segments(template: str | None, messages: Sequence[Mapping[str, str]], *,
                         special: Collection[str], add_generation_prompt: bool = True,
                         bos_token: str = "", eos_token: str = "") -> list[Segment]:
    """The prompt for ``messages`` as plain-text runs and control tokens (``special``: the
    tokenizer's special-token strings). A special-token string inside a message (role or
    content) stays text; only the template's own output yields control tokens."""
    tokens = sorted((t for t in special if t), key=len, reverse=True)
    if not tokens:
        return [(False, render_chat(template, messages, add_generation_prompt=add_generation_prompt,
                                    bos_token=bos_token, eos_token=eos_token))]
    values = [v for m in messages for v in m.values() if isinstance(v, str)]
    taken = set("".join([*values, template or "", bos_token, eos_token]))
    free = (chr(c) for c in _PLACEHOLDERS if chr(c) not in taken)
    placeholder = {t: next(free) for t in tokens}
    in_text = re.compile("|".join(map(re.escape, tokens)))
    escaped = [{k: in_text.sub(lambda m: placeholder[m[0]], v) if isinstance(v, str) else v
                for k, v in m.items()} for m in messages]
    text = render_chat(template, escaped, add_generation_prompt=add_generation_prompt,
                       bos_token=bos_token, eos_token=eos_token)
    restore = {p: t for t, p in placeholder.items()}
    segments: list[Segment] = []
    run: list[str] = []
    pos = 0
    for found in re.finditer("|".join([*map(re.escape, tokens), *map(re.escape, restore)]),
                             text):
        run.append(text[pos:found.start()])
        pos = found.end()
        if found[0] in restore:
            run.append(restore[found[0]])
            continue
        if "".join(run):
            segments.append((False, "".join(run)))
        run = []
        segments.append((True, found[0]))
    run.append(text[pos:])
    if "".join(run):
        segments.append((False, "".join(run)))
    return segments


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
