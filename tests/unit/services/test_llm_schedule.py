"""The LLM step scheduler (sans-I/O): first clauses first, by deadline, batched, on a virtual clock."""

from __future__ import annotations

import re

import pytest

from voxline.services.llm.schedule import StepScheduler
from voxline.text.chunking import SentenceChunker


def run_steps(s: StepScheduler, opens: dict[str, float], words: dict[str, int], until: float,
              step_s: float = 0.0625, prompt: int = 3) -> list[tuple[float, str]]:
    """A fake model on a virtual clock: each step takes `step_s`; a decoded token is one word.
    Streams open at `opens` times and end after `words` words; (step's time, stream) per word."""
    now, out, left, opened = 0.0, [], dict(words), set()
    while now < until:
        for k, t in opens.items():
            if k not in opened and t <= now:
                s.add(k, t)
                opened.add(k)
        for k in s.admit():
            s.prompt(k, prompt)
        plan = s.plan(now)
        for k, n in plan.prefill:
            s.prefilled(k, n)
        for k in plan.decode:
            out.append((now, k))
            s.said(k, " word")
            left[k] -= 1
            if not left[k]:
                s.remove(k)
        now += step_s
    return out


def test_every_waiting_callers_first_clause_goes_before_the_rest_of_anyones_reply() -> None:
    s = StepScheduler(slots=4, first_words=6, pace_s=0.3)
    # A's reply is well under way when B and C start waiting at 1.0.
    out = run_steps(s, {"A": 0.0, "B": 1.0, "C": 1.0}, {"A": 40, "B": 20, "C": 20}, until=6.0)
    firsts_done = max([t for t, x in out if x == k][5] for k in "BC")  # their 6th words
    a_due = 0.3 * (sum(1 for t, k in out if k == "A" and t < 1.0) - 6)  # when A's next word is due
    assert firsts_done < a_due, "in this test A is not late yet when B and C have their first clauses"
    a_during = [t for t, k in out if k == "A" and 1.0 <= t <= firsts_done]
    assert not a_during, f"A stepped at {a_during} while B and C waited for their first clause"
    assert [t for t, k in out if k == "A" and t > firsts_done], "A's reply goes on afterwards"


def test_a_reply_that_would_run_out_of_audio_steps_with_the_first_clauses() -> None:
    s = StepScheduler(slots=4, first_words=2, pace_s=0.1)
    s.add("A", 0.0)
    s.add("B", 5.0)
    for k in s.admit():
        s.prompt(k, 0)
    s.said("A", " word" * 12)  # due at 0 + 0.1 * 10 = 1.0: late at 5
    assert s.plan(5.0).decode == ["A", "B"]  # earliest deadline first
    s.said("A", " word" * 100)  # due at 11: not yet
    assert s.plan(5.0).decode == ["B"]


def test_when_nobody_waits_every_stream_steps_unless_a_first_audio_is_being_synthesized() -> None:
    s = StepScheduler(slots=4, first_words=0, pace_s=1.0, hold_max_s=1.0)
    s.add("A", 0.0)
    s.add("B", 0.0)
    for k in s.admit():
        s.prompt(k, 0)
    s.said("A", " word" * 5)
    s.said("B", " word" * 3)
    assert s.plan(1.0).decode == ["A", "B"] or s.plan(1.0).decode == ["B", "A"]  # work ahead
    s.hold("tts-of-C", 1.0)
    assert not s.plan(1.0)  # the cores go to C's first audio
    assert s.wake_at(1.0) == 2.0  # the hold's end (B is due at 3, A at 5)
    assert s.plan(2.0).decode  # a hold is ignored after hold_max_s
    s.release("tts-of-C")
    assert s.plan(1.5).decode


def test_streams_wait_for_a_free_slot_and_the_earliest_due_is_admitted_first() -> None:
    s = StepScheduler(slots=2)
    for k, t in (("late", 3.0), ("first", 1.0), ("second", 2.0)):
        s.add(k, t)
    assert s.admit() == ["first", "second"] and not s.can_admit()
    for k in ("first", "second"):
        s.prompt(k, 0)
    assert "late" not in s.plan(10.0).decode
    s.remove("first")
    assert s.can_admit() and s.admit() == ["late"]


def test_a_step_holds_at_most_the_batch_budget_of_prompt_tokens_earliest_due_first() -> None:
    s = StepScheduler(slots=4, batch_tokens=10)
    s.add("B", 2.0)
    s.add("A", 1.0)
    s.admit()
    s.prompt("A", 8)
    s.prompt("B", 30)
    plan = s.plan(5.0)
    assert plan.prefill == [("A", 8), ("B", 2)] and not plan.decode
    s.prefilled("A", 8)
    s.prefilled("B", 2)
    assert s.plan(5.0).prefill == [("B", 9)] and s.plan(5.0).decode == ["A"]


def test_work_ahead_waits_while_another_model_runs_due_work_and_due_streams_do_not() -> None:
    s = StepScheduler(slots=4, first_words=6, pace_s=0.3)
    s.add("A", 0.0)
    for k in s.admit():
        s.prompt(k, 0)
    s.said("A", " word" * 10)  # A is 4 words ahead of its first clause: due at 1.2
    assert s.plan(0.5).decode == ["A"] and not s.plan(0.5).urgent  # the cores are free: work ahead
    assert not s.plan(0.5, background=False)  # another caller's STT or first piece has them
    s.add("B", 0.5)  # B starts waiting: its first clause is due at once
    for k in s.admit():
        s.prompt(k, 0)
    plan = s.plan(0.5, background=False)
    assert plan.decode == ["B"] and plan.urgent
    assert s.plan(1.3, background=False).decode == ["B", "A"]  # A due now too: never held back


REPLIES = ["We're currently in the 12th week of the year.", "The answer is 7 days.",
           "A: A helpful voice assistant that helps users find the most", "The capital of Italy is Rome.",
           "Two plus two is a mathematical operation that represents addition.",
           "It is about seven hours and thirty minutes.", "I think that the best way to boil an egg is in water.",
           "Well, I would say it is the one in the middle of the set.", "You should wear a raincoat and boots."]


def tokens(text: str) -> list[str]:
    """LLM-like pieces: words with their leading space, digits and marks alone."""
    return re.findall(r" ?[A-Za-z'\-]+| ?\d|[^\sA-Za-z\d]| ", text)


@pytest.mark.parametrize("reply", REPLIES)
def test_a_reply_stays_due_until_its_first_tts_piece_is_cut_while_another_is_synthesized(reply: str) -> None:
    """The first clause is due through every word the pipeline's chunker takes before its first
    piece (a piece that runs past its limit, "It is about seven hours"), not just the limit: else
    its last words waited, not due, while another caller's first piece held the LLM. Once the
    piece is cut, the rest of the reply waits for it as before."""
    s = StepScheduler(slots=4, first_words=4, pace_s=0.3, first_piece_words=4)
    s.add("A", 0.0)
    s.admit()
    s.prompt("A", 0)
    s.hold("tts-of-B", 0.0)  # another caller's first piece is being synthesized all along
    chunker, now = SentenceChunker(first_piece_max_words=4), 0.05  # before A's later words are due
    for token in tokens(reply):
        assert s.plan(now).decode == ["A"], f"A waits with no first piece yet ({reply!r})"
        s.said("A", token)
        if chunker.push(token):
            break
    else:
        raise AssertionError(f"no first piece in {reply!r}")
    assert not s.plan(now), "the rest of A's reply waits for B's first audio"


@pytest.mark.parametrize("reply", REPLIES)
def test_words_are_counted_from_each_delta_as_whole_words_however_the_tokens_split_them(reply: str) -> None:
    """A token that continues a word ("is" + "land", "7" + "0") adds no word; a reply's words are
    those of its whole text, counted without re-reading it on each token."""
    for split in (tokens(reply), list(reply), [reply]):
        s = StepScheduler(slots=1, first_words=0, pace_s=1.0)
        s.add("A", 0.0)
        s.admit()
        for token in split:
            s.said("A", token)
        assert s.due("A") == len(reply.split()), split
