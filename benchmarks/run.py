"""Benchmarks: `make bench` (= `python -m benchmarks.run`). Prints Markdown tables on stdout,
one progress line per workload on stderr, and writes every figure to a JSON file.

Workloads (see workloads.py for what is measured and how):
  A   one-node runs triggered at once (200; --quick 50)
  B   three-node chains triggered at once (100; --quick 20)
  B-limit, B-keyed   B with a concurrency limit that never binds on every node (in all; per run)
  C   one fan-out of 1000 outputs + a join (--quick 200); C-small: the same with 100 (--quick 20);
      C5k and C10k: 5,000 and 10,000 (only when asked for, with a --limit to match)
  D   a 20-step chain, 5 runs one after another: per-step latency (--quick 2 runs)
  E   an idle runtime for 10 s (--quick 3 s): requests/s it sends, CPU
Each runs with our SDK and with the official exospherehost 0.0.3 (poll interval 0, 16 workers,
batch 16, in its Python 3.12 venv), each runtime in its own process, on each store:
  default  `python -m state_manager --dev` with MONGO_URI unset: whatever the default store is
  nx       nx-27017 started here as an external database (MONGO_URI)
  mongo    --mongo-uri URI: a MongoDB you run (its CPU is not measured)
Every server, store and runtime is started fresh per workload on 127.0.0.1 and stopped after it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.official import official_sdk_python
from benchmarks.processes import REPO_ROOT, install_sigterm_handler, nx_store, state_manager
from benchmarks.workloads import Measured, run_idle, run_workload, summarise, workloads

ALL_WORKLOADS = ["A", "B", "B-limit", "B-keyed", "C", "C-small", "D", "E"]
LARGE_WORKLOADS = ["C5k", "C10k"]  # only when asked for
SDKS = ["ours", "official"]


def _progress(index: int, total: int, row: dict[str, Any], seconds: float) -> None:
    where = f"[{index}/{total}] {row['workload']:<7} {row['sdk']:<8} {row['store']:<7}"
    if row["workload"] == "E":
        text = f"{_f(row['requests_per_s'], 2)} requests/s, server CPU {_f(row['server_cpu_pct'], 2)}%"
    elif row.get("wall_s") is not None:
        text = (
            f"{row['executions']} executions in {row['wall_s']:.2f} s ({row['executions_per_s']:.0f}/s), "
            f"done p50 {_f(row['done_p50_ms'])} ms, db cmds/exec {_f(row['db_commands_per_exec'], 2)}, "
            f"runtime requests/exec {_f(row['runtime_requests_per_exec'], 2)}"
        )
    else:
        text = "no executions"
    if row.get("error"):
        text += f"  !! {row['error']}"
    print(f"{where} {text}  ({seconds:.0f} s)", file=sys.stderr, flush=True)


def _f(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def measure_one(name: str, sdk: str, store: str, options: argparse.Namespace) -> dict[str, Any]:
    plan = workloads(options.quick)
    with tempfile.TemporaryDirectory(prefix="exosphere-bench-") as folder, contextlib.ExitStack() as stack:
        workdir = Path(folder)
        uri: str | None = None
        db_pids: list[int] = []
        if store == "nx":
            nx = stack.enter_context(nx_store(workdir))
            uri, db_pids = nx.uri, [nx.pid]
        elif store == "mongo":
            uri = options.mongo_uri
        server = stack.enter_context(state_manager(workdir / "server", uri))
        if store == "default":
            db_pids = server.store_pids()  # an embedded store is a child process; none if in-process
        try:
            result: Measured
            if name == "E":
                result = asyncio.run(
                    run_idle(sdk, store, server, db_pids, workdir, 3 if options.quick else 10)
                )
            else:
                result = asyncio.run(
                    run_workload(plan[name], sdk, store, server, db_pids, workdir, options.limit)
                )
        except Exception as exc:  # one failed workload does not stop the others
            result = Measured(name, plan[name].title if name in plan else "idle", sdk, store, error=repr(exc))
            print(f"--- server log ---\n{server.log_tail(30)}", file=sys.stderr)
        if store == "mongo":
            result.db_in_process = True  # not ours to measure
        if result.error:  # keep the logs of a workload that went wrong
            kept = (
                REPO_ROOT
                / ".cache"
                / "bench"
                / "logs"
                / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-{sdk}-{store}"
            )
            kept.mkdir(parents=True, exist_ok=True)
            for log in workdir.rglob("*.log"):
                shutil.copy(log, kept / log.name)
            print(f"    logs kept in {kept}; server says: {result.diagnosis}", file=sys.stderr)
        return summarise(result)


def environment() -> dict[str, Any]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    meminfo = Path("/proc/meminfo").read_text().split("\n")[0].split()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{len(os.sched_getaffinity(0))} cores ({cpu}), {int(meminfo[1]) // 1024**2} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg()[0],
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "versions": {
            dist: version(dist)
            for dist in (
                "exosphere-state-manager",
                "exospherehost",
                "fastapi",
                "uvicorn",
                "motor",
                "pymongo",
                "beanie",
                "nx-27017",
                "httpx",
                "httpx-aiohttp",
                "aiohttp",
            )
        },
    }


def markdown(rows: list[dict[str, Any]], env: dict[str, Any]) -> str:
    out = [
        f"{env['date']}; {env['machine']}; Python {env['python']}; commit {env['commit']}; "
        f"load average {env['load_average_at_start']:.2f} at start, {env['load_average_at_end']:.2f} at end; "
        f"{env['total_seconds']} s in all",
        "",
        "| workload | SDK | store | wall s | executions/s | trigger-to-done p50 / p95 ms "
        "| CPU ms per execution: server / database / runtime | db commands per execution "
        "| runtime requests per execution | `runs/1/10` p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["workload"] in ("D", "E"):
            continue
        out.append(
            f"| {r['workload']}: {r['title']}{_err(r)} | {r['sdk']} | {r['store']} | "
            f"{_f(r.get('wall_s'), 2)} | "
            f"{_f(r.get('executions_per_s'), 0)} | "
            f"{_f(r.get('done_p50_ms'), 0)} / {_f(r.get('done_p95_ms'), 0)} | "
            f"{_f(r.get('server_cpu_ms'), 2)} / {_cpu_db(r)} / {_f(r.get('runtime_cpu_ms'), 2)} | "
            f"{_f(r.get('db_commands_per_exec'), 2)} | {_f(r.get('runtime_requests_per_exec'), 2)} | "
            f"{_f(r.get('probe_p99_ms'), 0)} |"
        )
    out += [
        "",
        "| D: chain step latency | SDK | store | step p50 / p95 ms | trigger to first step p50 ms | "
        "CPU ms per execution: server / database / runtime | db commands per execution |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["workload"] == "D":
            out.append(
                f"| {r['title']}{_err(r)} | {r['sdk']} | {r['store']} | {_f(r.get('step_p50_ms'))} / "
                f"{_f(r.get('step_p95_ms'))} | {_f(r.get('first_start_p50_ms'))} | "
                f"{_f(r.get('server_cpu_ms'), 2)} / {_cpu_db(r)} / {_f(r.get('runtime_cpu_ms'), 2)} | "
                f"{_f(r.get('db_commands_per_exec'), 2)} |"
            )
    out += [
        "",
        "| E: idle runtime | SDK | store | requests/s sent | CPU %: server / database / runtime | "
        "db commands/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["workload"] == "E":
            db = "in-process" if r.get("database_cpu_pct") is None else _f(r["database_cpu_pct"], 2)
            out.append(
                f"| {r['title']}{_err(r)} | {r['sdk']} | {r['store']} | {_f(r.get('requests_per_s'), 2)} | "
                f"{_f(r.get('server_cpu_pct'), 2)} / {db} / {_f(r.get('runtime_cpu_pct'), 2)} | "
                f"{_f(r.get('db_commands_per_s'), 1)} |"
            )
    out += _linearity(rows)
    probes = [r for r in rows if r.get("probe_server_cpu_ms") is not None]
    if probes:
        out += ["", "The listing probe's own cost, measured after each workload (idle, namespace full):", ""]
        out += [
            f"- {r['workload']} {r['sdk']} {r['store']}: {r['probes']} probes, each "
            f"{_f(r['probe_server_cpu_ms'], 2)} ms server CPU, "
            f"{_f(r.get('probe_db_commands'), 1)} db commands"
            for r in probes
        ]
    return "\n".join(out)


def _linearity(rows: list[dict[str, Any]]) -> list[str]:
    """Fan-out C against C-small: time per execution at the large width over the small one."""
    lines = []
    for big in rows:
        small = next(
            (
                r
                for r in rows
                if r["workload"] == "C-small" and (r["sdk"], r["store"]) == (big["sdk"], big["store"])
            ),
            None,
        )
        if (
            big["workload"] != "C"
            or small is None
            or not big.get("executions_per_s")
            or not small.get("wall_s")
        ):
            continue
        ratio = small["executions_per_s"] / big["executions_per_s"]
        lines.append(
            f"- {big['sdk']} {big['store']}: {big['title']} vs {small['title']}: time per execution "
            f"x{ratio:.1f} (1.0 = linear)" + (" (the large one was cut short)" if big.get("error") else "")
        )
    if lines:
        lines = ["", "Fan-out linearity:", "", *lines]
    return lines


def _cpu_db(row: dict[str, Any]) -> str:
    value = row.get("database_cpu_ms")
    return "in-process" if value is None else f"{value:.2f}"


def _err(row: dict[str, Any]) -> str:
    return f" (**{row['error']}**)" if row.get("error") else ""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: the whole run in ~3 minutes")
    parser.add_argument("--workloads", default=",".join(ALL_WORKLOADS), help="comma-separated, e.g. A,D")
    parser.add_argument("--sdks", default=",".join(SDKS), help="ours, official or both")
    parser.add_argument("--stores", default="default,nx", help="default, nx, mongo (needs --mongo-uri)")
    parser.add_argument("--mongo-uri", help="a MongoDB to measure as the 'mongo' store")
    parser.add_argument(
        "--limit",
        type=float,
        help="seconds a workload may run before it is cut short (default 150, --quick 30)",
    )
    parser.add_argument("--json", type=Path, help="where to write every figure (default .cache/bench/)")
    options = parser.parse_args()
    options.limit = options.limit or (30.0 if options.quick else 150.0)
    names = [n for n in options.workloads.split(",") if n]
    sdks = [s for s in options.sdks.split(",") if s]
    stores = [s for s in options.stores.split(",") if s]
    if options.mongo_uri and "mongo" not in stores:
        stores.append("mongo")
    if "mongo" in stores and not options.mongo_uri:
        parser.error("the mongo store needs --mongo-uri")
    known = set(ALL_WORKLOADS + LARGE_WORKLOADS)
    unknown = set(names) - known | set(sdks) - set(SDKS) | set(stores) - {"default", "nx", "mongo"}
    if unknown:
        parser.error(f"unknown: {sorted(unknown)}")
    install_sigterm_handler()
    if "official" in sdks:
        print("official SDK venv: preparing (built once, then cached) ...", file=sys.stderr, flush=True)
        official_sdk_python("0.0.3")
    plan = [(store, sdk, name) for store in stores for sdk in sdks for name in names]
    env = environment()
    rows: list[dict[str, Any]] = []
    began = time.monotonic()
    for index, (store, sdk, name) in enumerate(plan, 1):
        started = time.monotonic()
        row = measure_one(name, sdk, store, options)
        rows.append(row)
        _progress(index, len(plan), row, time.monotonic() - started)
    print(f"all done in {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
    env["load_average_at_end"] = os.getloadavg()[0]
    env["total_seconds"] = round(time.monotonic() - began)
    target = options.json or REPO_ROOT / ".cache" / "bench" / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"environment": env, "quick": options.quick, "results": rows}, indent=2))
    print(markdown(rows, env))
    print(f"\n(all figures: {target})")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted: every process started here was stopped", file=sys.stderr)
        sys.exit(130)
