"""Plumbing shared by the scenario scripts (stdlib only; runs under the official SDK's Python 3.12).

A scenario script defines nodes and graphs with the official SDK only. This module does what the SDK
has no API for: it reads the test's settings from the environment, waits until a runtime's nodes are
registered (so a graph upsert is not validated against nodes that are not there yet), runs the
scenarios concurrently, prints ONE JSON line (the manifest) on stdout, and keeps the runtimes
alive until the test closes our stdin (or COMPAT_MAX_SECONDS pass).

Protocol with the test (tests/compat/conftest.py):
  env  EXOSPHERE_STATE_MANAGER_URI, EXOSPHERE_API_KEY   read by the SDK itself
       COMPAT_NAMESPACE_PREFIX   prefix of every namespace this process uses
       COMPAT_WORKDIR            a private directory for counters and timestamps
       COMPAT_MAX_SECONDS        safety net: exit after this long even if stdin stays open
  out  one line {"manifest": {scenario_name: {"ok": true, ...} | {"ok": false, "error": ...}},
                 "sdk": {"version": exospherehost.VERSION, "file": exospherehost.__file__}}
  in   EOF on stdin -> stop the runtimes and exit 0
"""

import asyncio
import hashlib
import json
import logging
import os
import sys
import threading
import time
import traceback
import urllib.request
from pathlib import Path

import exospherehost

log = logging.getLogger("compat.scenario")

URI = os.environ["EXOSPHERE_STATE_MANAGER_URI"].rstrip("/")
# The harness's own reads (are the nodes registered?) use COMPAT_READ_KEY when the test gives the
# runtime a key that may not read (a worker key: issue 19).
API_KEY = os.environ.get("COMPAT_READ_KEY") or os.environ["EXOSPHERE_API_KEY"]
PREFIX = os.environ.get("COMPAT_NAMESPACE_PREFIX", "compat")
WORKDIR = Path(os.environ.get("COMPAT_WORKDIR", "."))
MAX_SECONDS = float(os.environ.get("COMPAT_MAX_SECONDS", "600"))

_runtime_tasks = []


def namespace(scenario):
    return f"{PREFIX}-{scenario}"


def schema_of(node_class):
    """What the runtime registers for a node, to compare with GET /nodes/."""
    return {
        "name": node_class.__name__,
        "inputs_schema": node_class.Inputs.model_json_schema(),
        "outputs_schema": node_class.Outputs.model_json_schema(),
        "secrets": list(node_class.Secrets.model_fields.keys()),
    }


def _key(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def bump_counter(name):
    """Increment and return a per-name counter kept in WORKDIR (one process, no locking needed)."""
    path = WORKDIR / f"counter-{_key(name)}"
    count = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(count))
    return count


def record_event(name, **fields):
    """Append a timestamped event for the test to read (WORKDIR/events.jsonl)."""
    fields.update(event=name, at=time.time())
    with (WORKDIR / "events.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(fields) + "\n")


async def released(tag, timeout=120.0):
    """Wait until the test creates WORKDIR/release-<tag> (see ScenarioProcess.release)."""
    deadline = time.monotonic() + timeout
    while not (WORKDIR / f"release-{_key(tag)}").exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def _registered_names(ns):
    request = urllib.request.Request(f"{URI}/v0/namespace/{ns}/nodes/", headers={"x-api-key": API_KEY})
    with urllib.request.urlopen(request, timeout=5) as response:
        body = json.loads(response.read().decode("utf-8"))
    return {node.get("name") for node in body.get("nodes", [])}


async def start_runtime(runtime, ns, node_classes, timeout=30.0):
    """Start an SDK Runtime as a task of this loop and wait until its nodes are registered."""
    task = runtime.start()  # inside a running loop the SDK returns a Task
    _runtime_tasks.append(task)
    wanted = {cls.__name__ for cls in node_classes}
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        if task.done():
            raise RuntimeError(f"runtime for {ns} stopped: {task.exception()!r}")
        try:
            if wanted <= await asyncio.to_thread(_registered_names, ns):
                return task
        except Exception as exc:  # not reachable yet: keep waiting
            last_error = exc
        await asyncio.sleep(0.2)
    raise TimeoutError(f"nodes {sorted(wanted)} not registered in {ns} after {timeout}s ({last_error!r})")


async def _guarded(name, setup):
    started = time.monotonic()
    try:
        result = await setup()
        result.setdefault("ok", True)
    except BaseException as exc:
        log.exception("scenario %s failed during setup", name)
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    result["setup_seconds"] = round(time.monotonic() - started, 3)
    return name, result


def _watch_stdin(loop, stop):
    try:
        sys.stdin.read()
    finally:
        loop.call_soon_threadsafe(stop.set)


async def _main(scenarios):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    threading.Thread(target=_watch_stdin, args=(loop, stop), daemon=True).start()
    loop.call_later(MAX_SECONDS, stop.set)

    results = await asyncio.gather(*(_guarded(name, setup) for name, setup in scenarios.items()))
    sdk = {"version": exospherehost.VERSION, "file": exospherehost.__file__}
    print(json.dumps({"manifest": dict(results), "sdk": sdk}), flush=True)

    await stop.wait()
    for task in _runtime_tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("a runtime had stopped early: %r", task.exception())
        task.cancel()
    await asyncio.gather(*_runtime_tasks, return_exceptions=True)


def run(scenarios):
    """Run ``{name: async setup() -> dict}`` concurrently, print the manifest, serve until EOF."""
    WORKDIR.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=os.environ.get("EXOSPHERE_LOG_LEVEL", "INFO"),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(_main(scenarios))
