"""Secret recognisers: API keys and tokens of known shapes, labelled values, high-entropy strings.

Three rules, strongest first:

1. Known token shapes (this platform's own ``sk-llmops-`` keys, OpenAI ``sk-``, GitHub ``ghp_`` and
   ``github_pat_``, AWS ``AKIA``, Slack ``xox?-``, Google ``AIza``, Stripe, SendGrid, GitLab, npm,
   Hugging Face ``hf_``, JWTs, PEM private-key blocks).
2. Labelled values: whatever follows ``api_key=``, ``secret:``, ``token=``, ``password=`` and the
   like (also inside names such as ``HEROKU_API_KEY=``), in any alphabet, hex included; and the
   password in a connection string (``scheme://user:password@host``).
3. Unlabelled high-entropy tokens: at least ``entropy_min_length`` characters of the base64/base64url
   alphabet, above ``entropy_threshold`` bits per character, that also look machine-made (see
   ``looks_random``: mixed case and digits, no long digit runs, not mostly word-like runs).

Decision on hex: unlabelled hex strings (commit hashes, sha256 digests, UUIDs, request ids) are never
reported by rule 3. They fill every log and are identifiers, not credentials; the three-class
requirement excludes them by construction. A hex secret is reported when it is labelled (rule 2).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from llmops.security.pii_checks import character_classes, shannon_entropy
from llmops.security.pii_types import Finding, PIIConfig, PIIType

KNOWN_SHAPES: tuple[tuple[str, re.Pattern[str], float], ...] = (
    (
        "private_key",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
            r"(?:[\s\S]{0,16384}?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)?"
        ),
        1.0,
    ),
    ("llmops_api_key", re.compile(r"(?<![\w-])sk-llmops-[A-Za-z0-9_-]{43}(?![\w-])"), 0.99),
    ("openai_key", re.compile(r"(?<![\w-])sk-(?:proj-|ant-(?:api\d\d-)?)?[A-Za-z0-9_-]{20,}"), 0.95),
    ("github_token", re.compile(r"(?<!\w)gh[pousr]_[A-Za-z0-9]{36,255}(?!\w)"), 0.99),
    ("github_pat", re.compile(r"(?<!\w)github_pat_[A-Za-z0-9_]{22,255}(?!\w)"), 0.99),
    (
        "aws_access_key_id",
        re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
        0.95,
    ),
    ("slack_token", re.compile(r"(?<!\w)xox[abposr]-[A-Za-z0-9-]{10,}"), 0.95),
    ("google_api_key", re.compile(r"(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])"), 0.95),
    ("stripe_key", re.compile(r"(?<!\w)(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"), 0.95),
    ("sendgrid_key", re.compile(r"(?<![\w.-])SG\.[\w-]{22}\.[\w-]{43}(?![\w-])"), 0.95),
    ("gitlab_token", re.compile(r"(?<![\w-])glpat-[\w-]{20,}(?![\w-])"), 0.95),
    ("npm_token", re.compile(r"(?<!\w)npm_[A-Za-z0-9]{36}(?!\w)"), 0.95),
    ("huggingface_token", re.compile(r"(?<!\w)hf_[A-Za-z0-9]{30,}(?!\w)"), 0.95),
    (
        "jwt",
        re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}(?![\w-])"),
        0.9,
    ),
)
LABELLED_RE = re.compile(
    r"(?i)(?:\bbearer\s+|(?<![A-Za-z0-9])(?:api[_-]?key|apikey|secret(?:[_-]?key)?|client[_-]?secret|access[_-]?token"
    r"|auth[_-]?token|token|passw(?:or)?d|passwd|pwd|private[_-]?key|aws_secret_access_key)\b[\"']?"
    r"\s*[:=]\s*[\"']?)([^\s\"'`,;<>]{8,200})"
)
# scheme://user:password@host: the password of a connection string.
URL_PASSWORD_RE = re.compile(r"(?i)\b[a-z][a-z0-9+.-]{0,30}://[^\s:/@]{1,256}:([^\s:/@]{1,256})@")
PLACEHOLDER_VALUES = frozenset({"none", "null", "true", "false", "redacted", "changeme", "password"})
TOKEN_RE = re.compile(r"(?<![\w+/=-])[A-Za-z0-9+/_=-]{8,}(?![\w+/=-])")
WORD_RUN_RE = re.compile(r"[A-Z]?[a-z]{3,}|[A-Z]{3,}(?![a-z])")
DIGIT_RUN_RE = re.compile(r"\d{5,}")


def _looks_like_placeholder(value: str) -> bool:
    lowered = value.lower()
    if value[0] in "<${%(*" or lowered in PLACEHOLDER_VALUES:
        return True
    if set(lowered) <= set("x*.-_") or len(set(lowered)) <= 2:
        return True
    # prose after "secret:" is words; a credential has a digit or is one long unbroken run
    return not any(char.isdigit() for char in value) and len(value) < 16


def _known_shapes(text: str) -> Iterator[Finding]:
    for name, pattern, score in KNOWN_SHAPES:
        for match in pattern.finditer(text):
            value = match.group(0)
            if name == "openai_key" and character_classes(value[3:]) < 3:
                continue  # "sk-learn-compatible-models" is prose, a key mixes cases and digits
            yield Finding(PIIType.SECRET, match.start(), match.end(), value, score, name)


def _labelled(text: str) -> Iterator[Finding]:
    for match in LABELLED_RE.finditer(text):
        value = match.group(1)
        if _looks_like_placeholder(value):
            continue
        start, end = match.span(1)
        yield Finding(PIIType.SECRET, start, end, value, 0.75, "labelled_secret")


def looks_random(value: str, config: PIIConfig) -> bool:
    """Whether an unlabelled token looks machine-generated rather than like an identifier.

    Entropy alone cannot tell a 20-character key from ``PolicyNameV2WithSuffix`` (both near 4 bits per
    character), so the token must also mix lower case, upper case and digits, hold no run of five or
    more digits (dates, counters), and be at most half made of word-like runs (``Name``, ``HTTP``).
    """
    if len(value) < config.entropy_min_length or character_classes(value) < 3:
        return False
    if value.startswith("/") or value.count("/") >= 3 or DIGIT_RUN_RE.search(value):
        return False  # a file path, or an id built from a date or counter
    wordy = sum(len(word) for word in WORD_RUN_RE.findall(value))
    if wordy > len(value) / 2:
        return False
    return shannon_entropy(value) >= config.entropy_threshold


def _url_passwords(text: str) -> Iterator[Finding]:
    for match in URL_PASSWORD_RE.finditer(text):
        value = match.group(1)
        if value[0] in "<${%*" or set(value) <= set("*x"):
            continue
        yield Finding(PIIType.SECRET, match.start(1), match.end(1), value, 0.85, "url_password")


def _high_entropy(text: str, config: PIIConfig) -> Iterator[Finding]:
    for match in TOKEN_RE.finditer(text):
        value = match.group(0)
        if looks_random(value, config):
            yield Finding(PIIType.SECRET, match.start(), match.end(), value, 0.6, "high_entropy")


def find_secrets(text: str, config: PIIConfig) -> Iterator[Finding]:
    """Known token shapes, labelled values and high-entropy tokens (overlaps left to the detector)."""
    yield from _known_shapes(text)
    yield from _labelled(text)
    yield from _url_passwords(text)
    yield from _high_entropy(text, config)
