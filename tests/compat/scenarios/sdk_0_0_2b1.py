"""Scenarios written against the official ``exospherehost==0.0.2b1`` (SEED era), unchanged.

Graph nodes are plain dicts, a run is started with ``StateManager.trigger(graph, state=TriggerState)``
or ``states=[TriggerState, ...]``, and the runtime reports to the plural ``/states/{id}/...`` paths.
Every scenario uses its own namespace and its own Runtime; all run concurrently in this process.
See _harness.py for the protocol with the test.
"""

import hashlib
import os

from pydantic import BaseModel

import _harness as h
from exospherehost import BaseNode, Runtime, StateManager, TriggerState

SECRET_VALUE = os.environ["COMPAT_SECRET_VALUE"]


# -- nodes -------------------------------------------------------------------------------------


class SeedUpper(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        upper: str

    async def execute(self):
        return self.Outputs(upper=self.inputs.text.upper())


class SeedJoin(BaseNode):
    class Inputs(BaseModel):
        left: str
        right: str

    class Outputs(BaseModel):
        joined: str

    async def execute(self):
        return self.Outputs(joined=f"{self.inputs.left}+{self.inputs.right}")


class SeedWrap(BaseNode):
    class Inputs(BaseModel):
        value: str
        prefix: str

    class Outputs(BaseModel):
        result: str

    async def execute(self):
        return self.Outputs(result=f"{self.inputs.prefix}[{self.inputs.value}]")


class SeedSplit(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        item: str

    async def execute(self):
        return [self.Outputs(item=f"{self.inputs.text}-{i}") for i in range(10)]


class SeedShout(BaseNode):
    class Inputs(BaseModel):
        item: str

    class Outputs(BaseModel):
        loud: str

    async def execute(self):
        return self.Outputs(loud=self.inputs.item.upper() + "!")


class SeedBoom(BaseNode):
    class Inputs(BaseModel):
        reason: str

    class Outputs(BaseModel):
        never: str

    async def execute(self):
        raise ValueError(f"boom: {self.inputs.reason}")


class SeedSecretUser(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        digest: str
        token_length: str

    class Secrets(BaseModel):
        api_token: str

    async def execute(self):
        token = self.secrets.api_token
        digest = hashlib.sha256(f"{token}:{self.inputs.text}".encode()).hexdigest()
        return self.Outputs(digest=digest, token_length=str(len(token)))


# -- helpers -----------------------------------------------------------------------------------


def node(name, ns, identifier, inputs, next_nodes=None):
    return {
        "node_name": name,
        "namespace": ns,
        "identifier": identifier,
        "inputs": inputs,
        "next_nodes": next_nodes,
    }


async def prepare(scenario, node_classes):
    ns = h.namespace(scenario)
    runtime = Runtime(namespace=ns, name=f"{scenario}-runtime", nodes=node_classes)
    await h.start_runtime(runtime, ns, node_classes)
    return ns, StateManager(namespace=ns)


def chain_nodes(ns):
    return [
        node("SeedUpper", ns, "a", {"text": "template"}, ["b"]),
        node(
            "SeedJoin",
            ns,
            "b",
            {"left": "${{ a.outputs.upper }}", "right": "lit-${{a.outputs.upper}}"},
            ["c"],
        ),
        node("SeedWrap", ns, "c", {"value": "${{ b.outputs.joined }}", "prefix": "${{ a.outputs.upper }}"}),
    ]


# -- scenarios ---------------------------------------------------------------------------------


async def chain():
    classes = [SeedUpper, SeedJoin, SeedWrap]
    ns, sm = await prepare("chain", classes)
    graph = await sm.upsert_graph("chain", chain_nodes(ns), secrets={})
    response = await sm.trigger("chain", state=TriggerState(identifier="a", inputs={"text": "hello"}))
    return {
        "namespace": ns,
        "graph": "chain",
        "schemas": [h.schema_of(cls) for cls in classes],
        "upsert": graph,
        "trigger": response,
        "run_ids": [response["run_id"]],
    }


async def multi_seed():
    classes = [SeedUpper, SeedJoin, SeedWrap]
    ns, sm = await prepare("multi-seed", classes)
    graph = await sm.upsert_graph("chain", chain_nodes(ns), secrets={})
    response = await sm.trigger(
        "chain",
        states=[
            TriggerState(identifier="a", inputs={"text": "x"}),
            TriggerState(identifier="a", inputs={"text": "y"}),
        ],
    )
    return {
        "namespace": ns,
        "graph": "chain",
        "upsert": graph,
        "trigger": response,
        "run_ids": [response["run_id"]],
    }


async def fanout():
    classes = [SeedSplit, SeedShout]
    ns, sm = await prepare("fanout", classes)
    nodes = [
        node("SeedSplit", ns, "split", {"text": "template"}, ["shout"]),
        node("SeedShout", ns, "shout", {"item": "${{ split.outputs.item }}"}),
    ]
    graph = await sm.upsert_graph("fanout", nodes, secrets={})
    response = await sm.trigger("fanout", state=TriggerState(identifier="split", inputs={"text": "fan"}))
    return {
        "namespace": ns,
        "graph": "fanout",
        "upsert": graph,
        "trigger": response,
        "run_ids": [response["run_id"]],
    }


async def failing():
    classes = [SeedUpper, SeedBoom]
    ns, sm = await prepare("failing", classes)
    nodes = [
        node("SeedUpper", ns, "start", {"text": "template"}, ["boom"]),
        node("SeedBoom", ns, "boom", {"reason": "${{ start.outputs.upper }}"}),
    ]
    graph = await sm.upsert_graph("failing", nodes, secrets={})
    response = await sm.trigger("failing", state=TriggerState(identifier="start", inputs={"text": "kaboom"}))
    return {
        "namespace": ns,
        "graph": "failing",
        "upsert": graph,
        "trigger": response,
        "run_ids": [response["run_id"]],
    }


async def secrets():
    classes = [SeedSecretUser]
    ns, sm = await prepare("secrets", classes)
    nodes = [node("SeedSecretUser", ns, "use", {"text": "template"})]
    graph = await sm.upsert_graph("secrets", nodes, secrets={"api_token": SECRET_VALUE})
    response = await sm.trigger("secrets", state=TriggerState(identifier="use", inputs={"text": "payload"}))
    return {
        "namespace": ns,
        "graph": "secrets",
        "schemas": [h.schema_of(cls) for cls in classes],
        "upsert": graph,
        "trigger": response,
        "run_ids": [response["run_id"]],
    }


if __name__ == "__main__":
    h.run(
        {
            "chain": chain,
            "multi_seed": multi_seed,
            "fanout": fanout,
            "failing": failing,
            "secrets": secrets,
        }
    )
