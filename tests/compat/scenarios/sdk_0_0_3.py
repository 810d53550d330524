"""Scenarios written against the official ``exospherehost==0.0.3`` (HEAD era), unchanged.

Graph nodes are ``GraphNodeModel``s, runs start with ``trigger(graph, inputs=, store=, start_delay=)``,
and the runtime reports to the singular ``/state/{id}/...`` paths, including the prune and
re-enqueue-after signals. Every scenario uses its own namespace and its own Runtime; all run
concurrently in this process. See _harness.py for the protocol with the test.
"""

import asyncio
import hashlib
import os
import time
from datetime import timedelta

from pydantic import BaseModel

import _harness as h
from exospherehost import (
    BaseNode,
    GraphNodeModel,
    PruneSignal,
    ReQueueAfterSignal,
    RetryPolicyModel,
    RetryStrategyEnum,
    Runtime,
    StateManager,
    StoreConfigModel,
    UnitesModel,
)

SECRET_VALUE = os.environ["COMPAT_SECRET_VALUE"]
START_DELAY_MS = int(os.environ.get("COMPAT_START_DELAY_MS", "4000"))


# -- nodes -------------------------------------------------------------------------------------


class HeadUpper(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        upper: str

    async def execute(self):
        return self.Outputs(upper=self.inputs.text.upper())


class HeadJoin(BaseNode):
    class Inputs(BaseModel):
        left: str
        right: str

    class Outputs(BaseModel):
        joined: str

    async def execute(self):
        return self.Outputs(joined=f"{self.inputs.left}+{self.inputs.right}")


class HeadWrap(BaseNode):
    class Inputs(BaseModel):
        value: str
        prefix: str

    class Outputs(BaseModel):
        result: str

    async def execute(self):
        return self.Outputs(result=f"{self.inputs.prefix}[{self.inputs.value}]")


class HeadSplit(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        item: str

    async def execute(self):
        return [self.Outputs(item=f"{self.inputs.text}-{i}") for i in range(10)]


class HeadShout(BaseNode):
    class Inputs(BaseModel):
        item: str

    class Outputs(BaseModel):
        loud: str

    async def execute(self):
        return self.Outputs(loud=self.inputs.item.upper() + "!")


class HeadBoom(BaseNode):
    class Inputs(BaseModel):
        reason: str

    class Outputs(BaseModel):
        never: str

    async def execute(self):
        raise ValueError(f"boom: {self.inputs.reason}")


class HeadSecretUser(BaseNode):
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


class StoreEcho(BaseNode):
    class Inputs(BaseModel):
        text: str
        tag: str

    class Outputs(BaseModel):
        echo: str

    async def execute(self):
        return self.Outputs(echo=f"{self.inputs.text}/{self.inputs.tag}")


class StoreCombine(BaseNode):
    class Inputs(BaseModel):
        combined: str

    class Outputs(BaseModel):
        final: str

    async def execute(self):
        return self.Outputs(final=self.inputs.combined.upper())


class Flaky(BaseNode):
    """Fails on its first attempt for given inputs, succeeds from the second on."""

    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        attempt: str

    async def execute(self):
        attempt = h.bump_counter(f"flaky:{self.inputs.text}")
        if attempt == 1:
            raise RuntimeError(f"flaky attempt {attempt} for {self.inputs.text}")
        return self.Outputs(attempt=str(attempt))


class AfterFlaky(BaseNode):
    class Inputs(BaseModel):
        attempt: str

    class Outputs(BaseModel):
        seen: str

    async def execute(self):
        return self.Outputs(seen=f"after attempt {self.inputs.attempt}")


class UniteRoot(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        word: str

    async def execute(self):
        return self.Outputs(word=self.inputs.text.upper())


class UniteSplit(BaseNode):
    class Inputs(BaseModel):
        word: str

    class Outputs(BaseModel):
        part: str

    async def execute(self):
        return [self.Outputs(part=f"{self.inputs.word}-{i}") for i in range(3)]


class UniteProcess(BaseNode):
    class Inputs(BaseModel):
        part: str

    class Outputs(BaseModel):
        done: str

    async def execute(self):
        return self.Outputs(done=self.inputs.part + "!")


class UniteMerge(BaseNode):
    class Inputs(BaseModel):
        summary: str

    class Outputs(BaseModel):
        final: str

    async def execute(self):
        return self.Outputs(final=f"merged:{self.inputs.summary}")


class Pruner(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        never: str

    async def execute(self):
        raise PruneSignal({"reason": "x"})


class AfterPrune(BaseNode):
    class Inputs(BaseModel):
        never: str

    class Outputs(BaseModel):
        out: str

    async def execute(self):
        return self.Outputs(out=self.inputs.never)


class Sleepy(BaseNode):
    """Asks to be re-queued after 500 ms on its first call, succeeds on the next one."""

    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        calls: str

    async def execute(self):
        calls = h.bump_counter(f"sleepy:{self.inputs.text}")
        h.record_event("sleepy", text=self.inputs.text, call=calls)
        if calls == 1:
            raise ReQueueAfterSignal(timedelta(milliseconds=500))
        return self.Outputs(calls=str(calls))


class Delayed(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        ran_at: str

    async def execute(self):
        h.record_event("delayed", text=self.inputs.text)
        return self.Outputs(ran_at=str(time.time()))


class HeadSlow(BaseNode):
    """Sleeps (or, with seconds "release", waits until the test releases it); records when it
    starts and when it finishes (the official SDK cannot stop it)."""

    class Inputs(BaseModel):
        seconds: str
        tag: str

    class Outputs(BaseModel):
        tag: str

    async def execute(self):
        h.record_event(f"slow-started:{self.inputs.tag}")
        if self.inputs.seconds == "release":
            await h.released(self.inputs.tag)
        else:
            await asyncio.sleep(float(self.inputs.seconds))
        h.record_event(f"slow-finished:{self.inputs.tag}")
        return self.Outputs(tag=self.inputs.tag)


# -- helpers -----------------------------------------------------------------------------------


def node(name, ns, identifier, inputs, next_nodes=None, unites=None):
    return GraphNodeModel(
        node_name=name,
        namespace=ns,
        identifier=identifier,
        inputs=inputs,
        next_nodes=next_nodes,
        unites=unites,
    )


async def prepare(scenario, node_classes):
    ns = h.namespace(scenario)
    runtime = Runtime(namespace=ns, name=f"{scenario}-runtime", nodes=node_classes)
    await h.start_runtime(runtime, ns, node_classes)
    return ns, StateManager(namespace=ns)


def result(ns, graph_name, upsert, trigger, **extra):
    return {
        "namespace": ns,
        "graph": graph_name,
        "upsert": upsert,
        "trigger": trigger,
        "run_ids": [trigger["run_id"]],
        **extra,
    }


# -- scenarios ---------------------------------------------------------------------------------


async def chain():
    classes = [HeadUpper, HeadJoin, HeadWrap]
    ns, sm = await prepare("chain", classes)
    nodes = [
        node("HeadUpper", ns, "a", {"text": "template"}, ["b"]),
        node(
            "HeadJoin",
            ns,
            "b",
            {"left": "${{ a.outputs.upper }}", "right": "lit-${{a.outputs.upper}}"},
            ["c"],
        ),
        node("HeadWrap", ns, "c", {"value": "${{ b.outputs.joined }}", "prefix": "${{ a.outputs.upper }}"}),
    ]
    graph = await sm.upsert_graph("chain", nodes, secrets={})
    trigger = await sm.trigger("chain", inputs={"text": "hello"})
    return result(ns, "chain", graph, trigger, schemas=[h.schema_of(cls) for cls in classes])


async def fanout():
    ns, sm = await prepare("fanout", [HeadSplit, HeadShout])
    nodes = [
        node("HeadSplit", ns, "split", {"text": "template"}, ["shout"]),
        node("HeadShout", ns, "shout", {"item": "${{ split.outputs.item }}"}),
    ]
    graph = await sm.upsert_graph("fanout", nodes, secrets={})
    trigger = await sm.trigger("fanout", inputs={"text": "fan"})
    return result(ns, "fanout", graph, trigger)


async def failing():
    ns, sm = await prepare("failing", [HeadUpper, HeadBoom])
    nodes = [
        node("HeadUpper", ns, "start", {"text": "template"}, ["boom"]),
        node("HeadBoom", ns, "boom", {"reason": "${{ start.outputs.upper }}"}),
    ]
    policy = RetryPolicyModel(max_retries=1, strategy=RetryStrategyEnum.FIXED, backoff_factor=100)
    graph = await sm.upsert_graph("failing", nodes, secrets={}, retry_policy=policy)
    trigger = await sm.trigger("failing", inputs={"text": "kaboom"})
    return result(ns, "failing", graph, trigger, retry_policy=policy.model_dump(mode="json"))


async def secrets():
    classes = [HeadSecretUser]
    ns, sm = await prepare("secrets", classes)
    nodes = [node("HeadSecretUser", ns, "use", {"text": "template"})]
    graph = await sm.upsert_graph("secrets", nodes, secrets={"api_token": SECRET_VALUE})
    trigger = await sm.trigger("secrets", inputs={"text": "payload"})
    return result(ns, "secrets", graph, trigger, schemas=[h.schema_of(cls) for cls in classes])


async def store():
    ns, sm = await prepare("store", [StoreEcho, StoreCombine])
    nodes = [
        node("StoreEcho", ns, "root", {"text": "${{ store.k }}", "tag": "template-tag"}, ["combine"]),
        node(
            "StoreCombine",
            ns,
            "combine",
            {"combined": "${{ root.outputs.echo }}|${{ store.d }}|${{ store.k }}"},
        ),
    ]
    config = StoreConfigModel(required_keys=["k", "must"], default_values={"d": "dflt"})
    graph = await sm.upsert_graph("store", nodes, secrets={}, store_config=config)
    trigger = await sm.trigger("store", inputs={"tag": "given-tag"}, store={"k": "from-store", "must": "m"})
    try:
        await sm.trigger("store", inputs={"tag": "no-must"}, store={"k": "only-k"})
        missing_key_error = None
    except Exception as exc:  # the SDK raises "Failed to trigger state: <status> <body>"
        missing_key_error = str(exc)
    return result(
        ns,
        "store",
        graph,
        trigger,
        store_config=config.model_dump(mode="json"),
        missing_key_error=missing_key_error,
    )


async def retries():
    ns, sm = await prepare("retries", [Flaky, AfterFlaky])
    nodes = [
        node("Flaky", ns, "flaky", {"text": "template"}, ["after"]),
        node("AfterFlaky", ns, "after", {"attempt": "${{ flaky.outputs.attempt }}"}),
    ]
    policy = RetryPolicyModel(max_retries=2, strategy=RetryStrategyEnum.FIXED, backoff_factor=200)
    graph = await sm.upsert_graph("retries", nodes, secrets={}, retry_policy=policy)
    trigger = await sm.trigger("retries", inputs={"text": "flaky-input"})
    return result(ns, "retries", graph, trigger)


async def unites():
    ns, sm = await prepare("unites", [UniteRoot, UniteSplit, UniteProcess, UniteMerge])
    nodes = [
        node("UniteRoot", ns, "r", {"text": "template"}, ["s"]),
        node("UniteSplit", ns, "s", {"word": "${{ r.outputs.word }}"}, ["p"]),
        node("UniteProcess", ns, "p", {"part": "${{ s.outputs.part }}"}, ["m"]),
        node(
            "UniteMerge",
            ns,
            "m",
            {"summary": "joined ${{ r.outputs.word }}"},
            unites=UnitesModel(identifier="r"),
        ),
    ]
    graph = await sm.upsert_graph("unites", nodes, secrets={})
    trigger = await sm.trigger("unites", inputs={"text": "abc"})
    return result(ns, "unites", graph, trigger)


async def prune():
    ns, sm = await prepare("prune", [Pruner, AfterPrune])
    nodes = [
        node("Pruner", ns, "pruner", {"text": "template"}, ["after"]),
        node("AfterPrune", ns, "after", {"never": "${{ pruner.outputs.never }}"}),
    ]
    graph = await sm.upsert_graph("prune", nodes, secrets={})
    trigger = await sm.trigger("prune", inputs={"text": "cut"})
    return result(ns, "prune", graph, trigger)


async def requeue():
    ns, sm = await prepare("requeue", [Sleepy])
    nodes = [node("Sleepy", ns, "sleepy", {"text": "template"})]
    graph = await sm.upsert_graph("requeue", nodes, secrets={})
    trigger = await sm.trigger("requeue", inputs={"text": "snooze"})
    return result(ns, "requeue", graph, trigger)


async def cancel():
    """A run whose slow node the test cancels while it runs (through our REST API)."""
    ns, sm = await prepare("cancel", [HeadSlow, HeadUpper])
    nodes = [
        node("HeadSlow", ns, "slow", {"seconds": "release", "tag": "cancel"}, ["after"]),
        node("HeadUpper", ns, "after", {"text": "${{ slow.outputs.tag }}"}),
    ]
    graph = await sm.upsert_graph("cancel", nodes, secrets={})
    trigger = await sm.trigger("cancel", inputs={"tag": "cancel"})
    return result(ns, "cancel", graph, trigger)


async def timeout():
    """Only serves HeadSlow: the test upserts a graph with `timeout_seconds` (which this SDK's
    models do not know) through our REST API and triggers it."""
    ns, _ = await prepare("timeout", [HeadSlow, HeadUpper])
    return {"namespace": ns}


async def start_delay():
    ns, sm = await prepare("start-delay", [Delayed])
    nodes = [node("Delayed", ns, "delayed", {"text": "template"})]
    graph = await sm.upsert_graph("delayed", nodes, secrets={})
    before = time.time()
    trigger = await sm.trigger("delayed", inputs={"text": "later"}, start_delay=START_DELAY_MS)
    after = time.time()
    return result(
        ns,
        "delayed",
        graph,
        trigger,
        triggered_at=before,
        trigger_returned_at=after,
        start_delay_ms=START_DELAY_MS,
    )


if __name__ == "__main__":
    h.run(
        {
            "start_delay": start_delay,
            "chain": chain,
            "fanout": fanout,
            "failing": failing,
            "secrets": secrets,
            "store": store,
            "retries": retries,
            "unites": unites,
            "prune": prune,
            "requeue": requeue,
            "cancel": cancel,
            "timeout": timeout,
        }
    )
