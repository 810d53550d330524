"""Node classes shared by the SDK tests."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from exospherehost import BaseNode, PruneSignal, ReQueueAfterSignal


class Greet(BaseNode):
    class Inputs(BaseModel):
        name: str

    class Outputs(BaseModel):
        message: str

    inputs: Inputs

    async def execute(self) -> Outputs:
        return self.Outputs(message=f"hello {self.inputs.name}")


class FanOut(BaseNode):
    class Inputs(BaseModel):
        count: str

    class Outputs(BaseModel):
        index: str

    inputs: Inputs

    async def execute(self) -> list[Outputs]:
        return [self.Outputs(index=str(i)) for i in range(int(self.inputs.count))]


class Nothing(BaseNode):
    async def execute(self) -> None:
        return None


class Fails(BaseNode):
    class Inputs(BaseModel):
        message: str

    inputs: Inputs

    async def execute(self) -> None:
        raise ValueError(self.inputs.message)


class FailsSilently(BaseNode):
    async def execute(self) -> None:
        raise RuntimeError()


class UsesSecret(BaseNode):
    class Outputs(BaseModel):
        token: str

    class Secrets(BaseModel):
        api_token: str

    secrets: Secrets

    async def execute(self) -> Outputs:
        return self.Outputs(token=self.secrets.api_token)


class Prunes(BaseNode):
    async def execute(self) -> None:
        raise PruneSignal({"reason": "nothing to do"})


class Requeues(BaseNode):
    async def execute(self) -> None:
        raise ReQueueAfterSignal(timedelta(seconds=1.5))


class ReturnsJunk(BaseNode):
    async def execute(self) -> str:  # type: ignore[override]
        return "not a model"
