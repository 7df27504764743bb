"""``python -m llmops`` runs the CLI."""

from llmops.cli.main import entry

entry()
