"""Split a stream of LLM text deltas into speakable pieces as early as it is safe to.

The first piece may be a clause (cut at a comma, colon or semicolon once it has two words)
so that TTS starts before the first sentence ends; later pieces are whole sentences, which
sound more natural. Abbreviations and decimals ("Dr.", "3.5") do not end a sentence.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"([.!?…]+[\"')\]]*)(\s+|$)")
_CLAUSE_END = re.compile(r"([,;:—])\s+")
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "u.s", "no"}
_MARKDOWN = re.compile(r"[*_`#>]+|\[(.*?)\]\(.*?\)")


def clean_for_speech(text: str) -> str:
    """Strip markdown symbols that a voice should not read out."""
    text = _MARKDOWN.sub(lambda m: m.group(1) or "", text)
    return re.sub(r"\s+", " ", text).strip()


class SentenceChunker:
    def __init__(self, first_clause_min_words: int = 2, min_chars: int = 1) -> None:
        self.first_clause_min_words = first_clause_min_words
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
        """The rest, at the end of the stream."""
        rest, self.buffer = clean_for_speech(self.buffer), ""
        if len(rest) >= self.min_chars and any(c.isalnum() for c in rest):
            self.emitted += 1
            return [rest]
        return []

    def _cut(self) -> str | None:
        for match in _SENTENCE_END.finditer(self.buffer):
            if match.group(2) == "":
                return None  # the delta may continue this token ("3." -> "3.5")
            head = self.buffer[: match.end(1)]
            if self._is_abbreviation(head):
                continue
            return self._take(match.end())
        if self.emitted == 0:
            for match in _CLAUSE_END.finditer(self.buffer):
                head = self.buffer[: match.end(1)]
                if len(head.split()) >= self.first_clause_min_words:
                    return self._take(match.end())
        return None

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
