"""Runnable graph examples; each module's `main()` is run against a live server by
`tests/e2e/test_graph_examples.py`. Run one yourself with `python -m examples.graphs.<name>`."""
