"""Deterministic answers and token counts, the same for both wire formats.

A conversation is reduced to a neutral (system, messages) form first, so the same prompt sent
in OpenAI or Anthropic format gets the same answer and the same token counts.
"""

from __future__ import annotations

import hashlib
import random
from functools import lru_cache
from typing import Any, Iterable

_WORDS = (
    "the a routing provider answer model token latency cost stream request fallback budget cache "
    "quickly steady cheaper faster reliable simulated local remote prompt result window context "
    "limit retry server client notebook cell output value signal measure compare choose send "
    "receive balance traffic between several providers when one fails another takes over and "
    "every attempt is counted so the ledger matches what was billed this keeps experiments honest "
    "with clear numbers about time money errors throughput percentiles median tail spikes drift "
    "strategy priority weight random least busy lowest round robin health cooldown backoff jitter "
    "seed sample batch queue worker thread loop event socket loopback port path header body usage"
).split()


def content_text(content: Any) -> str:
    """Text of a message content: a string, or the text parts of a list of content blocks."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return str(content)


def count_input_tokens(system: str, texts: Iterable[str]) -> int:
    """About one token per 4 characters (at least 1), plus 3 per message; the system prompt counts as one."""
    texts = list(texts)
    chars = len(system) + sum(len(t) for t in texts)
    messages = len(texts) + (1 if system else 0)
    return max(1, -(-chars // 4)) + 3 * messages


def prompt_key(system: str, turns: Iterable[tuple[str, str]]) -> str:
    return system + "\x1e" + "\x1e".join(f"{role}\x1f{text}" for role, text in turns)


@lru_cache(maxsize=4096)
def answer_pieces(key: str, seed: int, max_tokens: int | None = None) -> tuple[tuple[str, ...], bool]:
    """The answer as tokens (word-ish pieces whose concatenation is the text) and whether max_tokens cut it.

    The full length is 16..64 tokens depending on the prompt hash; a cut answer is a prefix of the full one.
    """
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    h = int.from_bytes(digest, "big")
    length = 16 + h % 49
    rng = random.Random(h)
    pieces: list[str] = []
    while len(pieces) < length:
        sentence = rng.randint(5, 13)
        words = [rng.choice(_WORDS) for _ in range(min(sentence, length - len(pieces)))]
        words[0] = words[0].capitalize()
        words[-1] += "."
        for w in words:
            pieces.append(w if not pieces else " " + w)
    truncated = max_tokens is not None and max_tokens < length
    return (tuple(pieces[:max_tokens]) if truncated else tuple(pieces)), truncated
