"""GPU: checks of a plan that needs CUDA get every GPU when the engine has a GPU runtime (the
device request unit-tested: no GPU here), and validate compares a CUDA base image's CUDA with
the one the wheels are built for, naming the driver that needs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from conftest import plan_of, problems
from envkit.backends import engine
from envkit.load.catalog import Catalog
from envkit.plan import make_plan


class Container:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")

    def wait(self, timeout: float) -> dict[str, int]:
        return {"StatusCode": 0}

    def logs(self, stdout: bool, stderr: bool) -> bytes:
        return b"ok\n"

    def remove(self, force: bool) -> None:
        self.calls.append("remove")


def client(runtimes: dict[str, Any] | None = None) -> tuple[Any, list[dict[str, Any]]]:
    created: list[dict[str, Any]] = []

    def create(ref: str, **kw: Any) -> Container:
        created.append(kw)
        return Container()

    return SimpleNamespace(containers=SimpleNamespace(create=create),
                           info=lambda: {"Runtimes": runtimes or {"runc": {}}}), created


def test_a_check_container_gets_every_gpu_when_asked() -> None:
    fake, created = client()
    run = engine.container_runner(fake, "envkit/x:1", gpu=True)
    assert run(["nvidia-smi"]) == (0, "ok\n")
    [request] = created[0]["device_requests"]
    assert (request["Count"], request["Capabilities"]) == (-1, [["gpu"]])  # --gpus all
    assert created[0]["network_disabled"] is True
    run = engine.container_runner(fake, "envkit/x:1")
    run(["true"])
    assert "device_requests" not in created[1]


def test_the_engine_has_a_gpu_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert engine.gpu_runtime(client({"nvidia": {}, "runc": {}})[0])
    assert not engine.gpu_runtime(client({"runc": {}})[0])
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/" + name)  # the toolkit's hook
    assert engine.gpu_runtime(client({"runc": {}})[0])

    def broken() -> Any:
        raise OSError("gone")

    assert not engine.gpu_runtime(SimpleNamespace(info=broken))


@pytest.mark.parametrize("recipe, settings, cuda, gpu", [
    ("pytorch-gpu", {}, "12.4", True), ("pytorch-gpu", {"cuda": "11.8"}, "11.8", True),
    ("paddle-gpu", {}, "12.6", True), ("faiss-gpu", {}, "", True),
    ("cuda-toolkit", {}, "12.4", True), ("pytorch-cpu", {}, "", False),
    ("faiss-src", {}, "", False), ("faiss-src", {"gpu": "true"}, "", True),
    ("paddle-cpu", {}, "", False)])
def test_which_plans_want_a_gpu(catalog: Catalog, recipe: str, settings: dict[str, str],
                                cuda: str, gpu: bool) -> None:
    plan = make_plan(catalog.find(recipe), catalog, settings)
    assert (plan.cuda, plan.needs_gpu) == (cuda, gpu)


def test_the_checks_run_with_the_gpus_only_where_there_are(monkeypatch, catalog) -> None:
    from envkit.backends.docker import Docker
    from envkit.cli import build

    seen: dict[str, Any] = {}
    monkeypatch.setattr(engine, "sweep_checks", lambda c: 0)
    monkeypatch.setattr(engine, "container_runner",
                        lambda c, ref, name="", gpu=False: seen.update(gpu=gpu))
    image = SimpleNamespace(id="sha256:1")
    plan = make_plan(catalog.find("pytorch-gpu"), catalog)
    for runtimes, expected in (({"nvidia": {}}, True), ({"runc": {}}, False)):
        monkeypatch.setattr(engine, "gpu_runtime", lambda c, r=runtimes: "nvidia" in r)
        import io

        out = io.StringIO()
        build._checks_in(Docker(object()), image, "envkit/pytorch-gpu", out, plan)
        assert seen["gpu"] is expected
        assert ("the checks run with the GPUs (CUDA 12.4)" if expected else
                "no GPU runtime on this engine: the checks run without a GPU") in out.getvalue()
    out = io.StringIO()
    build._checks_in(Docker(object()), image, "envkit/paddle-cpu", out,
                     make_plan(catalog.find("paddle-cpu"), catalog))
    assert seen["gpu"] is False and out.getvalue() == ""


def test_a_cuda_base_that_is_not_the_wheels_cuda_is_an_error(write) -> None:
    def recipe(base: str) -> Any:
        return write(f"""
            name: t
            description: d
            version: 1.0.0
            base: {base}
            steps:
              - venv: {{path: /opt/v}}
              - pip: ["torch==2.5.1+cu124"]
        """)

    [line] = problems(recipe("nvidia/cuda:11.8.0-cudnn8-devel-ubuntu22.04"))
    assert (":5:7: base: the base nvidia/cuda:11.8.0-cudnn8-devel-ubuntu22.04 has CUDA 11.8, "
            "but the plan's packages are built for CUDA 12.4 (which needs NVIDIA driver >="
            in line), line
    assert ("use nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04, or wheels built for CUDA 11.8, or "
            "a base without CUDA (the wheels bring their runtime)") in line
    # the same CUDA: fine; a --base override is the one named
    plan_of(recipe("nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04"))
    found = problems_with_base(recipe("debian:bookworm-slim"),
                               "nvidia/cuda:12.1.1-cudnn8-devel-ubuntu22.04")
    assert found and found[0].startswith("--base: base: the base nvidia/cuda:12.1.1"), found


def problems_with_base(path: Any, base: str) -> list[str]:
    from envkit.diagnostics import EnvkitError

    try:
        plan_of(path, base=base)
    except EnvkitError as exc:
        return [str(d) for d in exc.diagnostics]
    return []
