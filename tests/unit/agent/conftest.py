"""Fixtures for the agent's tests: a virtual clock, a bus tap and a listening Call on fake models."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from agent_harness import Call
from fakes import BusTap, VirtualClock, fake_models


@pytest_asyncio.fixture
async def clock() -> VirtualClock:
    return VirtualClock()


@pytest_asyncio.fixture
async def tap() -> BusTap:
    return await BusTap().start()


@pytest_asyncio.fixture
async def call(clock: VirtualClock, tap: BusTap) -> AsyncIterator[Call]:
    c = Call(clock, fake_models(clock), tap)
    await c.listen()
    yield c
    await c.agent.close()
