"""Models: registered models with their aliases; a model's versions; one version's lineage (data →
run → version → deployment traffic), model card and gates."""

from __future__ import annotations

from starlette.responses import Response

from llmops.dashboard.access import PageRule
from llmops.dashboard.routing import PageRequest, PageRoute
from llmops.errors import InvalidInput
from llmops.registry.cards import render_card
from llmops.registry.client import Registry
from llmops.registry.lineage import lineage
from llmops.security.roles import Role

GATES_PREFIX = "gates/"


def models(page: PageRequest) -> Response:
    return page.render("models.html", models=Registry.from_home(page.ui.home).list_models())


def model(page: PageRequest) -> Response:
    registry = Registry.from_home(page.ui.home)
    name = page.path("name")
    versions = sorted(registry.list_versions(name), key=lambda v: -v.version)
    return page.render("model.html", name=name, versions=versions)


def version(page: PageRequest) -> Response:
    registry = Registry.from_home(page.ui.home)
    number = page.path("version")
    if not number.isdigit():
        raise InvalidInput(f"version {number!r} is not a number", param="version")
    ref = f"{page.path('name')}@{number}"
    found = lineage(registry, ref)
    gates = {
        key.removeprefix(GATES_PREFIX): value
        for key, value in found.version.tags.items()
        if key.startswith(GATES_PREFIX) and isinstance(value, dict)
    }
    return page.render("version.html", lineage=found, card=render_card(registry, ref), gates=gates)


ROUTES = [
    PageRoute("/models", models, PageRule(Role.DEVELOPER)),
    PageRoute("/models/{name}", model, PageRule(Role.DEVELOPER)),
    PageRoute("/models/{name}/{version}", version, PageRule(Role.DEVELOPER)),
]
