"""The models one agent process uses, loaded once and shared by every session."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from voxline.agent.prompt import prompt_prefix
from voxline.agent.tools.registry import ToolRegistry
from voxline.config import Settings
from voxline.services import model_files
from voxline.services.base import LLM, STT, TTS
from voxline.services.factory import build_llm, build_stt, build_tts
from voxline.services.threads import ModelThread
from voxline.services.turn_model import SmartTurn
from voxline.services.vad import SileroModel, VadBatcher

log = logging.getLogger(__name__)


@dataclass
class Models:
    stt: STT
    llm: LLM
    tts: TTS
    vad: SileroModel
    vad_thread: ModelThread
    vad_in_thread: bool = False
    vad_batch_ms: float = 10.0
    first_piece_words: int = 4  # a reply's first TTS piece ends within this many words (0: at a clause)
    turn_model: SmartTurn | None = None  # the end-of-turn model; None: silence and words decide
    tools: ToolRegistry | None = None  # offered to the LLM where its back-end supports them
    vad_batch: VadBatcher = field(init=False)

    def __post_init__(self) -> None:
        self.vad_batch = VadBatcher(self.vad, self.vad_thread if self.vad_in_thread else None, self.vad_batch_ms)

    @classmethod
    def load(cls, settings: Settings) -> Models:
        """Load every back-end (blocking: call before serving, or in a thread); a bad model file fails first."""
        model_files.check(settings)
        turn_model = SmartTurn() if settings.end_of_turn_model else None
        if turn_model is not None and not turn_model.available:
            turn_model.close()
            turn_model = None  # SmartTurn logged why, once for the process
        vad_thread = ModelThread("vad", shares_cores=False)
        return cls(build_stt(settings), build_llm(settings), build_tts(settings), SileroModel(), vad_thread,
                   vad_in_thread=settings.vad_in_thread, vad_batch_ms=settings.vad_batch_ms,
                   first_piece_words=settings.tts_first_piece_words, turn_model=turn_model)

    async def load_tools(self, settings: Settings) -> None:
        """Connect the configured tools, if this LLM back-end is to be offered them (`llm_tools`)."""
        if settings.llm_tools == "off":
            return
        from voxline.agent.tools.loader import load_tools
        from voxline.services.base import ToolLLM

        supported = isinstance(self.llm, ToolLLM) and self.llm.supports_tools
        if not supported:
            if settings.llm_tools == "on":
                raise ValueError(f"llm_tools=on, but {self.llm.name} has no tool calls in its chat format")
            log.info("tools are off: %s has no tool calls in its chat format", self.llm.name)
            return
        self.tools = await load_tools(settings)

    async def warm(self, system_prompt: str = "", examples: str = "") -> None:
        """Run each model once so the first caller does not pay for lazy initialisation."""
        started = time.perf_counter()
        for name, model in (("stt", self.stt), ("llm", self.llm), ("tts", self.tts)):
            warm = getattr(model, "warm", None)
            if warm is None:
                continue
            try:
                await (warm(prompt_prefix(system_prompt, examples) if system_prompt else []) if name == "llm"
                       else warm())
            except Exception as exc:  # noqa: BLE001 - a remote service may not be up yet
                log.warning("warm-up of %s failed: %s", name, exc)
        log.info("models warm", extra={"warm_ms": round((time.perf_counter() - started) * 1000)})

    async def close(self) -> None:
        await asyncio.gather(self.stt.close(), self.llm.close(), self.tts.close(), return_exceptions=True)
        if self.tools is not None:
            await self.tools.close()
        await self.vad_thread.aclose()
        if self.turn_model is not None:
            self.turn_model.close()
