"""The fixed prompt prefix: system prompt, then the example exchanges, then the history."""

from __future__ import annotations

import pytest

from voxline.agent.conversation import Conversation
from voxline.agent.prompt import parse_examples, prompt_prefix
from voxline.bench.answers_corpus import ITEMS, words
from voxline.config import ConfigError, Settings


def test_examples_become_user_and_assistant_messages_after_the_system_prompt() -> None:
    prefix = prompt_prefix("Be brief.", "What is one plus one? -> 2. | My cat is Tom. -> Nice, Tom.")
    assert [(m["role"], m["content"]) for m in prefix] == [
        ("system", "Be brief."), ("user", "What is one plus one?"), ("assistant", "2."),
        ("user", "My cat is Tom."), ("assistant", "Nice, Tom.")]
    assert parse_examples("") == []


def test_every_reply_prompt_starts_with_the_same_prefix_whatever_the_history() -> None:
    examples = parse_examples("Hello? -> Hi.")
    conv = Conversation("Be brief.", max_history_messages=2, examples=examples)
    conv.history = [(1, {"role": "user", "content": "a"}), (1, {"role": "assistant", "content": "b"})]
    assert conv.messages()[:3] == [{"role": "system", "content": "Be brief."}, *examples]
    assert conv.messages()[3:] == [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    conv._trim_history()  # the history bound never eats the examples
    assert conv.messages()[1:3] == examples


@pytest.mark.parametrize("bad", ["no arrow here", "-> only an answer", "only a question ->"])
def test_a_malformed_example_is_a_clear_settings_error(bad: str) -> None:
    with pytest.raises(ValueError, match="what the user says -> what the assistant answers"):
        parse_examples(bad)
    with pytest.raises(ConfigError, match="prompt[-_]examples"):
        Settings.from_env(env={}, prompt_examples=bad)


def test_the_default_examples_hold_no_question_of_the_answers_benchmark() -> None:
    asked = {" ".join(words(t.say)) for i in ITEMS for t in i.turns}
    examples = parse_examples(Settings().prompt_examples)
    assert not asked & {" ".join(words(m["content"])) for m in examples if m["role"] == "user"}
