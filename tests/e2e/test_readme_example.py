"""The README's example is a file; this runs it against a real server."""

from pathlib import Path

from examples.hello_node import main


async def test_hello_example_runs_end_to_end(sdk_env: object) -> None:
    assert await main("world") == "HELLO, WORLD!"


def test_the_readme_shows_the_node_of_the_example_file() -> None:
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    example = (root / "examples" / "hello_node.py").read_text()
    snippet = readme[readme.index("class Greet(BaseNode):") :]
    snippet = snippet[: snippet.index("\n\n", snippet.index("return self.Outputs"))]
    assert snippet in example
