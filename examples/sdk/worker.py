"""A worker process: serves one node until Ctrl-C or SIGTERM, and says what it does on stderr.

    EXOSPHERE_STATE_MANAGER_URI=http://127.0.0.1:8000 EXOSPHERE_API_KEY=<key> python examples/sdk/worker.py

An argument, if given, is the namespace to serve (default `demo`).
Nothing here configures logging: the runtime then prints its own lines to stderr (one when it is
connected, one per finished state), at INFO or at the level in `EXOSPHERE_LOG_LEVEL`.
"""

import sys

from pydantic import BaseModel

from exospherehost import BaseNode, Runtime


class CountWords(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        words: str

    def execute(self) -> Outputs:
        words = len(self.inputs.text.split())
        if words == 0:
            raise ValueError("there are no words to count")
        return self.Outputs(words=str(words))


if __name__ == "__main__":
    namespace = sys.argv[1] if len(sys.argv) > 1 else "demo"
    Runtime(namespace=namespace, name="word-counter", nodes=[CountWords]).start()
