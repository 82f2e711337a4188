"""Chat templates from a checkpoint, rendered with a sandboxed jinja2 environment.

The environment mirrors what Hugging Face templates expect: `trim_blocks`, `lstrip_blocks`, the `loopcontrols`
extension, and the globals/filters `raise_exception`, `strftime_now`, `tojson` (no HTML escaping, non-ASCII kept),
`dict` and `namespace` (no underscore attributes). The immutable sandbox keeps templates from mutating the
caller's messages or reaching Python internals.

Continuing an assistant turn (`continue_final_message=True`): a marker (followed by one space) is appended to the
last message's content before rendering and the text is cut at the marker, so the result ends right after that
content with no end-of-turn tokens; a forced-termination suffix or a partial answer can then be appended and
sampled from. If the template strips the content (`| trim`), the space after the marker is gone too and the cut
text is right-stripped, as transformers does.
"""

from __future__ import annotations

import copy
import datetime
import functools
import json
from typing import Any

import jinja2
import jinja2.ext
import jinja2.sandbox
import jinja2.utils

# Plain ASCII so that it survives tojson, trim and escaping filters.
_CONTINUE_MARK = "MRTCONTINUEFINALMESSAGE7F3A"


def _raise_exception(message: str):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None, sort_keys: bool = False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


class _Namespace(jinja2.utils.Namespace):
    """jinja2 `namespace()` that refuses underscore names (no route to dunder attributes)."""

    def __init__(*args, **kwargs):  # noqa: N805 -- same signature trick as jinja2.utils.Namespace
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name, value):
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name):
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"chat template may not set underscore attribute {name!r}")


def _make_dict(*args, **kwargs) -> dict:
    return dict(*args, **kwargs)


@functools.lru_cache(maxsize=16)
def compile_chat_template(template: str) -> jinja2.Template:
    """Compile `template` in the sandboxed environment (cached per template string).

    Raises ValueError naming the line when the template does not parse.
    """
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals.update(
        raise_exception=_raise_exception, strftime_now=_strftime_now, dict=_make_dict, namespace=_Namespace
    )
    try:
        return env.from_string(template)
    except jinja2.exceptions.TemplateSyntaxError as e:
        raise ValueError(f"chat template does not parse (line {e.lineno}): {e.message}") from e


def _check_messages(messages: list[dict]) -> None:
    if not isinstance(messages, (list, tuple)):
        raise TypeError(f"messages must be a list of dicts, got {type(messages).__name__}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise ValueError(f"messages[{i}] must be a dict with a 'role' key (and usually 'content'), got {m!r}")


def render_chat_template(
    template: str,
    messages: list[dict],
    *,
    add_generation_prompt: bool = True,
    continue_final_message: bool = False,
    **template_kwargs: Any,
) -> str:
    """Render `messages` with `template`.

    With `continue_final_message`, `add_generation_prompt` is ignored and the text ends right after the final
    message's content (its trailing whitespace kept only if the template keeps it; see module docstring).
    """
    _check_messages(messages)
    messages = copy.deepcopy(list(messages))
    if continue_final_message:
        if not messages:
            raise ValueError("continue_final_message=True needs at least one message")
        content = messages[-1].get("content")
        if not isinstance(content, str):
            raise ValueError(
                f"continue_final_message=True needs the final message's 'content' to be a string, got {content!r}"
            )
        messages[-1]["content"] = content + _CONTINUE_MARK + " "
        add_generation_prompt = False
    compiled = compile_chat_template(template)
    try:
        text = compiled.render(messages=messages, add_generation_prompt=add_generation_prompt, **template_kwargs)
    except jinja2.exceptions.TemplateError as e:
        raise ValueError(f"chat template failed to render: {e}") from e
    if continue_final_message:
        cut = text.rfind(_CONTINUE_MARK)
        if cut < 0:
            raise ValueError("continue_final_message=True but the template dropped the final message's content")
        # Space still after the marker: the template kept the content verbatim; otherwise it trimmed it.
        kept = text[cut + len(_CONTINUE_MARK) : cut + len(_CONTINUE_MARK) + 1] == " "
        text = text[:cut] if kept else text[:cut].rstrip()
    return text
