"""Split a stream of LLM text deltas into speakable pieces as early as it is safe to.

The caller hears nothing until the first piece is synthesized, and Piper synthesizes a piece
whole before its first sample: so the first piece is short. It ends at the first sentence
end, or at a comma, colon or semicolon once it has two words, or, when neither comes within
`first_piece_max_words` words, at a word boundary chosen so it still sounds like a phrase
(never after "a", "the", "of", "is"...; before "that", "and", "is"... when it can; a few
words past the limit when no earlier word can end a phrase). Every word before the cut is an
LLM token the caller waits for (~15-25 ms each here) and audio Piper must make before the
first sample: 4 words instead of 6 is ~2 tokens and ~0.4 s of audio less. Later pieces are
whole sentences, synthesized while the first plays, which sound more natural.
Abbreviations and decimals ("Dr.", "3.5") do not end a sentence. Every word of the stream
is in exactly one piece.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"([.!?…]+[\"')\]]*)(\s+|$)")
_CLAUSE_END = re.compile(r"([,;:—])(\s+|$)")
_WORD = re.compile(r"\S+(?=\s)")  # a word known to be complete: whitespace follows it
LOOK_AHEAD = 2  # words past the limit a first piece may run to end on a word a phrase can end on
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "u.s", "no"}
_MARKDOWN = re.compile(r"[*_`#>]+|\[(.*?)\]\(.*?\)")
# Words a spoken phrase does not end on (articles, prepositions, conjunctions, auxiliaries,
# determiners): "Two plus two is a" sounds cut off, "Two plus two" does not.
_NO_END = {
    "a", "an", "the", "of", "to", "in", "on", "at", "for", "with", "by", "from", "as", "into", "about", "than",
    "during", "after", "before", "over", "under", "through", "between", "without", "within", "around", "near",
    "across", "against", "along", "among", "behind", "beyond", "onto", "upon", "toward", "towards", "via",
    "and", "or", "but", "nor", "so", "if", "because", "that", "which", "who", "whose", "when", "where", "while",
    "is", "are", "was", "were", "be", "been", "am", "can", "could", "will", "would", "should", "shall", "may",
    "might", "must", "do", "does", "did", "has", "have", "had", "not", "very", "my", "your", "his", "her", "its",
    "our", "their", "this", "these", "those", "some", "any", "each", "every", "no", "more", "most", "such",
    "i", "we", "you", "they", "he", "she", "it's", "i'm", "you're", "we're", "they're", "there's", "let's",
}
# Words a new phrase often starts with: a cut just before one sounds natural.
_STARTS = _NO_END | {"it", "there", "then", "also", "like", "including", "called", "known", "made"}


def clean_for_speech(text: str) -> str:
    """Strip markdown symbols that a voice should not read out."""
    text = _MARKDOWN.sub(lambda m: m.group(1) or "", text)
    return re.sub(r"\s+", " ", text).strip()


def _count_words(text: str) -> int:
    return sum(1 for w in text.split() if any(c.isalnum() for c in w))


_NUMBERS = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
            "twenty", "thirty", "forty", "fifty", "hundred", "thousand", "million", "billion"}


def _is_number(word: str) -> bool:
    return word in _NUMBERS or any(c.isdigit() for c in word)


def _bare(word: str) -> str:
    return re.sub(r"[^\w'.]", "", word.lower()).strip(".'")


class SentenceChunker:
    def __init__(self, first_clause_min_words: int = 2, min_chars: int = 1,
                 first_piece_max_words: int = 4, first_piece_min_words: int = 3) -> None:
        self.first_clause_min_words = first_clause_min_words
        self.first_piece_max_words = first_piece_max_words  # 0: the first piece waits for a clause
        self.first_piece_min_words = max(1, min(first_piece_min_words, first_piece_max_words or 1))
        self.min_chars = min_chars
        self.buffer = ""
        self.emitted = 0

    def push(self, delta: str) -> list[str]:
        """Add a delta; return the pieces now complete."""
        self.buffer += delta
        out: list[str] = []
        while True:
            piece = self._cut()
            if piece is None:
                return out
            out.append(piece)

    def flush(self) -> list[str]:
        """The rest, at the end of the stream (still cut as usual: the first piece stays short)."""
        out = self.push(" ")  # the stream has ended: its last word and full stop are complete
        rest, self.buffer = clean_for_speech(self.buffer), ""
        if len(rest) >= self.min_chars and any(c.isalnum() for c in rest):
            self.emitted += 1
            out.append(rest)
        return out

    def _cut(self) -> str | None:
        sentence: int | None = None  # where the first sentence ends; None: not yet known
        pending = False  # a full stop at the very end of the buffer: the next delta decides
        for match in _SENTENCE_END.finditer(self.buffer):
            if match.group(2) == "" and not self._ends_now(match.start(1), match.end(1)):
                pending = True  # the delta may continue this token ("3." -> "3.5")
                break
            if not self._is_abbreviation(self.buffer[: match.end(1)]):
                sentence = match.end()
                break
        if self.emitted == 0:
            # The first piece: whichever comes first of the sentence end, a clause end, a word cut.
            ends = [] if sentence is None else [sentence]
            for match in _CLAUSE_END.finditer(self.buffer):
                if match.group(2) == "" and not self._ends_now(match.start(1), match.end(1)):
                    break
                if len(self.buffer[: match.end(1)].split()) >= self.first_clause_min_words:
                    ends.append(match.end())
                    break
            word = self._word_cut()
            if ends and _count_words(self.buffer[:min(ends)]) <= self.first_piece_max_words + 1:
                word = None  # a sentence or clause one word over the limit sounds better whole than cut before its end
            if word is not None:
                ends.append(word)
            if ends and not (pending and min(ends) == sentence):
                return self._take(min(ends))
            return None
        return None if sentence is None else self._take(sentence)

    def _ends_now(self, start: int, end: int) -> bool:
        """Whether the first piece may end at the mark `buffer[start:end]`, the last thing in
        the buffer, without the next token: one plain mark after a letter, nothing left open
        (a quote, a bracket). Waiting for that token (a space, or the reply's end) costs the
        caller one LLM step (~15-25 ms here). "3." ("3.5"), "1," ("1,000") and "Dr." wait; a
        "?!" split after "?" leaves "!" to the next piece, which does not read it out."""
        if self.emitted or end - start != 1 or start == 0 or not self.buffer[start - 1].isalpha():
            return False
        head = self.buffer[:start]
        if 0 < self.first_piece_max_words < _count_words(head) - 1:
            return False  # too long to end there: the word cut decides, once the next word is known
        return head.count('"') % 2 == 0 and head.count("(") <= head.count(")") and head.count("[") <= head.count("]")

    def _word_cut(self) -> int | None:
        """Where to end a first piece that has run past `first_piece_max_words` words with no
        clause end: after the last word before a phrase starter, else after the last word a
        phrase can end on, else the same up to `LOOK_AHEAD` words past the limit, else after
        those. None while the words to judge are not all known.

        A cut is only ever after a complete word (whitespace follows it); the word after the
        cut may still be arriving: when its first token is a word like "is" or "and", it says
        the phrase goes on as well as the whole word would, and waiting for that word to
        complete cost the caller one LLM step. A longer word it may turn out to be ("island")
        changes only which of two good cuts is taken, never a word."""
        limit = self.first_piece_max_words
        if limit <= 0:
            return None
        words = [w.group() for w in _WORD.finditer(self.buffer) if any(c.isalnum() for c in w.group())]
        ends = [w.end() for w in _WORD.finditer(self.buffer) if any(c.isalnum() for c in w.group())]
        tail = self.buffer[ends[-1]:] if ends else self.buffer
        partial = tail.split()[-1] if tail.split() and not tail[-1].isspace() else None
        # Only a word no phrase ends on ("is", "the", "and"): the sentence goes on past it, so
        # a sentence of limit + 1 words that would stay whole is never cut before its last word.
        known = words + ([partial] if partial is not None and _bare(partial) in _NO_END else [])
        if len(known) <= limit:  # the word after the limit must be known (at least begun), to judge it
            return None

        def can_end(k: int) -> bool:
            word = _bare(words[k - 1])
            if word in _NO_END or self._is_abbreviation(words[k - 1]):
                return False
            # A number before its noun ("about seven | hours") is cut off; before "is", "and"... it is not.
            return not (_is_number(word) and k < len(known) and _bare(known[k]) not in _STARTS)

        def best(ks: range) -> int | None:
            """A cut before a word that starts a phrase, else after any word that can end one."""
            usable = [k for k in ks if k <= len(words)]  # only after a complete word
            k = next((k for k in usable if can_end(k) and k < len(known) and _bare(known[k]) in _STARTS), None)
            k = k if k is not None else next((k for k in usable if can_end(k)), None)
            return None if k is None else ends[k - 1]

        if (cut := best(range(limit, self.first_piece_min_words - 1, -1))) is not None:
            return cut
        # "We're currently in the..." has no phrase end within the limit: a word or two more
        # ("...in the 12th week") sounds better than a cut after "the".
        ahead = range(limit + 1, limit + LOOK_AHEAD + 1)
        if len(known) <= ahead[-1] or len(words) < ahead[-1]:
            return None  # the words past the limit (and the one after them) are not all known yet
        cut = best(ahead)
        return cut if cut is not None else ends[ahead[-1] - 1]

    def _take(self, end: int) -> str | None:
        piece, self.buffer = clean_for_speech(self.buffer[:end]), self.buffer[end:]
        if len(piece) < self.min_chars or not any(c.isalnum() for c in piece):
            return self._cut() if self.buffer else None
        self.emitted += 1
        return piece

    @staticmethod
    def _is_abbreviation(head: str) -> bool:
        words = head.rstrip(".").split()
        if not words:
            return False
        last = words[-1].lower().strip("\"'(")
        # Single letters are initials ("J. Smith"), except the pronoun "I".
        return last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha() and last != "i")
