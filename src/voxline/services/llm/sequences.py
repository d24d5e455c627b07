"""One llama.cpp context holding several sequences (one per reply being generated), over the
weights of an already loaded `Llama`, decoded together a batch at a time.

llama-cpp-python's `Llama` runs one sequence; its low-level API (0.3.x) has what several
need: a context with `n_seq_max` sequences in one unified KV cache, `llama_batch` entries
tagged with a sequence id, `llama_memory_seq_cp` (a prefix cached for one sequence is shared
with another: the system prompt is evaluated once) and a sampler chain per sequence.

Each slot remembers the tokens its sequence holds, so a new prompt starts from the longest
prefix cached in any slot (the same system prompt; the same caller's earlier turns).
"""

from __future__ import annotations

import ctypes
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Entry:
    """Tokens of one sequence for one decode: `tokens` at positions `pos`.. in `slot`."""

    slot: int
    tokens: Sequence[int]
    pos: int
    logits: bool  # the last token's logits are wanted (its next token is sampled)


class Sequences:
    """A context of `slots` sequences of up to `n_ctx` tokens each, sharing `llama`'s weights
    and a KV cache of `cells` tokens (default: room for every sequence's whole context)."""

    def __init__(self, llama: Any, slots: int, n_ctx: int, threads: int, n_batch: int = 256,
                 cells: int | None = None) -> None:
        import llama_cpp

        _internals: Any = importlib.import_module("llama_cpp._internals")  # untyped
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = cells or n_ctx * slots  # the KV cache's tokens, shared by every sequence
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = slots
        params.kv_unified = True  # sequences may share cells: a prefix is copied, not evaluated again
        params.n_threads = params.n_threads_batch = threads
        self._llama_cpp = llama_cpp
        self.model = llama._model
        self.ctx = _internals.LlamaContext(model=self.model, params=params, verbose=False)
        self.batch = _internals.LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=1, verbose=False)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model.model)
        self.slots, self.n_ctx, self.n_batch = slots, n_ctx, n_batch
        self.cached: list[list[int]] = [[] for _ in range(slots)]  # the tokens each sequence holds
        self._piece = ctypes.create_string_buffer(64)

    def set_threads(self, n: int, n_batch: int | None = None) -> None:
        """`n` threads for a decode of one token, `n_batch` (default `n`) for more (a prompt, several replies)."""
        self._llama_cpp.llama_set_n_threads(self.ctx.ctx, n, n if n_batch is None else n_batch)

    def threads(self) -> tuple[int, int]:
        """What llama.cpp runs on now: (one token, a batch of more)."""
        ctx = self.ctx.ctx
        return int(self._llama_cpp.llama_n_threads(ctx)), int(self._llama_cpp.llama_n_threads_batch(ctx))

    def place(self, tokens: list[int], free: Sequence[int]) -> tuple[int, int]:
        """A free slot for a prompt of `tokens` and how many of them it holds already (at least
        one is left to evaluate: its logits give the first token)."""
        def common(slot: int) -> int:
            n, cached = 0, self.cached[slot]
            for a, b in zip(cached, tokens):
                if a != b:
                    break
                n += 1
            return min(n, len(tokens) - 1)

        slot = max(free, key=common)
        source = max(range(self.slots), key=common)
        memory = self.ctx.memory
        if common(source) > common(slot):  # another sequence holds a longer prefix: share its cells
            n = common(source)
            self._llama_cpp.llama_memory_seq_rm(memory, slot, 0, -1)
            self._llama_cpp.llama_memory_seq_cp(memory, source, slot, 0, n)
        else:
            n = common(slot)
            self._llama_cpp.llama_memory_seq_rm(memory, slot, n, -1)
        self.cached[slot] = list(tokens[:n])
        return slot, n

    def decode(self, entries: list[Entry], spare: Sequence[int] = ()) -> list[int]:
        """Evaluate `entries` in one llama_decode; for each, the index of its logits (-1: none).

        When the KV cache is full (the cells are shared by every sequence), the caches of the
        `spare` slots (no reply in them: kept only for a prefix) are dropped and it tries again."""
        b = self.batch.batch
        b.n_tokens = 0
        where = []
        for e in entries:
            for i, tok in enumerate(e.tokens):
                n = b.n_tokens
                b.token[n], b.pos[n], b.n_seq_id[n] = tok, e.pos + i, 1
                b.seq_id[n][0] = e.slot
                b.logits[n] = e.logits and i == len(e.tokens) - 1
                b.n_tokens = n + 1
            where.append(b.n_tokens - 1 if e.logits else -1)
        rc = self._llama_cpp.llama_decode(self.ctx.ctx, b)
        if rc == 1 and any(self.cached[s] for s in spare):  # 1: no room, nothing written
            for s in spare:
                self.forget(s)
            rc = self._llama_cpp.llama_decode(self.ctx.ctx, b)
        if rc != 0:
            for e in entries:  # what this batch put in the cache is not to be trusted
                self.forget(e.slot)
            raise RuntimeError(f"llama_decode returned {rc} (1: the KV cache is full)")
        for e in entries:
            self.cached[e.slot].extend(e.tokens)
        return where

    def forget(self, slot: int) -> None:
        self._llama_cpp.llama_memory_seq_rm(self.ctx.memory, slot, 0, -1)
        self.cached[slot] = []

    def sampler(self, temperature: float, repeat_penalty: float, seed: int) -> Any:
        """llama-cpp-python's default chain for these settings (penalties over the last 64)."""
        s = importlib.import_module("llama_cpp._internals").LlamaSampler()
        s.add_penalties(n_vocab=self.model.n_vocab(), penalty_last_n=64, penalty_repeat=repeat_penalty,
                        penalty_freq=0.0, penalty_present=0.0)
        if temperature == 0:
            s.add_greedy()
        else:
            s.add_top_k(40)
            s.add_typical(1.0, 1)
            s.add_top_p(0.95, 1)
            s.add_min_p(0.05, 1)
            s.add_temp(temperature)
            s.add_dist(seed)
        return s

    def sample(self, sampler: Any, index: int) -> int:
        return int(sampler.sample(self.ctx, index))  # it also accepts the token (the penalties see it)

    def is_end(self, token: int) -> bool:
        return bool(self._llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def piece(self, token: int) -> bytes:
        n = self._llama_cpp.llama_token_to_piece(self.vocab, token, self._piece, len(self._piece), 0, False)
        return self._piece.raw[:max(0, n)]

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()
