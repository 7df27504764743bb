"""The one protection step every request-log row goes through before it is queued or spilled.

Main rows, shadow rows, rows spilled to disk and rows replayed from a spill file all pass through
``LogProtection.protect`` exactly once, in ``RequestLogWriter.submit``/``commit``: payloads are
dropped (``request_log.log_prompts: false``), else redacted (``request_log.redact``; detection runs
in a thread) and then encrypted (``LLMOPS_PAYLOAD_KEYS``). Spill files therefore hold protected
rows, and replaying them stores them as they are.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from llmops.gateway.config import RequestLogConfig
from llmops.security.payload_crypto import PayloadCipher
from llmops.security.redaction import RedactMode, Redactor

if TYPE_CHECKING:
    from llmops.gateway.request_log import RequestLogRecord


@dataclass
class LogProtection:
    """Drop, redact and encrypt the payloads (prompt, completion) of a log row."""

    log_prompts: bool = True
    redact: RedactMode | None = None
    redactor: Redactor | None = None
    cipher: PayloadCipher | None = None

    @classmethod
    def from_config(cls, config: RequestLogConfig) -> LogProtection:
        """From the request-log config and the settings (server secret, ``LLMOPS_PAYLOAD_KEYS``)."""
        mode = None if config.redact == "off" else config.redact
        redactor = Redactor.from_settings() if mode is not None else None
        return cls(config.log_prompts, mode, redactor, PayloadCipher.from_settings())

    async def protect(self, record: RequestLogRecord) -> RequestLogRecord:
        if record.prompt is None and record.completion is None:
            return record
        if not self.log_prompts:
            return replace(record, prompt=None, completion=None)
        texts: tuple[str | None, ...] = (record.prompt, record.completion)
        redactor, mode = self.redactor, self.redact
        if redactor is not None and mode is not None and any(texts):

            def redact_all() -> tuple[str | None, ...]:
                return tuple(redactor.redact(t, mode).text if t else t for t in texts)

            texts = await asyncio.to_thread(redact_all)
        if self.cipher is not None:
            texts = tuple(self.cipher.encrypt(t) for t in texts)
        return replace(record, prompt=texts[0], completion=texts[1])
