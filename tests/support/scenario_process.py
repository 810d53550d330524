"""Run a script that talks to a live server from another interpreter, and read its manifest.

The script prints ONE JSON line ``{"manifest": {...}, ...}`` on stdout once it has set itself up,
logs to stderr (captured in a file), and keeps running until its stdin is closed. The compat suite
uses this to drive the official SDK releases from their own Python 3.12 venvs; any suite that needs
a client in a separate process can use it the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

MANIFEST_TIMEOUT_SECONDS = 150.0
LOG_TAIL_LINES = 120


@dataclass
class ScenarioProcess:
    """A script running in its own interpreter, after it printed its manifest."""

    process: subprocess.Popen[str]
    workdir: Path
    log_path: Path
    manifest: dict[str, dict[str, Any]] = field(default_factory=dict)
    sdk: dict[str, str] = field(default_factory=dict)
    started_at: float = 0.0
    manifest_at: float = 0.0
    _log_file: IO[str] | None = None
    _reader: threading.Thread | None = None

    def scenario(self, name: str) -> dict[str, Any]:
        """The manifest entry of one scenario; fails the test if its setup failed."""
        assert name in self.manifest, f"scenario {name!r} missing from manifest: {sorted(self.manifest)}"
        entry = self.manifest[name]
        if not entry.get("ok"):
            pytest.fail(
                f"scenario {name!r} failed during setup: {entry.get('error')}\n{entry.get('traceback', '')}",
                pytrace=False,
            )
        return entry

    def release(self, tag: str) -> None:
        """Let a scenario node that waits for `tag` go on (see _harness.released)."""
        key = hashlib.sha256(tag.encode("utf-8")).hexdigest()[:24]
        (self.workdir / f"release-{key}").write_text("go")

    def events(self, event: str) -> list[dict[str, Any]]:
        path = self.workdir / "events.jsonl"
        if not path.exists():
            return []
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [row for row in rows if row.get("event") == event]

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                if self.process.stdin is not None:
                    self.process.stdin.close()  # EOF: the script cancels its runtimes and exits
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.terminate()
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=10)  # it ends at EOF, now that the process has exited
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _read_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _wait_for_manifest(proc: ScenarioProcess, lines: queue.Queue[str | None], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line is None:
            proc.process.wait(timeout=10)
            pytest.fail(
                f"scenario script exited (code {proc.process.returncode}) before printing its manifest; "
                f"log {proc.log_path}:\n{proc.log_tail()}",
                pytrace=False,
            )
        with contextlib.suppress(json.JSONDecodeError):
            document = json.loads(line)
            if isinstance(document, dict) and "manifest" in document:
                proc.manifest = document["manifest"]
                proc.sdk = document.get("sdk", {})
                proc.manifest_at = time.time()
                return
    pytest.fail(
        f"scenario script printed no manifest within {timeout:.0f}s; log {proc.log_path}:\n{proc.log_tail()}",
        pytrace=False,
    )


@contextlib.contextmanager
def scenario_process(
    command: list[str],
    *,
    env: Mapping[str, str],
    workdir: Path,
    cwd: Path | None = None,
    manifest_timeout: float = MANIFEST_TIMEOUT_SECONDS,
) -> Iterator[ScenarioProcess]:
    """Start ``command``, wait for its manifest line, yield it, and stop it (stdin EOF) on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "scenario.log"
    log_file = log_path.open("w", encoding="utf-8")
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log_file,
        text=True,
    )
    proc = ScenarioProcess(
        process=process, workdir=workdir, log_path=log_path, started_at=time.time(), _log_file=log_file
    )
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    proc._reader = threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True)
    proc._reader.start()
    try:
        _wait_for_manifest(proc, lines, manifest_timeout)
        yield proc
    finally:
        proc.stop()


ScenarioRunner = Callable[..., contextlib.AbstractContextManager[ScenarioProcess]]
"""What the compat suite's ``scenario_runner`` fixture returns: ``runner(version, script, **env)``."""
