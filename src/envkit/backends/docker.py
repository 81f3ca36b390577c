"""The Docker backend (``--target docker``): BuildKit through the docker CLI, the engine
through its SDK (images, check containers, bases imported without a registry)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from envkit.backends import (
    BuildRequest,
    Image,
    NoBackend,
    backend,
    baseimage,
    buildkit,
    engine,
    made_by,
)
from envkit.checks import Runner

NAME = "docker"


class Docker:
    name = NAME
    gpu_fix = engine.GPU_FIX

    def __init__(self, client: Any, client_cli: str = ""):
        self.client, self.client_cli = client, client_cli
        self._builder: buildkit.Builder | None = None

    def builder(self) -> buildkit.Builder:
        if self._builder is None:
            self._builder = buildkit.choose(self.client_cli)
        return self._builder

    def about(self) -> str:
        return self.builder().about

    def image(self, ref: str) -> Image | None:
        found = engine.image(self.client, ref)
        if found is None:
            return None
        return Image(str(found.id), dict(found.labels or {}), int(found.attrs.get("Size", 0)))

    def tag(self, image: Image, repo: str, tag: str) -> None:
        self.client.images.get(image.id).tag(repo, tag)

    def ensure_base(self, ref: str, out: TextIO, registries: list[str]) -> str:
        return baseimage.ensure(self.client, ref, out, registries)

    def make_base(self, suite: str, tag: str, mirror: str, out: TextIO) -> str:
        return baseimage.make(self.client, suite, tag, mirror, out)

    def build(self, request: BuildRequest) -> buildkit.Outcome:
        progress = buildkit.Progress(request.titles,
                                     request.steps.buildkit(),
                                     request.out, request.verbose)
        return buildkit.build(self.builder(), request.context, request.tags, request.labels,
                              progress, request.log, secrets=request.secrets,
                              build_args=request.build_args, env_args=request.env_args,
                              no_cache=request.no_cache, redact=request.redact,
                              network=request.network)

    def save(self, ref: str, path: Path) -> None:
        engine.save(self.client, ref, path)

    def load(self, path: Path) -> None:
        engine.load(self.client, path)

    def checks(self, image: Image, name: str, gpu: bool, out: TextIO) -> Runner:
        return engine.container_runner(self.client, image.id, name=name, gpu=gpu)

    def gpu(self) -> bool:
        return engine.gpu_runtime(self.client)

    def sweep(self) -> int:
        return engine.sweep_checks(self.client)

    def lost(self) -> str:
        return engine.lost()

    def provenance(self, ref: str) -> tuple[str, str]:
        found = engine.image(self.client, ref)
        if found is None:
            return "", ""
        digests = found.attrs.get("RepoDigests") or []
        return made_by(found.labels or {}, str(found.attrs.get("Created", "")), str(found.id),
                       bool(digests)), (digests[0] if digests else "")

    def run_script(self, ref: str, script: str, files: dict[str, bytes], env: dict[str, str],
                   timeout: float, collect: tuple[str, Path] | None = None
                   ) -> tuple[int, str, str]:
        return engine.run_script(self.client, ref, script, files, env, timeout, collect)


@backend(NAME, order=10)
def connect() -> Docker:
    try:
        return Docker(engine.connect())
    except engine.NoEngine as exc:
        raise NoBackend(exc.diagnostics) from None
