"""Exit codes and configuration: success, usage errors, unreachable servers, refused keys, 5xx."""

from __future__ import annotations

import http.server
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from exospherehost import Runtime
from tests.cli.conftest import Cli
from tests.support.live_server import LiveServer, free_port

pytestmark = pytest.mark.e2e


async def test_ping_checks_health_and_the_key(cli: Cli, worker: Runtime, ns: str) -> None:
    result = await cli("ping", "-o", "json")

    assert result.code == 0, result
    answer = result.json()
    assert answer["status"] == "ok" and answer["key"] == "accepted"
    assert ns in answer["namespaces"]  # the worker registered its nodes there


async def test_the_installed_console_script_runs_the_same_cli(cli: Cli, server: LiveServer) -> None:
    script = Path(sys.executable).parent / "exosphere"
    installed = Cli(env=cli.env, command=(str(script),))

    result = await installed("ping")

    assert result.code == 0, result
    assert f"{server.base_url} is up" in result.stdout
    assert "accepted" in result.stdout


async def test_a_wrong_key_exits_3_and_says_so(cli: Cli) -> None:
    result = await cli("ping", "--key", "not-the-key")

    assert result.code == 3, result
    assert "refused the API key" in result.stderr
    assert result.stdout == ""


async def test_a_refused_connection_exits_3_and_says_so(cli: Cli) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    for args in (["ping"], ["run", "list", "-o", "json"]):
        result = await cli(*args, "--url", url)

        assert result.code == 3, result
        assert f"error: cannot reach the server at {url}: connection refused" in result.stderr
        assert "Timeout" not in result.stderr  # not reported as a timeout
        assert result.stdout == ""


class _FailingHandler(http.server.BaseHTTPRequestHandler):
    """A server that is up but fails every request (as a broken deployment does)."""

    def do_GET(self) -> None:
        body = b'{"detail": "database unavailable"}'
        self.send_response(503)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def failing_server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FailingHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


async def test_a_server_error_exits_3(cli: Cli, failing_server: str) -> None:
    result = await cli("run", "get", "some-run", "--url", failing_server)

    assert result.code == 3, result
    assert "the server failed: database unavailable (503" in result.stderr


async def test_a_4xx_exits_1_with_the_server_message(cli: Cli, ns: str) -> None:
    result = await cli("run", "get", "no-such-run", "-o", "json")

    assert result.code == 1, result
    assert "Run no-such-run not found" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "drop", "message"),
    [
        (["run", "list"], "EXOSPHERE_STATE_MANAGER_URI", "No server URL"),
        (["run", "list"], "EXOSPHERE_API_KEY", "No API key"),
        (["run", "list"], "EXOSPHERE_NAMESPACE", "No namespace"),
        (["run", "trigger", "g", "-i", "no-equals-sign"], None, "expected KEY=VALUE"),
        (["run", "list", "--since", "last tuesday"], None, "expected a duration"),
        (["run", "trigger", "g", "--start-delay", "5x"], None, "'--start-delay': expected a duration like"),
        (["run", "trigger", "g", "--start-delay", "-3s"], None, "'--start-delay': a duration cannot be"),
        (["run", "watch", "r", "--timeout", "soon"], None, "'--timeout': expected a duration like"),
        (["run", "watch", "r", "--interval", "1ms"], None, "'--interval': must be at least 50ms"),
        (["graph", "apply", "-", "--timeout", "5x"], None, "'--timeout': expected a duration like"),
        (["run", "list", "--status", "DONE"], None, "'DONE' is not one of"),
        (["frobnicate"], None, "No such command"),
    ],
)
async def test_usage_errors_exit_2(cli: Cli, args: list[str], drop: str | None, message: str) -> None:
    env = dict(cli.env)
    if drop:
        env.pop(drop)

    result = await Cli(env=env)(*args)

    assert result.code == 2, result
    assert message in result.stderr
    assert result.stdout == ""


async def test_options_after_the_command_win_over_the_environment(cli: Cli, server: LiveServer) -> None:
    wrong = Cli(env={**cli.env, "EXOSPHERE_API_KEY": "wrong", "EXOSPHERE_NAMESPACE": "elsewhere"})

    before = await wrong("ping")
    after = await wrong("--key", server.api_key, "ui", "-n", "here", "-o", "json")
    fixed = await wrong("ping", "--key", server.api_key)

    assert before.code == 3, before
    assert after.json() == {"url": f"{server.base_url}/ui/ns/here/runs"}
    assert fixed.code == 0, fixed


async def test_ui_prints_the_dashboard_url_of_the_namespace_or_a_run(
    cli: Cli, server: LiveServer, ns: str
) -> None:
    runs = await cli("ui")
    one = await cli("ui", "run-1", "-o", "json")

    assert runs.code == 0 and runs.stdout.strip() == f"{server.base_url}/ui/ns/{ns}/runs"
    assert one.json() == {"url": f"{server.base_url}/ui/ns/{ns}/runs/run-1"}
