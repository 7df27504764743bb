"""The command line: thin Typer commands that parse, call one function of a package, and print.

A leaf: nothing imports ``llmops.cli``.
"""
