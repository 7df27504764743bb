"""llmops: one self-hosted platform for the whole life of a language model in production.

Packages sit in layers (see ARCHITECTURE.md); a package imports only from its own layer or
lower ones.
"""

__version__ = "0.1.0"
