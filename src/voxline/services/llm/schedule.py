"""Which LLM streams take the next step: earliest deadline first, batched (sans-I/O).

Several callers' replies are generated at once in one llama.cpp context, one sequence each
(the weights are shared; each stream has its own KV cache), a step at a time: one step is one
decode of a batch that holds the next token of some streams and a piece of the prompt of others.
This core decides which; it reads no clock (`now` is passed in) and does no I/O, so it is
tested with a virtual clock and fakes.

A stream's deadline is when its next words are needed. Its first clause is needed as soon
as it opens (its caller stopped speaking: waiting in silence), so its prompt and every word
until its first TTS piece is cut are due then (the pipeline's cut, `text.chunking`, which may
run a few words past `first_piece_words`; without one, its first `first_words` words). The
rest of a reply is needed only when the audio before it has played out: each word after the
first `first_words` adds `pace_s` (a conservative speaking
pace; Piper speaks ~2.7 words a second), so the word after 10 words of a reply opened at t is
due at t + 4 * pace_s. A step takes the streams that are due (their caller would hear
silence otherwise), the earliest first up to the batch's token budget; so every waiting
caller's first clause goes before the rest of anyone's reply. When no stream is due, every
stream steps (work ahead while the cores are free), except while some reply's first audio is
being synthesized (`hold`), or while another model runs work someone waits for (`background`
False: another caller's STT or first piece): then the cores go to that work.

Streams beyond the `slots` (sequences) the context has wait, and the earliest due is admitted
first when a slot frees.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from voxline.text.chunking import SentenceChunker

PACE_S = 0.3  # seconds of speech per word, on the fast side: a reply's words are never due late
FIRST_WORDS = 6  # the first clause: due at once (the first TTS piece is at most this many words)
HOLD_MAX_S = 1.0  # a hold is ignored after this long, whatever happens to its TTS
K = TypeVar("K", bound=Hashable)


@dataclass
class _Stream:
    opened: float  # when its caller began to wait: its first clause is due then
    admitted: bool = False
    prompt_left: int = 0  # prompt tokens still to evaluate
    words: int = 0  # words emitted so far
    in_word: bool = False  # its text so far ends inside a word (the next delta may continue it)
    chunker: SentenceChunker | None = None  # where its first TTS piece is cut (None: by `first_words`)
    cut: bool = False  # its first piece is out


@dataclass(frozen=True)
class Plan(Generic[K]):
    """One step: the streams whose next token is decoded, and prompt pieces (stream, tokens)."""

    decode: list[K] = field(default_factory=list)
    prefill: list[tuple[K, int]] = field(default_factory=list)
    urgent: bool = False  # its streams are due (their callers wait): other models' work ahead waits

    def __bool__(self) -> bool:
        return bool(self.decode or self.prefill)


class StepScheduler(Generic[K]):
    def __init__(self, slots: int, batch_tokens: int = 256, first_words: int = FIRST_WORDS,
                 pace_s: float = PACE_S, hold_max_s: float = HOLD_MAX_S, first_piece_words: int = 0) -> None:
        if slots < 1 or batch_tokens < 1:
            raise ValueError("slots and batch_tokens must be at least 1")
        self.slots, self.batch_tokens = slots, batch_tokens
        self.first_words, self.pace_s, self.hold_max_s = first_words, pace_s, hold_max_s
        self.first_piece_words = first_piece_words  # > 0: the TTS's first piece is cut as the pipeline cuts it
        self._streams: dict[K, _Stream] = {}
        self._holds: dict[Hashable, float] = {}  # holder -> since when

    # Events in.
    def add(self, key: K, opened: float) -> None:
        """A stream asks to be generated; its caller has waited since `opened`."""
        if key in self._streams:
            raise ValueError(f"stream {key!r} is open already")
        chunker = SentenceChunker(first_piece_max_words=self.first_piece_words) if self.first_piece_words else None
        self._streams[key] = _Stream(opened, chunker=chunker)

    def admit(self) -> list[K]:
        """Waiting streams that get a slot now, the earliest due first (then tell `prompt`)."""
        free = self.slots - sum(s.admitted for s in self._streams.values())
        waiting = sorted((s.opened, i, k) for i, (k, s) in enumerate(self._streams.items()) if not s.admitted)
        taken = [k for _, _, k in waiting[:max(0, free)]]
        for k in taken:
            self._streams[k].admitted = True
        return taken

    def can_admit(self) -> bool:
        """Whether `admit` would admit a stream now."""
        admitted = sum(s.admitted for s in self._streams.values())
        return admitted < min(self.slots, len(self._streams))

    def prompt(self, key: K, tokens: int) -> None:
        """`key`'s prompt has `tokens` left to evaluate (after what its slot had cached)."""
        self._streams[key].prompt_left = max(0, tokens)

    def prefilled(self, key: K, tokens: int) -> None:
        s = self._streams[key]
        s.prompt_left = max(0, s.prompt_left - tokens)

    def said(self, key: K, delta: str) -> None:
        """`key` emitted the text `delta`: its words (counted from the delta alone: a token
        that continues the last word adds none), and whether its first TTS piece is now cut."""
        s = self._streams[key]
        if not delta:
            return
        s.words += len(delta.split()) - (s.in_word and not delta[0].isspace())
        s.in_word = not delta[-1].isspace()
        if s.chunker is not None and not s.cut and s.chunker.push(delta):
            s.cut, s.chunker = True, None  # the chunker (and the text it holds) is dropped

    def remove(self, key: K) -> None:
        """The stream ended (done, cancelled, failed): its slot is free."""
        self._streams.pop(key, None)

    def hold(self, holder: Hashable, now: float) -> None:
        """A reply's first audio is being synthesized: work nobody waits for yet waits."""
        self._holds.setdefault(holder, now)

    def release(self, holder: Hashable) -> None:
        self._holds.pop(holder, None)

    # Decisions out.
    def due(self, key: K) -> float:
        s = self._streams[key]
        if s.chunker is not None:  # its caller waits for the first piece, however many words it takes
            return s.opened
        return s.opened + self.pace_s * max(0, s.words - self.first_words)

    def held(self, now: float) -> bool:
        return any(now - since < self.hold_max_s for since in self._holds.values())

    def plan(self, now: float, background: bool = True) -> Plan[K]:
        """The next step (empty: nothing may run now; see `wake_at`); `background` False: work
        nobody waits for yet waits too (another model is doing work that is due)."""
        active = sorted((self.due(k), i, k) for i, (k, s) in enumerate(self._streams.items()) if s.admitted)
        chosen = [k for d, _, k in active if d <= now]
        urgent = bool(chosen)
        if not chosen and background and not self.held(now):
            chosen = [k for _, _, k in active]
        plan, budget = Plan[K](urgent=urgent), self.batch_tokens
        for k in chosen:  # earliest due first, while the batch has room
            if budget <= 0:
                break
            left = self._streams[k].prompt_left
            if left:
                plan.prefill.append((k, min(left, budget)))
                budget -= min(left, budget)
            else:
                plan.decode.append(k)
                budget -= 1
        return plan

    def wake_at(self, now: float) -> float | None:
        """When an empty plan may change with no new event: the next due stream or a hold's end."""
        times = [self.due(k) for k, s in self._streams.items() if s.admitted]
        times += [since + self.hold_max_s for since in self._holds.values()]
        later = [t for t in times if t > now]
        return min(later) if later else None

    def __len__(self) -> int:
        return len(self._streams)
