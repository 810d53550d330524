"""The README's example is a file; this runs it against a real server."""

from examples.hello_node import main


async def test_hello_example_runs_end_to_end(sdk_env: object) -> None:
    assert await main("world") == "HELLO, WORLD!"
