"""Python SDK for Exosphere: write nodes, serve them with a `Runtime`, define and trigger graphs.

```python
from pydantic import BaseModel
from exospherehost import BaseNode, Runtime

class Greet(BaseNode):
    class Inputs(BaseModel):
        name: str

    class Outputs(BaseModel):
        message: str

    async def execute(self):
        return self.Outputs(message=f"hello {self.inputs.name}")

Runtime(namespace="demo", name="worker", nodes=[Greet]).start()
```

The runtime reads `EXOSPHERE_STATE_MANAGER_URI` and `EXOSPHERE_API_KEY` unless they are passed
in. `execute` may also be a plain `def` for blocking code: the runtime runs it in a worker thread.
The SDK logs to `logging.getLogger("exospherehost...")`; a runtime that starts serving in a
program that configured no logging prints its lines to stderr (level: `EXOSPHERE_LOG_LEVEL`).
"""

from ._version import __version__
from .errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ExosphereError,
    GraphValidationError,
    InvalidURLError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ServerError,
    ServerUnreachableError,
    StateManagerError,
    TransportError,
)
from .forks import ForkedFrom, ForkedRun, ForkFailedResult, ForkGraphVersion, SkippedFork
from .models import (
    ConcurrencyModel,
    CronTrigger,
    GraphNodeModel,
    RateLimitModel,
    RetryPolicyModel,
    RetryStrategyEnum,
    StoreConfigModel,
    UnitesModel,
    UnitesStrategyEnum,
)
from .node import BaseNode
from .run_diff import DiffChange, DiffSide, DiffSummary, FieldDiff, NodeDiff, RunDiff
from .runtime import Runtime
from .signals import PruneSignal, ReQueueAfterSignal
from .state_manager import StateManager, TriggerState
from .why import RunWhy, StateWhy, WaitingGroup

VERSION = __version__
"""Alias of `__version__`, as exported by the upstream SDK."""

__all__ = [
    "VERSION",
    "AuthenticationError",
    "BadRequestError",
    "BaseNode",
    "ConcurrencyModel",
    "ConflictError",
    "CronTrigger",
    "DiffChange",
    "DiffSide",
    "DiffSummary",
    "ExosphereError",
    "FieldDiff",
    "ForkFailedResult",
    "ForkGraphVersion",
    "ForkedFrom",
    "ForkedRun",
    "GraphNodeModel",
    "GraphValidationError",
    "InvalidURLError",
    "NodeDiff",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PruneSignal",
    "RateLimitModel",
    "ReQueueAfterSignal",
    "RetryPolicyModel",
    "RetryStrategyEnum",
    "RunDiff",
    "RunWhy",
    "Runtime",
    "ServerError",
    "ServerUnreachableError",
    "SkippedFork",
    "StateManager",
    "StateManagerError",
    "StateWhy",
    "StoreConfigModel",
    "TransportError",
    "TriggerState",
    "UnitesModel",
    "UnitesStrategyEnum",
    "WaitingGroup",
    "__version__",
]
