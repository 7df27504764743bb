"""The ``intent`` synthetic task: a customer-support message whose completion is a canned reply.

Seven intents, each with one short fixed reply, recognisable by clear cue words (``refund``,
``cancel``, ``password``, ...). Domains change the products and the wording: ``new_products`` keeps
the default cue words with products never seen in ``default``; ``shifted`` also rewords every
intent with cue words never seen in ``default``, so a model trained on ``default`` loses accuracy
though the task and the replies are the same.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

from llmops.data.synth_tasks import SynthTask

REPLIES: dict[str, str] = {
    "order_status": "Your order is on its way and will arrive soon.",
    "refund": "We have started your refund. It takes five days.",
    "cancel": "Your order has been cancelled.",
    "password": "Use the reset link we just emailed you.",
    "address": "We have updated your delivery address.",
    "damaged": "Sorry it arrived damaged. A replacement is on the way.",
    "human": "A support agent will contact you shortly.",
}

_DEFAULT_WORDING: dict[str, tuple[str, ...]] = {
    "order_status": (
        "Where is my {product}?",
        "My {product} has not arrived yet.",
        "Can you track my {product} order?",
        "When will my {product} arrive?",
    ),
    "refund": (
        "I want a refund for my {product}.",
        "Please refund the {product} I bought.",
        "Can I get my money back for the {product}?",
        "I need a refund, the {product} is not for me.",
    ),
    "cancel": (
        "Please cancel my {product} order.",
        "I want to cancel the {product} I ordered.",
        "Cancel my order for the {product}, please.",
    ),
    "password": (
        "I forgot my password.",
        "I cannot log in to my account.",
        "How do I reset my password?",
        "I cannot log in to buy a {product}.",
    ),
    "address": (
        "I need to change the delivery address for my {product}.",
        "Please send my {product} to a new address.",
        "I moved, please update the address for my {product}.",
    ),
    "damaged": (
        "My {product} arrived broken.",
        "The {product} I got is damaged.",
        "My {product} came broken, the box was crushed.",
    ),
    "human": (
        "I want to talk to a person about my {product}.",
        "Can a human agent call me?",
        "Let me speak to a person about the {product}.",
    ),
}

_SHIFTED_WORDING: dict[str, tuple[str, ...]] = {
    "order_status": (
        "Any news on that {product} shipment?",
        "Still waiting on the {product} I purchased, what is happening?",
    ),
    "refund": (
        "I would like to be reimbursed for the {product}.",
        "Return the cash I paid for that {product}.",
    ),
    "cancel": (
        "Stop the {product} purchase immediately.",
        "Scrap my {product} purchase, I changed my mind.",
    ),
    "password": (
        "My login credentials stopped working.",
        "Locked out of the app, I need new credentials.",
    ),
    "address": (
        "I relocated, the {product} should go to my new flat.",
        "Redirect the {product} shipment to another location.",
    ),
    "damaged": (
        "The {product} showed up smashed.",
        "That {product} is defective and useless.",
    ),
    "human": (
        "Connect me with a real representative.",
        "Get me a supervisor regarding the {product}.",
    ),
}

_DEFAULT_PRODUCTS = ("kettle", "headphones", "lamp", "backpack", "blender", "keyboard", "jacket", "toaster")
_NEW_PRODUCTS = (
    "surfboard",
    "telescope",
    "hammock",
    "accordion",
    "saddle",
    "kayak",
    "microscope",
    "trampoline",
)


@dataclass(frozen=True)
class IntentDomain:
    wording: dict[str, tuple[str, ...]]
    products: tuple[str, ...]
    openers: tuple[str, ...]  # put before the message
    closers: tuple[str, ...]  # put after it


_DEFAULT_OPENERS = ("", "Hi! ", "Hello. ", "Hey there. ")
_DEFAULT_CLOSERS = ("", " Thanks.", " Thank you.")


class IntentTask(SynthTask):
    """Customer message to the canned reply of its intent."""

    name = "intent"
    description = "support message to the fixed reply of its intent (7 intents)"
    DOMAINS: ClassVar[dict[str, IntentDomain]] = {
        "default": IntentDomain(_DEFAULT_WORDING, _DEFAULT_PRODUCTS, _DEFAULT_OPENERS, _DEFAULT_CLOSERS),
        "new_products": IntentDomain(_DEFAULT_WORDING, _NEW_PRODUCTS, _DEFAULT_OPENERS, _DEFAULT_CLOSERS),
        "shifted": IntentDomain(
            _SHIFTED_WORDING, _NEW_PRODUCTS, ("", "Greetings. ", "Good day. "), ("", " Cheers.", " Regards.")
        ),
    }

    def domains(self) -> list[str]:
        return list(self.DOMAINS)

    def sample(self, rng: random.Random, domain: str) -> tuple[str, str]:
        spec = self.DOMAINS[domain]
        intent = rng.choice(sorted(REPLIES))
        message = rng.choice(spec.wording[intent]).format(product=rng.choice(spec.products))
        prompt = f"{rng.choice(spec.openers)}{message}{rng.choice(spec.closers)}"
        return prompt, REPLIES[intent]
