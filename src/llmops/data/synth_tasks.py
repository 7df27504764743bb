"""The synthetic tasks: short prompts with exactly checkable answers, each over named domains.

A domain fixes the input distribution (names, objects, products, wording, number ranges), so a
distribution shift can be made on purpose: ``default`` is what a tiny model trains on; ``shifted``
uses vocabulary (and, where there are numbers, ranges) never seen in ``default``, with the same task.
The ``default`` domains are kept small enough for a ~10M-parameter model to learn in minutes:
prompts under 25 words, answers from a small space. The public API is in ``synth``.
"""

from __future__ import annotations

import json
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar


class SynthTask(ABC):
    """A generator of (prompt, completion) pairs and the check of a predicted completion."""

    name: ClassVar[str]
    description: ClassVar[str]

    @abstractmethod
    def domains(self) -> list[str]:
        """The domain names this task can generate, ``default`` first."""

    @abstractmethod
    def sample(self, rng: random.Random, domain: str) -> tuple[str, str]:
        """One (prompt, completion) pair drawn from ``domain`` (a name from ``domains()``)."""

    def score(self, prediction: str, completion: str) -> bool:
        """Exact match after stripping surrounding whitespace."""
        return prediction.strip() == completion.strip()


# --- arithmetic -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArithmeticDomain:
    names: tuple[str, ...]
    objects: tuple[str, ...]
    start: tuple[int, int]  # inclusive range of the starting amount
    change: tuple[int, int]  # inclusive range of the amount added or taken away


_DEFAULT_NAMES = ("Tom", "Ana", "Ben", "Mia", "Sam", "Lily", "Max", "Zoe")
_FRUIT = ("apples", "pears", "plums", "oranges", "bananas", "lemons", "cherries", "peaches")

_ADD_TEMPLATES = (
    "{name} has {a} {obj} and buys {b} more. How many {obj} does {name} have?",
    "{name} had {a} {obj} and found {b} more. How many {obj} now?",
    "{name} picks {a} {obj}, then {b} more. How many {obj} in total?",
)
_SUB_TEMPLATES = (
    "{name} has {a} {obj} and gives away {b}. How many {obj} are left?",
    "{name} had {a} {obj} and lost {b}. How many {obj} remain?",
    "{name} had {a} {obj} and sold {b}. How many {obj} are left?",
)


class ArithmeticTask(SynthTask):
    """Addition and subtraction word problems; the completion is the number."""

    name = "arithmetic"
    description = "one-step addition/subtraction word problems; answer is the number"
    DOMAINS: ClassVar[dict[str, ArithmeticDomain]] = {
        "default": ArithmeticDomain(_DEFAULT_NAMES, _FRUIT, (2, 9), (1, 9)),
        "large_numbers": ArithmeticDomain(_DEFAULT_NAMES, _FRUIT, (20, 99), (10, 99)),
        "shifted": ArithmeticDomain(
            ("Oscar", "Greta", "Ravi", "Yuki", "Nadia", "Pablo", "Ingrid", "Kofi"),
            ("coins", "stamps", "marbles", "stickers", "pebbles", "tickets", "buttons", "shells"),
            (20, 99),
            (10, 99),
        ),
    }

    def domains(self) -> list[str]:
        return list(self.DOMAINS)

    def sample(self, rng: random.Random, domain: str) -> tuple[str, str]:
        spec = self.DOMAINS[domain]
        name, obj = rng.choice(spec.names), rng.choice(spec.objects)
        a, b = rng.randint(*spec.start), rng.randint(*spec.change)
        if rng.random() < 0.5:
            template, answer = rng.choice(_ADD_TEMPLATES), a + b
        else:
            b = min(b, a)  # no negative amounts
            template, answer = rng.choice(_SUB_TEMPLATES), a - b
        return template.format(name=name, obj=obj, a=a, b=b), str(answer)


# --- extraction -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtractionDomain:
    names: tuple[str, ...]
    cities: tuple[str, ...]
    items: tuple[str, ...]
    qty: tuple[int, int]


_EXTRACTION_TEMPLATES = (
    "{name} from {city} ordered {qty} {item}.",
    "Please ship {qty} {item} to {name} in {city}.",
    "Order: {qty} {item} for {name}, {city}.",
    "{name} in {city} wants {qty} {item}.",
)
EXTRACTION_KEYS = ("name", "city", "item", "qty")


class ExtractionTask(SynthTask):
    """A sentence about an order; the completion is compact JSON with keys name, city, item, qty."""

    name = "extraction"
    description = "order sentence to compact JSON {name, city, item, qty}; compared as parsed JSON"
    DOMAINS: ClassVar[dict[str, ExtractionDomain]] = {
        "default": ExtractionDomain(
            ("Alice", "Bob", "Carla", "David", "Emma", "Frank", "Grace", "Hugo"),
            ("Paris", "Berlin", "Madrid", "Rome", "Lisbon", "Vienna", "Oslo", "Dublin"),
            ("lamps", "chairs", "mugs", "books", "pens", "tables", "clocks", "rugs"),
            (1, 9),
        ),
        "shifted": ExtractionDomain(
            ("Priya", "Kenji", "Olusegun", "Fatima", "Mateus", "Svetlana", "Tariq", "Noor"),
            ("Nairobi", "Osaka", "Lima", "Karachi", "Jakarta", "Accra", "Bogota", "Hanoi"),
            ("drones", "saddles", "anvils", "harpoons", "kayaks", "easels", "sextants", "looms"),
            (10, 999),
        ),
    }

    def domains(self) -> list[str]:
        return list(self.DOMAINS)

    def sample(self, rng: random.Random, domain: str) -> tuple[str, str]:
        spec = self.DOMAINS[domain]
        fields: dict[str, str | int] = {
            "name": rng.choice(spec.names),
            "city": rng.choice(spec.cities),
            "item": rng.choice(spec.items),
            "qty": rng.randint(*spec.qty),
        }
        prompt = rng.choice(_EXTRACTION_TEMPLATES).format(**fields)
        return prompt, serialize_record(fields)

    def score(self, prediction: str, completion: str) -> bool:
        """Equal as parsed JSON objects (key order and spacing do not matter); unparsable is wrong."""
        try:
            expected = json.loads(completion)
        except json.JSONDecodeError:
            return super().score(prediction, completion)
        try:
            return bool(json.loads(prediction) == expected)
        except json.JSONDecodeError:
            return False


def serialize_record(fields: dict[str, str | int]) -> str:
    """Compact JSON with the keys in ``EXTRACTION_KEYS`` order: one byte string per record."""
    return json.dumps(
        {key: fields[key] for key in EXTRACTION_KEYS}, separators=(",", ":"), ensure_ascii=False
    )
