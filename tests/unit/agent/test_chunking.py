"""LLM deltas -> speakable pieces: sentences, an early first clause, no false splits."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from voxline.text.chunking import SentenceChunker, clean_for_speech


def tokens(text: str) -> list[str]:
    """Split like an LLM tokenizer roughly does: words with their leading space, punctuation apart."""
    return re.findall(r" ?\w+|[^\w\s]| ", text)


def chunk(deltas: list[str], **kwargs: int) -> tuple[list[list[str]], list[str]]:
    """Per-delta pieces, and what flush returned at the end."""
    c = SentenceChunker(**kwargs)
    per_delta = [c.push(d) for d in deltas]
    return per_delta, c.flush()


def pieces(text: str, **kwargs: int) -> list[str]:
    per_delta, rest = chunk(tokens(text), **kwargs)
    return [p for ps in per_delta for p in ps] + rest


def test_two_sentences_streamed_token_by_token_give_two_pieces() -> None:
    deltas = tokens("Hello there. How are you?")
    per_delta, rest = chunk(deltas)
    assert [p for ps in per_delta for p in ps] == ["Hello there."]
    assert rest == ["How are you?"]
    # The first sentence is released with its full stop, before the next token.
    released_at = next(i for i, ps in enumerate(per_delta) if ps)
    assert "".join(deltas[: released_at + 1]) == "Hello there."


def test_the_first_piece_ends_at_its_mark_without_waiting_for_the_next_token() -> None:
    """One LLM step less before the first audio; marks that the next token may change wait."""
    for head, first in [("Bees make honey,", "Bees make honey,"), ("A week is seven days.", "A week is seven days."),
                        ("Is it?", "Is it?")]:
        c = SentenceChunker()
        assert c.push(head) == [first], head
    for head in ["It costs 3.", "About 1,", 'He said "stop.', "Call Dr.", "See (the docs."]:
        c = SentenceChunker()
        assert c.push(head) == [], head
    c = SentenceChunker()
    c.push("Hello there.")
    assert c.push(" How are you?") == []  # later pieces: as before, the next token decides
    assert c.push(" Fine") == ["How are you?"]


def test_whole_text_in_one_delta() -> None:
    c = SentenceChunker()
    assert c.push("Hello there. How are you? Fine! ") == ["Hello there.", "How are you?", "Fine!"]
    assert c.flush() == []


def test_sentence_at_the_end_of_a_delta_waits_for_the_next_one() -> None:
    c = SentenceChunker()
    assert c.push("It costs 3.") == []
    assert c.push("5 dollars. ") == ["It costs 3.5 dollars."]


def test_abbreviations_and_decimals_do_not_split() -> None:
    assert pieces("Dr. Smith will see you at 3.5 past. Mr. Jones, e.g. the other one, is out.",
                  first_piece_max_words=0) == [
        "Dr. Smith will see you at 3.5 past.",
        "Mr. Jones, e.g. the other one, is out.",
    ]


def test_initials_do_not_split_but_the_pronoun_i_does() -> None:
    assert pieces("J. R. Tolkien wrote it. So did I. Then we left.") == [
        "J. R. Tolkien wrote it.", "So did I.", "Then we left."]


def test_first_clause_is_cut_at_the_first_comma_after_two_words() -> None:
    assert pieces("Well, I think that, in the end, it works out fine. Yes, it does, really.") == [
        "Well, I think that,",  # only the first piece may be a clause
        "in the end, it works out fine.",
        "Yes, it does, really.",
    ]


def test_short_first_clause_is_not_cut() -> None:
    assert pieces("Sure, go ahead.") == ["Sure, go ahead."]


def test_a_two_word_opening_clause_goes_first() -> None:
    # The first piece is what the caller waits for: a short one is synthesized at once.
    assert pieces("I'm sorry, I can't do that. Ask me again.") == ["I'm sorry,", "I can't do that.", "Ask me again."]
    assert pieces("When it rains, wear a coat.") == ["When it rains,", "wear a coat."]


def test_clause_at_colon_and_semicolon() -> None:
    assert pieces("Here is what you need: flour and sugar.")[0] == "Here is what you need:"
    assert pieces("That is a good question; let me think.")[0] == "That is a good question;"


def test_numbers_with_thousands_separators_are_not_clauses() -> None:
    assert pieces("There are about 1,000,000 people living there.", first_piece_max_words=0) == [
        "There are about 1,000,000 people living there."]


def test_markdown_is_stripped() -> None:
    assert pieces("**Bold** move. See [the docs](https://example.com/x) for `code`. # Done") == [
        "Bold move.", "See the docs for code.", "Done"]
    assert clean_for_speech("> quoted  _text_\n\n## Title") == "quoted text Title"


def test_question_and_exclamation_marks_with_closing_quotes() -> None:
    assert pieces('He said "stop!" Then he left. Really?! Yes.') == [
        'He said "stop!"', "Then he left.", "Really?!", "Yes."]


def test_flush_returns_the_rest_and_empties_the_buffer() -> None:
    c = SentenceChunker()
    assert c.push("An answer without a full stop") == []
    assert c.flush() == ["An answer without a full stop"]
    assert c.flush() == []


def test_punctuation_only_is_never_spoken() -> None:
    c = SentenceChunker()
    assert c.push("... ") == []
    assert c.push("!! Ok. ") == ["Ok."]
    assert c.push(" * ") == []
    assert c.flush() == []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["Hello", " there", ".", " ", "Dr.", " Smith", ",", " I", " think", " so", "3", "!",
                                 "?", " and", "\n", "**", " 2.5", " yes", ";"]), max_size=40),
       st.randoms(use_true_random=False))
def test_any_split_of_the_stream_says_the_same_words(parts: list[str], rnd) -> None:
    text = "".join(parts)
    # Re-split the same text at random places: pieces may differ in where they cut, but the
    # words spoken, in order, are those of the text (markdown aside), and none is lost.
    cuts = sorted(rnd.sample(range(len(text) + 1), min(len(text) + 1, rnd.randint(0, 10))))
    deltas = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    c = SentenceChunker()
    out = [p for d in deltas for p in c.push(d)] + c.flush()
    words = lambda s: re.findall(r"\w+", s)  # noqa: E731
    assert words(" ".join(out)) == words(clean_for_speech(text))
    assert all(p == p.strip() and p for p in out)


def test_a_one_character_reply_is_still_spoken() -> None:
    c = SentenceChunker()
    assert c.push("4") == []
    assert c.flush() == ["4"]


# -- the first piece is short, whatever the first sentence ------------------------------------

LONG = "Two plus two is a mathematical operation that represents the sum of two numbers. It equals four."


def test_a_long_first_sentence_is_cut_at_a_word_boundary_after_a_few_words() -> None:
    assert pieces(LONG) == ["Two plus two", "is a mathematical operation that represents the sum of two numbers.",
                            "It equals four."]
    assert pieces("The capital of France is a beautiful city called Paris.") == [
        "The capital of France", "is a beautiful city called Paris."]


def test_the_first_piece_is_released_as_soon_as_its_words_are_known() -> None:
    deltas = tokens(LONG)
    per_delta, _ = chunk(deltas)
    released_at = next(i for i, ps in enumerate(per_delta) if ps)
    # Four words and the first token of a fifth no phrase ends on: enough to choose the cut,
    # long before the full stop (the fifth's end is not waited for).
    assert "".join(deltas[: released_at + 1]) == "Two plus two is a"


def test_a_short_first_sentence_is_not_cut() -> None:
    assert pieces("A week has seven days. It is long.") == ["A week has seven days.", "It is long."]
    # One word over the limit arrives with its full stop: whole. Six words: cut, at a phrase boundary.
    assert pieces("The capital of France is Paris. It is big.") == ["The capital of France", "is Paris.", "It is big."]


def test_a_clause_one_word_over_the_limit_is_not_cut_before_its_comma() -> None:
    assert pieces("Here is what you need: flour and sugar.")[0] == "Here is what you need:"
    assert pieces("When it rains heavily outside, take an umbrella.")[0] == "When it rains heavily outside,"


def test_past_the_limit_when_no_word_within_it_can_end_a_phrase() -> None:
    # "We're currently in the" cannot end; "...the 12th week" can, and "of" starts the next phrase.
    assert pieces("We're currently in the 12th week of a 30-day cycle.")[0] == "We're currently in the 12th week"


def test_a_first_piece_never_ends_on_an_article_preposition_or_auxiliary() -> None:
    for text in ["I think that the answer to your question is probably yes.",
                 "Paris is the capital and the largest city of France.",
                 "You should see Dr. Smith about the pain in your knee.",
                 "The sky appears blue during the day because of the way light scatters."]:
        first = pieces(text)[0]
        last = first.split()[-1].lower().strip(".")
        assert 3 <= len(first.split()) <= 6, first
        assert last not in {"a", "the", "of", "to", "is", "and", "that", "your", "dr", "during"}, first


def test_only_the_first_piece_is_cut_at_words() -> None:
    out = pieces("Yes. " + LONG)
    assert out == ["Yes.", LONG.split(". ")[0] + ".", "It equals four."]


def test_a_run_of_words_no_phrase_can_end_on_is_still_cut_at_the_limit() -> None:
    first = pieces("and the of a to in on at for with by and the of.")[0]
    assert first == "and the of a to in"


def test_the_word_limit_is_a_knob_and_zero_turns_it_off() -> None:
    assert pieces(LONG, first_piece_max_words=0)[0] == LONG.split(". ")[0] + "."
    assert len(pieces(LONG, first_piece_max_words=10)[0].split()) > 3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([" the", " cat", " sat", " on", " a", " mat", " and", " is", " very", " happy",
                                 ",", ".", " Dr.", " 3.5", " 1,000", " **big**", " that", " it"]), max_size=60),
       st.randoms(use_true_random=False))
def test_word_cuts_lose_and_double_no_word(parts: list[str], rnd) -> None:
    text = "".join(parts)
    cuts = sorted(rnd.sample(range(len(text) + 1), min(len(text) + 1, rnd.randint(0, 15))))
    deltas = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    c = SentenceChunker()
    out = [p for d in deltas for p in c.push(d)] + c.flush()

    def words(s: str) -> list[str]:
        return re.findall(r"\w+", s)

    assert words(" ".join(out)) == words(clean_for_speech(text))
    if out:
        assert len([w for w in out[0].split() if any(ch.isalnum() for ch in w)]) <= 6, out[0]  # limit + 2 at most


def test_a_first_piece_does_not_cut_a_number_from_its_noun() -> None:
    assert pieces("It takes about seven hours to fly from New York to London.")[0] == "It takes about seven hours"
    assert pieces("There are 12 months in every year of the calendar.")[0] == "There are 12 months"
    assert pieces(LONG)[0] == "Two plus two"  # a number before "is" still ends a phrase


def test_a_word_cut_before_is_or_and_does_not_wait_for_that_word_to_end() -> None:
    """The first token of "is" says the phrase goes on: the cut after "Italy" is made then,
    one LLM step before " Rome" would show that "is" was complete."""
    c = SentenceChunker()
    out = [p for d in tokens("The capital of Italy is") for p in c.push(d)]
    assert out == ["The capital of Italy"]
    assert c.push(" Rome.") == [] and c.flush() == ["is Rome."]
    # A word a phrase may end on ("it", "need") is waited for: the sentence may end with it.
    c = SentenceChunker()
    assert [p for d in tokens("Here is what you need") for p in c.push(d)] == []
