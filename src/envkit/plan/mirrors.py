"""Mirror profiles, kept as data in ``data/mirrors.yaml`` and loaded once.

A profile names a mirror per tool and may list fallback profiles. The rendered
outputs carry, per tool, the candidates in order; the helper ``data/helpers.sh``
(sourced before every step) exports the first that answers and says so when it
skips one. Go does its own fallback (``GOPROXY`` with ``|``); base images are
pulled through the ``registry`` mirrors by ``invoke build``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envkit import grammar, paths
from envkit.diagnostics import EnvkitError, did_you_mean, error
from envkit.load.yamlsrc import load_file

DEFAULT = "default"
# Tools whose mirror the helper picks at run time, and the variable listing the candidates.
PROBED = {"pip": "ENVKIT_MIRROR_PIP", "apt": "ENVKIT_MIRROR_APT",
          "conda": "ENVKIT_MIRROR_CONDA", "github": "ENVKIT_MIRROR_GITHUB",
          "python_build": "ENVKIT_MIRROR_PYTHON_BUILD",
          "python_standalone": "ENVKIT_MIRROR_PYTHON_STANDALONE"}
TOOLS = (*PROBED, "go", "registry")
UPSTREAM = "-"  # in a candidate list: the tool's own default, always available
# Every profile: pip and uv retry and time out on a flaky network (a recipe's env wins).
NETWORK_ENV = (("PIP_RETRIES", "5"), ("PIP_DEFAULT_TIMEOUT", "60"),
               ("UV_HTTP_RETRIES", "5"), ("UV_HTTP_TIMEOUT", "60"))
# The helpers' own downloads and clones: tries per source, the first back-off (seconds,
# decimals allowed), a stall's limit. Their defaults live in the helpers; a Dockerfile
# declares them without a value so a build takes yours (a host script reads them anyway).
RETRY_ENV = ("ENVKIT_RETRIES", "ENVKIT_RETRY_DELAY", "ENVKIT_STALL_TIMEOUT")

_URL = {"type": "string", "minLength": 1}
_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {
        "type": "object",
        "properties": {
            "description": {"type": "string"},
            "fallbacks": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            **{tool: _URL for tool in TOOLS},
        },
        "required": ["description"],
        "additionalProperties": False,
    },
}


@dataclass(frozen=True)
class Mirror:
    name: str
    description: str
    urls: dict[str, str]  # tool -> its mirror in this profile alone
    chain: tuple[Mirror, ...] = field(default=(), compare=False, repr=False)  # fallbacks

    def candidates(self, tool: str) -> list[str]:
        """This profile's mirror for ``tool``, then its fallbacks' in order; a profile
        without one means the tool's own default, which ends the list."""
        out: list[str] = []
        for profile in (self, *self.chain):
            url = profile.urls.get(tool, UPSTREAM)
            if url not in out:
                out.append(url)
            if url == UPSTREAM:
                break
        return out

    @property
    def pip_index(self) -> str:
        return self.urls.get("pip", "")

    def goproxy(self) -> str:
        urls = [u for u in self.candidates("go") if u != UPSTREAM]
        # '|' moves to the next proxy on any error, not only on 404 (Go >= 1.15)
        return "|".join(urls or ["https://proxy.golang.org"]) + ",direct"

    def env(self) -> list[tuple[str, str]]:
        """What the outputs set before the helper runs: candidate lists and GOPROXY."""
        pairs = [(var, " ".join(self.candidates(tool))) for tool, var in PROBED.items()]
        return [*pairs, ("GOPROXY", self.goproxy())]

    def registries(self) -> list[str]:
        return [r for r in self.candidates("registry") if r != UPSTREAM]

    def summary(self) -> str:
        names = [self.name, *(p.name for p in self.chain)]
        return names[0] + (f" (then {', '.join(names[1:])})" if len(names) > 1 else "")


def _check(name: str, spec: dict[str, Any], known: dict[str, Any]) -> list[tuple[Any, str]]:
    problems = []
    for tool in TOOLS:
        if tool in spec:
            check = grammar.image_registry if tool == "registry" else grammar.url
            if msg := check(spec[tool]):
                problems.append(((name, tool), msg))
    for i, other in enumerate(spec.get("fallbacks", [])):
        if other not in known or other == name:
            problems.append(((name, "fallbacks", i), f"unknown profile '{other}'"
                             if other != name else "a profile cannot fall back to itself"))
    return problems


@functools.cache
def profiles(path: Path | None = None) -> dict[str, Mirror]:
    doc = load_file(path or paths.data_dir() / "mirrors.yaml")
    problems = doc.schema_problems(_SCHEMA, doc.data)
    data = doc.data or {}
    if not problems:
        for name, spec in data.items():
            problems += [doc.diag(where, msg) for where, msg in _check(name, spec, data)]
    if problems:
        raise EnvkitError(problems)
    alone = {name: Mirror(name, spec["description"], {t: spec[t] for t in TOOLS if t in spec})
             for name, spec in data.items()}
    return {name: Mirror(m.name, m.description, m.urls,
                         tuple(alone[f] for f in data[name].get("fallbacks", [])))
            for name, m in alone.items()}


def get(name: str | None) -> Mirror:
    known = profiles()
    name = name or DEFAULT
    if name not in known:
        raise error(f"unknown mirror profile '{name}'", path="--mirror",
                    hint=did_you_mean(name, known) or "known: " + ", ".join(sorted(known)))
    return known[name]
