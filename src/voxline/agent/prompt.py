"""The fixed start of every reply's prompt: the system prompt, then the example exchanges.

Every session's prompt begins with the same messages, and llama.cpp keeps the tokens of the
last prompt it evaluated and reuses their longest common prefix (`Llama.generate`'s prefix
match), so the examples are evaluated once, at warm-up, and cost no time on later turns.
A small model copies the examples' form (one sentence, numbers as digits, names repeated
back) far more readily than it follows instructions.
"""

from __future__ import annotations

from voxline.services.base import ChatMessage

PAIRS = " | "  # separates one example exchange from the next
ARROW = " -> "  # separates what the user says from what the assistant answers


def parse_examples(text: str) -> list[ChatMessage]:
    """`"question -> answer | question -> answer"` as user/assistant messages; ValueError if malformed."""
    messages: list[ChatMessage] = []
    for pair in filter(None, (p.strip() for p in text.split(PAIRS.strip()))):
        user, sep, assistant = pair.partition(ARROW.strip())
        if not sep or not user.strip() or not assistant.strip():
            raise ValueError(f"prompt example {pair!r} is not 'what the user says -> what the assistant answers'")
        messages += [{"role": "user", "content": user.strip()}, {"role": "assistant", "content": assistant.strip()}]
    return messages


def prompt_prefix(system_prompt: str, examples: str = "") -> list[ChatMessage]:
    """The messages every reply's prompt starts with."""
    return [{"role": "system", "content": system_prompt}, *parse_examples(examples)]
