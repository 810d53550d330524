"""Nodes used by the end-to-end tests (written the way a user writes them)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pydantic import BaseModel

from exospherehost import BaseNode, PruneSignal, ReQueueAfterSignal

ATTEMPTS: dict[str, int] = {}


class Upper(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        text: str

    async def execute(self) -> Outputs:
        return self.Outputs(text=self.inputs.text.upper())


class Concat(BaseNode):
    class Inputs(BaseModel):
        left: str
        right: str

    class Outputs(BaseModel):
        text: str

    async def execute(self) -> Outputs:
        return self.Outputs(text=f"{self.inputs.left}+{self.inputs.right}")


class Split(BaseNode):
    class Inputs(BaseModel):
        count: str

    class Outputs(BaseModel):
        item: str

    async def execute(self) -> list[Outputs]:
        return [self.Outputs(item=f"item-{i}") for i in range(int(self.inputs.count))]


class Boom(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        text: str

    async def execute(self) -> Outputs:
        raise ValueError(f"cannot handle {self.inputs.text}")


class Flaky(BaseNode):
    """Fails on the first attempt for a given input, succeeds afterwards."""

    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        text: str

    async def execute(self) -> Outputs:
        ATTEMPTS[self.inputs.text] = ATTEMPTS.get(self.inputs.text, 0) + 1
        if ATTEMPTS[self.inputs.text] == 1:
            raise RuntimeError("transient failure")
        return self.Outputs(text=f"ok after {ATTEMPTS[self.inputs.text]}")


class Sign(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        signed: str

    class Secrets(BaseModel):
        signing_key: str

    async def execute(self) -> Outputs:
        return self.Outputs(signed=f"{self.inputs.text}:{len(self.secrets.signing_key)}")


class Gate(BaseNode):
    """Prunes its branch when told to."""

    class Inputs(BaseModel):
        item: str

    class Outputs(BaseModel):
        item: str

    async def execute(self) -> Outputs:
        if self.inputs.item == "item-1":
            raise PruneSignal({"reason": "filtered"})
        return self.Outputs(item=self.inputs.item)


class Later(BaseNode):
    """Asks to run again later, once."""

    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        text: str

    async def execute(self) -> Outputs:
        key = f"later:{self.inputs.text}"
        ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
        if ATTEMPTS[key] == 1:
            raise ReQueueAfterSignal(timedelta(milliseconds=300))
        return self.Outputs(text="done")


SLOW_STARTS: list[str] = []  # inputs of every Slow run that has started


class Slow(BaseNode):
    class Inputs(BaseModel):
        seconds: str

    class Outputs(BaseModel):
        slept: str

    async def execute(self) -> Outputs:
        SLOW_STARTS.append(self.inputs.seconds)
        await asyncio.sleep(float(self.inputs.seconds))
        return self.Outputs(slept=self.inputs.seconds)
