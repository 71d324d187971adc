"""The neutral request every wire format parses into, and the input-token rule.

A format's ``parse`` reduces its request body to a ``SimRequest``; everything after that (faults,
limits, answers, billing) works on this one shape, so the same conversation sent in any format
gets the same answer and the same token counts.

Input tokens: about one per 4 characters of text (at least 1), plus 3 per message (the system
prompt counts as one message), plus ``IMAGE_TOKENS`` per image, whatever its size or encoding.
Tool definitions and response schemas are not counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

IMAGE_TOKENS = 85  # input tokens per image (OpenAI's flat price of a low-detail image)

# Roles of ``SimRequest.turns``: what the user said, what the assistant said (tool calls included as
# text), and tool results sent back. System text is not a turn.
USER, ASSISTANT, TOOL = "user", "assistant", "tool"

TOOL_CHOICES = ("auto", "none", "required", "tool")


class BadRequest(Exception):
    """The request body is unusable; the message says which field and why. Counted, never billed.

    ``body``: the whole error body, when the real API's carries more than the format's ``error``
    writes (OpenAI's ``code``); sent as is with ``status``."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, body: bytes | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: its name, description and JSON schema of its arguments object."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(slots=True)
class SimRequest:
    """What a request asks for, whatever its wire format.

    A format's ``parse`` builds it with what every request has and sets the optional fields it
    finds. No default allocates (no default_factory): this object is built once per request.
    """

    model: str
    system: str
    turns: list[tuple[str, str]]  # (role, text), role one of USER, ASSISTANT, TOOL
    max_tokens: int | None = None
    stream: bool = False
    stream_usage: bool = False  # a stream should end with usage (OpenAI: stream_options.include_usage)
    images: int = 0  # how many images the prompt carries
    tools: tuple[Tool, ...] = ()
    tool_choice: str = "auto"  # one of TOOL_CHOICES; "tool" means the tool named in tool_name
    tool_name: str | None = None
    parallel_tool_calls: bool = True  # False: at most one tool call per answer
    json_schema: Mapping[str, Any] | None = None  # the answer must be JSON valid for this schema
    json_mode: bool = False  # the answer must be a JSON object (any shape); set with json_schema too
    extras: dict[str, Any] | None = None  # format-specific settings for its own renderer

    @property
    def input_tokens(self) -> int:
        """``count_input_tokens`` of the system text, the turns and the images (inlined: it is on the hot path)."""
        system, turns = self.system, self.turns
        chars = len(system)
        for _, text in turns:
            chars += len(text)
        return max(1, -(-chars // 4)) + 3 * (len(turns) + (1 if system else 0)) + IMAGE_TOKENS * self.images

    @property
    def key(self) -> str:
        """What the answer depends on: the conversation (not the model, the format or the settings)."""
        return prompt_key(self.system, self.turns)

    @property
    def structured(self) -> bool:
        """The request demands structure: a JSON answer, or a call of one named tool (Anthropic's schema idiom)."""
        return self.json_schema is not None or self.json_mode or self.tool_choice == "tool"

    def tool(self, name: str) -> Tool | None:
        for t in self.tools:
            if t.name == name:
                return t
        return None


def count_input_tokens(system: str, texts: Iterable[str], images: int = 0) -> int:
    """About one token per 4 characters (at least 1), plus 3 per message, plus IMAGE_TOKENS per image."""
    texts = list(texts)
    chars = len(system) + sum(len(t) for t in texts)
    messages = len(texts) + (1 if system else 0)
    return max(1, -(-chars // 4)) + 3 * messages + IMAGE_TOKENS * images


def prompt_key(system: str, turns: Iterable[tuple[str, str]]) -> str:
    return system + "\x1e" + "\x1e".join(f"{role}\x1f{text}" for role, text in turns)
