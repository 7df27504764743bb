"""Prompt-injection and jailbreak heuristics: weighted phrase rules and obfuscation signals.

Text is normalised before matching (NFKC, invisible characters dropped, lower case, whitespace
collapsed, letter-spaced words joined: "i g n o r e" reads "ignore"), and base64 payloads are decoded
and scanned too. Each rule that fires contributes its weight; the score is the noisy-or of the
weights, ``1 - prod(1 - w)``, so one strong signal scores high and several weak ones add up without
passing 1. These are heuristics: they catch the common phrasings cheaply and transparently, and a
determined attacker can paraphrase past them, which is why outputs are checked too.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

Category = Literal["override", "roleplay", "exfiltration", "delimiter", "obfuscation"]

# Zero-width and bidi controls, the BOM, and Unicode "tag" characters (invisible ASCII look-alikes).
HIDDEN_RE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\U000e0000-\U000e007f]")
LETTER_SPACED_RE = re.compile(r"\b(?:\w[ .\-_]){3,}\w\b")
BASE64_RE = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{16,}={0,2}(?![A-Za-z0-9+/=])")


@dataclass(frozen=True)
class PhraseRule:
    """One heuristic: a pattern over normalised text and the weight it adds when it matches."""

    name: str
    category: Category
    pattern: re.Pattern[str]
    weight: float


def _rule(name: str, category: Category, pattern: str, weight: float) -> PhraseRule:
    return PhraseRule(name, category, re.compile(pattern, re.S), weight)


VERBS_IGNORE = r"(?:ignore|disregard|forget|skip|override|bypass|drop)"
TARGETS = r"(?:instructions?|prompts?|rules|directions|guidelines|context|messages?|constraints|directives)"
SECRET_PROMPT = (
    r"(?:(?:your|the)\s+(?:system|initial|original|hidden|secret|developer|pre-?)\s*(?:prompt|instructions?"
    r"|message|rules|directives)|system\s+prompt)"
)

INJECTION_RULES: tuple[PhraseRule, ...] = (
    _rule(
        "ignore_previous",
        "override",
        rf"\b{VERBS_IGNORE}\b(?:\s+\w+){{0,3}}?\s+(?:previous|prior|above|earlier|preceding|all|any|your"
        rf"|the|system|developer)\b(?:\s+\w+){{0,2}}?\s+{TARGETS}",
        0.8,
    ),
    _rule(
        "forget_everything",
        "override",
        r"\b(?:forget|ignore|disregard)\s+(?:everything|all)\s+(?:(?:that\s+)?you(?:'ve|\s+have|\s+were)?\s+"
        r"(?:been\s+)?(?:told|said|learned|given)|above|before|so far|(?:i|we)\s+(?:said|told you))",
        0.6,
    ),
    _rule("forget_everything_bare", "override", r"\b(?:forget|disregard)\s+everything\b", 0.25),
    _rule(
        "new_instructions",
        "override",
        r"\b(?:new|updated|real|actual|true)\s+(?:instructions?|rules)\s*:",
        0.5,
    ),
    _rule(
        "do_not_follow",
        "override",
        r"\b(?:do not|don't|stop)\s+(?:follow|obey)(?:ing)?\s+(?:your|the|any)\s+(?:rules|instructions"
        r"|guidelines|policies)",
        0.7,
    ),
    _rule(
        "from_now_on",
        "override",
        r"\bfrom now on\b.{0,40}\b(?:you (?:will|must|are|shall)|respond|answer)",
        0.3,
    ),
    _rule("do_anything_now", "roleplay", r"\bdo anything now\b|\byou are (?:now )?dan\b|\bdan mode\b", 0.7),
    _rule(
        "special_mode",
        "roleplay",
        r"\b(?:developer|dev|god|jailbreak|unrestricted|unfiltered|uncensored|evil|sudo)\s+mode\b",
        0.6,
    ),
    _rule(
        "no_restrictions",
        "roleplay",
        r"\b(?:without|no|free (?:from|of)|not bound by|ignore (?:all )?your)\s+(?:any\s+)?(?:restrictions"
        r"|limitations|filters|guidelines|rules|censorship|ethical|moral|safety)",
        0.5,
    ),
    _rule(
        "persona_switch",
        "roleplay",
        r"\b(?:pretend|imagine you are|act as|roleplay as|role-play as|you are now|from now on you are)\b"
        r".{0,60}\b(?:unrestricted|unfiltered|uncensored|evil|jailbroken|opposite"
        r"|no (?:rules|limits|filter))",
        0.5,
    ),
    _rule("jailbreak_word", "roleplay", r"\bjailbr(?:eak|oken)\b", 0.4),
    _rule("stay_in_character", "roleplay", r"\bstay in character\b|\bnever break character\b", 0.3),
    _rule(
        "reveal_system_prompt",
        "exfiltration",
        rf"\b(?:reveal|show|print|display|output|repeat|tell me|give me|what (?:is|are|was|were)|list|leak"
        rf"|share|dump|write out|copy|spell out)\b.{{0,40}}{SECRET_PROMPT}",
        0.7,
    ),
    _rule(
        "repeat_above",
        "exfiltration",
        r"\b(?:repeat|print|output|copy|echo)\b.{0,30}\b(?:text|words|everything|all|lines)\s+(?:above|before"
        r" this)\b",
        0.6,
    ),
    _rule(
        "your_instructions",
        "exfiltration",
        r"\b(?:what were you told|(?:tell me|show me|list|what are)\s+your\s+"
        r"(?:instructions|rules|guidelines))\b",
        0.4,
    ),
    _rule(
        "chat_markup",
        "delimiter",
        r"<\|im_(?:start|end)\|>|<\|(?:system|begin_of_text|start_header_id|endoftext)\|>|\[/?inst\]"
        r"|<</?sys>>|###\s*(?:system|instructions?)\s*:",
        0.6,
    ),
    _rule("closing_tag", "delimiter", r"</(?:system|instructions?|context|user_input|prompt)>", 0.4),
    _rule("fake_role_line", "delimiter", r"(?:^|\n)\s*(?:system|assistant)\s*:", 0.3),
    _rule(
        "decode_request",
        "obfuscation",
        r"\b(?:decode|decipher|translate from|convert from|read)\b.{0,30}\b(?:base64|b64|rot13|rot-13|hex"
        r"|binary|morse|leetspeak|caesar)\b",
        0.3,
    ),
)
HIDDEN_CHARACTERS_WEIGHT = 0.4
ENCODED_PAYLOAD_WEIGHT = 0.15
ENCODED_INJECTION_WEIGHT = 0.6


def normalise(text: str) -> str:
    """NFKC, invisible characters removed, lower case, single spaces, letter-spaced words joined."""
    text = unicodedata.normalize("NFKC", HIDDEN_RE.sub("", text)).lower()
    text = LETTER_SPACED_RE.sub(lambda m: re.sub(r"[ .\-_]", "", m.group(0)), text)
    return re.sub(r"[ \t\r\f\v]+", " ", text)


def hidden_characters(text: str) -> int:
    """How many zero-width, bidi-control or tag characters ``text`` holds."""
    return len(HIDDEN_RE.findall(text))


def decoded_payloads(text: str) -> list[str]:
    """Base64 runs of ``text`` that decode to mostly printable UTF-8, decoded."""
    found: list[str] = []
    for match in BASE64_RE.finditer(text):
        blob = match.group(0)
        try:
            decoded = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            continue
        printable = sum(char.isprintable() or char.isspace() for char in decoded)
        if decoded and printable / len(decoded) > 0.9:
            found.append(decoded)
    return found


@dataclass(frozen=True)
class InjectionScore:
    """The noisy-or score in [0, 1] and the names of the rules that fired."""

    score: float
    matched: tuple[str, ...]


def matched_rules(normalised: str) -> list[PhraseRule]:
    return [rule for rule in INJECTION_RULES if rule.pattern.search(normalised)]


def injection_score(text: str) -> InjectionScore:
    """Score ``text`` for prompt injection, jailbreak and system-prompt exfiltration attempts."""
    weights: dict[str, float] = {rule.name: rule.weight for rule in matched_rules(normalise(text))}
    if hidden_characters(text):
        weights["hidden_characters"] = HIDDEN_CHARACTERS_WEIGHT
    payloads = decoded_payloads(text)
    if payloads:
        weights["encoded_payload"] = ENCODED_PAYLOAD_WEIGHT
    if any(matched_rules(normalise(payload)) for payload in payloads):
        weights["encoded_injection"] = ENCODED_INJECTION_WEIGHT
    remaining = 1.0
    for weight in weights.values():
        remaining *= 1.0 - weight
    return InjectionScore(round(1.0 - remaining, 4), tuple(sorted(weights)))
