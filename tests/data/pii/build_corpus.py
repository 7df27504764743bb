"""Build ``corpus.jsonl``, the labelled PII corpus, from the sentences in ``corpus_sentences.py``.

Run ``.venv/bin/python tests/data/pii/build_corpus.py`` after editing the sentences. The builder
checks every label independently of the detector under test (Luhn and mod-97 written out again
here, libphonenumber's ``is_valid_number``, ``ipaddress``), so a typo in a value fails the build
instead of silently turning into a "missed" finding.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import phonenumbers
from corpus_sentences import HARD_NEGATIVES, HOLDOUT_NEGATIVES, HOLDOUT_POSITIVES, POSITIVES

HERE = Path(__file__).resolve().parent
MARK_RE = re.compile(r"\[\[([A-Z_]+)\|(.*?)\]\]", re.S)


def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()][::-1]
    odd = sum(digits[0::2])
    even = sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    return (odd + even) % 10 == 0


def iban_ok(value: str) -> bool:
    s = value.replace(" ", "")
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def parse(marked: str) -> dict[str, Any]:
    text_parts: list[str] = []
    spans: list[dict[str, Any]] = []
    cursor = position = 0
    for match in MARK_RE.finditer(marked):
        plain = marked[cursor : match.start()]
        text_parts.append(plain)
        position += len(plain)
        kind, value = match.group(1), match.group(2)
        spans.append({"type": kind, "start": position, "end": position + len(value), "value": value})
        text_parts.append(value)
        position += len(value)
        cursor = match.end()
    text_parts.append(marked[cursor:])
    return {"text": "".join(text_parts), "spans": spans}


def check(span: dict[str, Any]) -> None:
    """Independent validity checks so the labels are right (not merely what the detector says)."""
    kind, value = span["type"], str(span["value"])
    ok = True
    if kind == "CREDIT_CARD":
        ok = luhn_ok(value) and 13 <= sum(c.isdigit() for c in value) <= 19
    elif kind == "IBAN":
        ok = iban_ok(value)
    elif kind == "PHONE":
        ok = phonenumbers.is_valid_number(phonenumbers.parse(value, "US"))
    elif kind == "IP_ADDRESS":
        ok = bool(ipaddress.ip_address(value))
    assert ok, f"invalid {kind} label: {value!r}"


def build_rows(positives: list[str], negatives: list[str], split: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for index, marked in enumerate(positives):
        row: dict[str, Any] = {"id": f"{split}-pos-{index:03d}", "split": split, "kind": "positive"}
        row.update(parse(marked))
        for span in row["spans"]:
            check(span)
        rows.append(row)
    for index, marked in enumerate(negatives):
        assert "[[" not in marked
        rows.append(
            {
                "id": f"{split}-neg-{index:03d}",
                "split": split,
                "kind": "hard_negative",
                "text": marked,
                "spans": [],
            }
        )
    return rows


def main() -> None:
    rows = build_rows(POSITIVES, HARD_NEGATIVES, "tuning") + build_rows(
        HOLDOUT_POSITIVES, HOLDOUT_NEGATIVES, "holdout"
    )
    with (HERE / "corpus.jsonl").open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    spans = sum(len(r["spans"]) for r in rows)
    negatives = sum(r["kind"] == "hard_negative" for r in rows)
    print(f"wrote {len(rows)} rows, {spans} labelled spans, {negatives} hard negatives")


if __name__ == "__main__":
    main()
