"""The one protection step every request-log row goes through before it is queued or spilled.

Main rows, shadow rows, rows spilled to disk and rows replayed from a spill file all pass through
``LogProtection.protect`` exactly once, in ``RequestLogWriter.submit``/``commit``: payloads are
dropped (``request_log.log_prompts: false``), else put through the stored-payload protection
(``security.payload_protection``: redaction by ``request_log.redact``, in a thread, then encryption
by ``LLMOPS_PAYLOAD_KEYS``), the same step feedback text goes through. Spill files therefore hold
protected rows, and replaying them stores them as they are.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from llmops.gateway.config import RequestLogConfig
from llmops.security.payload_protection import PayloadProtection

if TYPE_CHECKING:
    from llmops.gateway.request_log import RequestLogRecord


@dataclass
class LogProtection:
    """Drop, or redact and encrypt, the payloads (prompt, completion) of a log row."""

    log_prompts: bool = True
    payload: PayloadProtection = field(default_factory=PayloadProtection)

    @classmethod
    def from_config(cls, config: RequestLogConfig) -> LogProtection:
        """From the request-log config and the settings (server secret, ``LLMOPS_PAYLOAD_KEYS``)."""
        return cls(config.log_prompts, PayloadProtection.from_settings(config.redact))

    async def protect(self, record: RequestLogRecord) -> RequestLogRecord:
        if record.prompt is None and record.completion is None:
            return record
        if not self.log_prompts:
            return replace(record, prompt=None, completion=None)
        texts: tuple[str | None, ...] = (record.prompt, record.completion)
        if self.payload.redacts and any(texts):
            texts = await asyncio.to_thread(self.payload.protect, *texts)
        else:
            texts = self.payload.protect(*texts)
        if texts[0] is record.prompt and texts[1] is record.completion:
            return record  # nothing to redact or encrypt: no copy
        return replace(record, prompt=texts[0], completion=texts[1])
