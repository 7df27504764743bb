"""Label sources of curation: where the answer a logged prompt should have had comes from.

Each ``Labeler`` looks at one logged request with its feedback and returns a completion or None
(it cannot label this one; the next source is tried). ``Teacher`` asks a model behind an
OpenAI-compatible URL; when it is unreachable or answers garbage it raises ``UpstreamError``, so the
cycle fails closed (recorded) instead of training on whatever came back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from llmops.data.cleaning import normalize_text
from llmops.data.readers import read_rows
from llmops.errors import InvalidInput, UpstreamError
from llmops.loop.config import Corrections, HumanFile, KeepThumbsUp, LabelSource, Teacher
from llmops.monitor.request_search import FeedbackView


@dataclass(frozen=True)
class LoggedPrompt:
    """One logged request as curation sees it."""

    request_id: str
    user: str | None
    prompt: str
    completion: str | None
    feedback: tuple[FeedbackView, ...]


class Labeler(Protocol):
    @property
    def source(self) -> str:
        """The label source's kind, recorded on every row it labels."""
        ...

    def label(self, item: LoggedPrompt) -> str | None:
        """The completion to learn for ``item``, or None when this source has none."""
        ...


@dataclass(frozen=True)
class ThumbsUpLabeler:
    """The served answer, when users liked it and nobody disliked it."""

    spec: KeepThumbsUp
    source: str = "thumbs_up"

    def label(self, item: LoggedPrompt) -> str | None:
        if not item.completion or not item.feedback:
            return None
        liked = any(f.thumbs == "up" or (f.score or 0.0) >= self.spec.min_score for f in item.feedback)
        disliked = any(f.thumbs == "down" or (f.score is not None and f.score < self.spec.min_score)
                       for f in item.feedback)  # fmt: skip
        return item.completion if liked and not disliked else None


@dataclass(frozen=True)
class CorrectionLabeler:
    """The latest corrected answer a user sent for this request."""

    source: str = "corrections"

    def label(self, item: LoggedPrompt) -> str | None:
        corrected = [f.corrected_output for f in item.feedback if f.corrected_output]
        return corrected[-1] if corrected else None


class FileLabeler:
    """Human labels from a JSONL file, matched by request id (``request_id``) or by the prompt text."""

    source = "file"

    def __init__(self, path: Path) -> None:
        rows = read_rows(path, "prompt_completion", False).rows
        self.by_id = {str(r["request_id"]): str(r["completion"]) for r in rows if r.get("request_id")}
        self.by_prompt = {normalize_text(str(r["prompt"])): str(r["completion"]) for r in rows}

    def label(self, item: LoggedPrompt) -> str | None:
        return self.by_id.get(item.request_id) or self.by_prompt.get(normalize_text(item.prompt))


class TeacherLabeler:
    """A teacher model's answer through an OpenAI-compatible ``/chat/completions``."""

    source = "teacher"

    def __init__(self, spec: Teacher, client: httpx.Client | None = None) -> None:
        self.spec = spec
        headers = {}
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env)
            if not key:
                raise InvalidInput(
                    f"the teacher's API key variable {spec.api_key_env} is not set", param="api_key_env"
                )
            headers["Authorization"] = f"Bearer {key}"
        self.client = client or httpx.Client(timeout=spec.timeout_s, headers=headers)

    def label(self, item: LoggedPrompt) -> str | None:
        body = {
            "model": self.spec.model,
            "messages": [{"role": "user", "content": item.prompt}],
            "max_tokens": self.spec.max_tokens,
            "temperature": self.spec.temperature,
        }
        url = self.spec.url.rstrip("/") + "/chat/completions"
        try:
            response = self.client.post(url, json=body)
            response.raise_for_status()
            text = response.json()["choices"][0]["message"]["content"]
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise UpstreamError(
                f"the teacher at {self.spec.url} did not label a prompt ({type(exc).__name__}: {exc}); "
                "the cycle fails closed",
                code="teacher_unavailable",
            ) from None
        if not isinstance(text, str) or not text.strip():
            raise UpstreamError(
                f"the teacher at {self.spec.url} answered an empty label", code="teacher_empty"
            )
        return text.strip()


def build_labelers(sources: list[LabelSource]) -> list[Labeler]:
    built: list[Labeler] = []
    for spec in sources:
        if isinstance(spec, KeepThumbsUp):
            built.append(ThumbsUpLabeler(spec))
        elif isinstance(spec, Corrections):
            built.append(CorrectionLabeler())
        elif isinstance(spec, HumanFile):
            built.append(FileLabeler(spec.path))
        else:
            built.append(TeacherLabeler(spec))
    return built
