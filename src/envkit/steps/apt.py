"""apt: Debian packages, from the image's or host's apt sources."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envkit import grammar
from envkit.steps import Problem, Step, each, kind, strings


@kind
@dataclass
class Apt(Step):
    kind = "apt"
    summary = "Install Debian packages with apt-get (no recommends)."
    slow = True  # fetches or builds: minutes, not seconds
    properties = {
        "packages": strings(minItems=1, description="Package names, optionally name=version."),
    }
    required = ("packages",)
    shorthand = "packages"
    # The lists and the .deb cache live in cache mounts, so no layer keeps them.
    cache_mounts = ("/var/cache/apt", "/var/lib/apt")

    packages: list[str]

    def check(self) -> list[Problem]:
        return each(self.packages, grammar.apt_package, ("packages",))

    def lock_inputs(self) -> dict[str, Any] | None:
        return {"packages": self.packages}

    def title(self) -> str:
        return "apt " + " ".join(self.packages)
