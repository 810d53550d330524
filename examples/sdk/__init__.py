"""Runnable examples of docs/sdk.md: each is a program, and a test runs each against a real server."""
