"""Security: the controls that protect data, models and the platform itself.

What it owns (one concern per module):

- ``pii``, ``pii_types``, ``pii_recognisers``, ``pii_checks``, ``secret_recognisers``: detection of
  personal data and secrets (emails, phone numbers, payment cards, IBANs, IP addresses, US SSNs,
  API keys and other secrets) with checksum validation and overlap resolution;
- ``redaction``: mask, keyed-hash and reversible (Fernet-encrypted) placeholder redaction, and the
  adapter the data package's PII scrub step uses;
- ``guardrails``, ``guardrail_rules``: per-deployment input and output guardrails (prompt injection
  and jailbreak heuristics, PII and secret leaks, length, blocked terms and patterns, JSON Schema);
- ``model_files``, ``safetensors_header``: pickle refusal, strict safetensors header validation,
  the ``trust_remote_code`` allow-list and manifest verification;
- ``urls``: outbound URL validation for admin-configured upstreams (SSRF defence);
- ``json_input``, ``json_route``, ``yaml_input``: untrusted JSON bodies and YAML files parsed within
  limits (depth, number size, duplicate keys, encodings; alias expansion, scalar size), refused
  with a message naming what was read;
- ``keys``, ``roles``: API keys (stored as HMACs) and the roles they carry.

It sits in the domain layer and may import ``llmops.errors``, ``llmops.settings`` and
``llmops.store`` only: never ``registry``, ``data``, ``serve``, ``gateway`` or ``cli``. Services wire
these controls in (the gateway calls the guardrails and URL checks; the data package passes a
``ScrubRedactor`` to its scrub step). Import submodules directly; this package imports nothing so
that importing one control does not load the others' dependencies.
"""
