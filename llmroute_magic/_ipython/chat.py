"""Conversations across notebook cells: the turns of each, and what the next cell sends.

``%%llm --chat NAME`` cells add turns to conversation NAME; each turn is the cell's prompt and the
answer it got. The next cell of the conversation sends the earlier turns as messages before its
own prompt, within two limits, oldest turns left out first:

- turns: at most ``max_turns`` earlier turns (0: no limit);
- tokens: the whole prompt (system, earlier turns, the new prompt) within a token budget, estimated
  the way the router estimates a prompt's size (``_request.estimate_tokens``). ``token_budget``
  makes that budget from the provider's context window less room for the answer, and an
  optional cap of the user's.

A cell has a key (the magics make it: the Jupyter cell id, else the cell's text). Running a cell
again replaces its own turn instead of adding a second one: the re-run sees only the turns before
its own, and the turns after it stay where they are, as the cells below it stay in the notebook.
A key made from the cell's text (``anywhere=False``: no cell id) replaces only the last turn, so
in a terminal running the same text again right away is a retry, and the same words later in the
conversation are a new turn.

A conversation keeps the provider that answered it last and the model a cell asked for with
``-m``, until a cell names others. Nothing here imports IPython or talks to a router.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .._format import cost_total, count, plural

DEFAULT_NAME = "default"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")

# Room left for the answer when the cell sets no --max-tokens: a quarter of the window, at most this.
ANSWER_ROOM_TOKENS = 4096

Estimate = Callable[[list[dict[str, Any]], "str | None"], int]


def check_name(name: str) -> str:
    """A conversation name: letters, digits, ``_ . -`` (up to 64), so it reads well in the ledger."""
    if not _NAME.match(name or ""):
        raise ValueError(
            f"conversation name {name!r}: use letters, digits, '_', '.' or '-' (up to 64, not starting with '.' or '-')"
        )
    return name


def default_estimate(messages: list[dict[str, Any]], system: str | None) -> int:
    from .._request import estimate_prompt_tokens  # the router's own estimate of a prompt's size

    return estimate_prompt_tokens(messages, system)


def token_budget(context_window: int | None, max_tokens: int | None = None, cap: int | None = None) -> int | None:
    """Tokens the prompt may take: the context window less the answer's room (``max_tokens``, else a
    quarter of the window up to ``ANSWER_ROOM_TOKENS``), and at most ``cap``. None: no limit known."""
    budget = None
    if context_window:
        room = max_tokens if max_tokens else min(ANSWER_ROOM_TOKENS, max(1, context_window // 4))
        budget = max(1, context_window - room)
    if cap:
        budget = cap if budget is None else min(budget, cap)
    return budget


@dataclass(frozen=True, slots=True)
class Turn:
    """One cell's exchange: the prompt it sent (after interpolation) and the answer it got."""

    key: str
    prompt: str
    answer: str
    provider: str
    model: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float = math.nan
    request_id: str = ""

    @classmethod
    def of(cls, key: str, prompt: str, completion: Any) -> Turn:
        c = completion
        answer = _answer_text(c)
        return cls(key, prompt, answer, c.provider, c.model, c.input_tokens, c.output_tokens, c.cost, c.request_id)


def _answer_text(completion: Any) -> str:
    """What the next cell sends as this turn's assistant message. Never empty: Anthropic refuses an
    empty assistant turn, and a turn that only asked for tool calls (not run) still said something."""
    if completion.text:
        return str(completion.text)
    calls = [f"{c.name}({json.dumps(c.arguments, ensure_ascii=False)})" for c in completion.tool_calls or ()]
    if calls:
        return f"[asked to call {', '.join(calls)}; not run]"
    return "[no answer]"


@dataclass(frozen=True, slots=True)
class Plan:
    """What one cell of a conversation sends, and what the footer says about it."""

    name: str
    key: str
    messages: list[dict[str, Any]]  # the earlier turns kept, then the cell's prompt
    system: str | None
    provider: str | None  # the provider to pin (the conversation's, or the cell's -p); None: route
    model: str | None  # the model to ask for (the conversation's, or the cell's -m); None: the provider's
    position: int  # the turn's place, 0-based
    replaces: bool  # the cell's earlier turn at `position` is replaced
    earlier: int  # turns before this one
    sent: int  # of which sent
    left_out_turns: int  # left out by the turn limit
    left_out_tokens: int  # left out by the token budget
    prompt_tokens: int  # estimated size of what is sent
    budget: int | None

    @property
    def turn(self) -> int:
        return self.position + 1

    def note(self) -> str:
        """One footer line: ``chat NAME · turn 3 · 1 earlier turn sent, 1 left out (token limit)``."""
        parts = [f"chat {self.name}", f"turn {self.turn}" + (" (replaced)" if self.replaces else "")]
        if self.earlier:
            sent = f"{plural(self.sent, 'earlier turn')} sent"
            left = []
            if self.left_out_turns:
                left.append(f"{self.left_out_turns} by the turn limit")
            if self.left_out_tokens:
                limit = f"≈{count(self.prompt_tokens)} of {count(self.budget)} tokens" if self.budget else "tokens"
                left.append(f"{self.left_out_tokens} by the token limit ({limit})")
            if left:
                sent += f"; oldest left out: {', '.join(left)}"
            parts.append(sent)
        return " · ".join(parts)

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "turn": self.turn,
            "replaced": self.replaces,
            "earlier_turns": self.earlier,
            "sent_turns": self.sent,
            "left_out_by_turns": self.left_out_turns,
            "left_out_by_tokens": self.left_out_tokens,
            "prompt_tokens_estimate": self.prompt_tokens,
            "token_budget": self.budget,
        }


@dataclass
class Conversation:
    name: str
    turns: list[Turn] = field(default_factory=list)
    provider: str | None = None  # the provider that answered last (kept for the next cell)
    model: str | None = None  # the model a cell asked for with -m (kept until another provider is named)
    system: str | None = None  # the system prompt a cell gave with --system (kept)
    requests: int = 0  # answers received, replaced turns included
    tokens: int = 0  # their input + output tokens, where known
    unknown_tokens: int = 0  # answers whose provider reported no usage
    cost: float = 0.0  # their cost, where known
    unpriced: int = 0  # answers whose price is unknown

    def find(self, key: str, anywhere: bool = True) -> int | None:
        if anywhere:
            for i, t in enumerate(self.turns):
                if t.key == key:
                    return i
            return None
        return len(self.turns) - 1 if self.turns and self.turns[-1].key == key else None

    def plan(
        self,
        key: str,
        prompt: str,
        *,
        anywhere: bool = True,
        provider: str | None = None,
        model: str | None = None,
        system: str | None = None,
        max_turns: int = 0,
        budget: int | None = None,
        estimate: Estimate = default_estimate,
    ) -> Plan:
        """What the cell with ``key`` sends with ``prompt``. Changes nothing until ``commit``.

        ``provider``: where it goes (the caller picks: the cell's -p, else the conversation's
        provider when it can still serve, else None to route). ``model``: the cell's -m; without
        one, the conversation's model goes with the conversation's provider only (another
        provider may not have it). ``system``: the cell's --system, else the conversation's."""
        found = self.find(key, anywhere)
        position = len(self.turns) if found is None else found
        earlier = self.turns[:position]
        kept = earlier[-max_turns:] if max_turns and max_turns > 0 else list(earlier)
        by_turns = len(earlier) - len(kept)
        if model is not None:
            chosen_model: str | None = model
        else:
            chosen_model = self.model if provider is not None and provider == self.provider else None
        system = system if system is not None else self.system
        messages = _messages(kept, prompt)
        size = estimate(messages, system)
        by_tokens = 0
        while budget is not None and size > budget and kept:
            kept = kept[1:]
            by_tokens += 1
            messages = _messages(kept, prompt)
            size = estimate(messages, system)
        return Plan(
            self.name,
            key,
            messages,
            system,
            provider,
            chosen_model,
            position,
            found is not None,
            len(earlier),
            len(kept),
            by_turns,
            by_tokens,
            size,
            budget,
        )

    def commit(self, plan: Plan, turn: Turn, *, pinned_model: str | None = None, system: str | None = None) -> None:
        """Keep the answer of the cell ``plan`` was made for. ``pinned_model``: the cell's -m."""
        found = self.find(plan.key) if plan.replaces else None
        if found is not None:
            self.turns[found] = turn
        else:
            self.turns.append(turn)
        if self.provider is not None and turn.provider != self.provider and pinned_model is None:
            self.model = None
        self.provider = turn.provider
        if pinned_model is not None:
            self.model = pinned_model
        if system is not None:
            self.system = system
        self.requests += 1
        if turn.input_tokens is None or turn.output_tokens is None:
            self.unknown_tokens += 1
        else:
            self.tokens += turn.input_tokens + turn.output_tokens
        if turn.cost is None or math.isnan(turn.cost):
            self.unpriced += 1
        else:
            self.cost += turn.cost

    def messages(self) -> list[dict[str, Any]]:
        """Every turn as chat messages (what a cell after the last one would send, before limits)."""
        return [
            m
            for t in self.turns
            for m in ({"role": "user", "content": t.prompt}, {"role": "assistant", "content": t.answer})
        ]

    def context_tokens(self, estimate: Estimate = default_estimate) -> int:
        return estimate(self.messages(), self.system) if self.turns else 0

    def cost_text(self) -> str:
        return cost_total(
            math.nan if self.unpriced else self.cost, self.unpriced, priced=self.cost if self.unpriced else None
        )

    def tokens_text(self) -> str:
        return count(self.tokens) + (f" (+{self.unknown_tokens} unreported)" if self.unknown_tokens else "")


def _messages(turns: list[Turn], prompt: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for t in turns:
        out.append({"role": "user", "content": t.prompt})
        out.append({"role": "assistant", "content": t.answer})
    out.append({"role": "user", "content": prompt})
    return out


class Conversations:
    """The conversations of one notebook (one set of magics), by name, in the order they began."""

    def __init__(self) -> None:
        self._items: dict[str, Conversation] = {}

    def get(self, name: str) -> Conversation | None:
        return self._items.get(name)

    def open(self, name: str) -> Conversation:
        """The conversation ``name``, begun now if it is new."""
        conv = self._items.get(name)
        if conv is None:
            conv = self._items[check_name(name)] = Conversation(name)
        return conv

    def reset(self, name: str | None = None) -> list[str]:
        """Forget one conversation (None: every one); the names forgotten."""
        if name is None:
            names, self._items = list(self._items), {}
            return names
        return [name] if self._items.pop(name, None) is not None else []

    @property
    def names(self) -> list[str]:
        return list(self._items)

    def __iter__(self) -> Iterator[Conversation]:
        return iter(list(self._items.values()))

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
