"""envkit's benchmarks, on demand (never in CI): paired ratios measured in one run.

    python tests/benchmark.py            # render, validate (no engine, no network)
    python tests/benchmark.py --all      # and builds, uv against pip, image sizes

Every comparison runs its sides in turn, round after round, and reports the medians and
their ratio: this machine is shared and noisy, so only figures of one run are compared.
Nothing here asserts a time. hpccm and neurodocker, the CLIs render is compared with, are
installed (pinned) into a venv under $XDG_CACHE_HOME/envkit/bench on first use.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CA = "/etc/ssl/certs/ca-certificates.crt"
NEIGHBOURS = ["hpccm==26.5.0", "neurodocker==2.1.2"]
HPCCM_RECIPE = """\
Stage0 += baseimage(image='debian:bookworm-slim')
Stage0 += apt_get(ospackages=['python3', 'python3-venv', 'libgomp1'])
Stage0 += pip(packages=['paddlepaddle==3.3.1'], pip='pip3')
"""


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "envkit" / "bench"


def neighbours() -> Path:
    """A venv holding hpccm and neurodocker (made once)."""
    venv = cache_dir() / "neighbours"
    if not (venv / "bin" / "neurodocker").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *NEIGHBOURS], check=True,
                       env={**os.environ, "PIP_CERT": os.environ.get("PIP_CERT", CA)},
                       stderr=subprocess.DEVNULL)
    return venv / "bin"


def run(argv: list[str], env: dict[str, str] | None = None, cwd: Path = REPO) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})},
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(argv)} failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - started


def paired(sides: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Each side once per round, in turn; the median seconds of each."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, once in sides.items():
            times[name].append(once())
    return {name: statistics.median(t) for name, t in times.items()}


def report(title: str, medians: dict[str, float], against: str) -> None:
    print(f"\n{title}")
    for name, seconds in medians.items():
        ratio = seconds / medians[against]
        print(f"  {name:<44} {seconds * 1000:9.0f} ms   {ratio:5.2f}x {against}")


def bench_render(rounds: int) -> None:
    tools = neighbours()
    # hpccm's and neurodocker's modules are byte-compiled, as pip installs them; envkit's
    # are too (an editable checkout, or PYTHONDONTWRITEBYTECODE, would compile every run)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "src" / "envkit")],
                   check=True)
    work = Path(tempfile.mkdtemp(prefix="envkit-bench-"))
    recipe = work / "recipe.py"
    recipe.write_text(HPCCM_RECIPE)
    warm = {"ENVKIT_CACHE": str(work / "memo")}
    run([str(BIN / "invoke"), "render", "--recipe", "paddle-cpu"], warm)  # fill the memo
    counter = iter(range(10**6))
    sides = {
        "hpccm --recipe (paddle, pip)": lambda: run([str(tools / "hpccm"), "--recipe",
                                                      str(recipe)]),
        "neurodocker generate docker (apt)": lambda: run(
            [str(tools / "neurodocker"), "generate", "docker", "--pkg-manager", "apt",
             "--base-image", "debian:bookworm-slim", "--install", "python3", "libgomp1"]),
        "python -c 'import invoke' (the floor)": lambda: run(
            [sys.executable, "-c", "import invoke"]),
        "invoke render --recipe paddle-cpu": lambda: run(
            [str(BIN / "invoke"), "render", "--recipe", "paddle-cpu"], warm),
        "invoke render --recipe paddle-cpu (no memo)": lambda: run(
            [str(BIN / "invoke"), "render", "--recipe", "paddle-cpu"],
            {"ENVKIT_CACHE": str(work / f"cold-{next(counter)}")}),
    }
    medians = paired(sides, rounds)
    report(f"render from the command line (median of {rounds} paired rounds)", medians,
           "hpccm --recipe (paddle, pip)")
    shutil.rmtree(work, ignore_errors=True)


def bench_validate(rounds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="envkit-bench-"))
    counter = iter(range(10**6))

    def cold() -> float:
        n = next(counter)
        return run([str(BIN / "invoke"), "validate", "--quiet"],
                   {"ENVKIT_CACHE": str(work / f"c{n}"), "ENVKIT_LINT_CACHE": str(work / f"l{n}")})

    def warm() -> float:
        return run([str(BIN / "invoke"), "validate", "--quiet"],
                   {"ENVKIT_CACHE": str(work / "w"), "ENVKIT_LINT_CACHE": str(work / "wl")})

    warm()
    medians = paired({"invoke validate, empty caches": cold,
                      "invoke validate, unchanged catalog": warm}, rounds)
    report(f"validate of the whole catalog, {os.cpu_count()} cores (median of {rounds})",
           medians, "invoke validate, empty caches")
    shutil.rmtree(work, ignore_errors=True)


def bench_builds() -> None:
    """A cold build (--no-cache), the same again (every layer cached), then with its last
    step edited (only that step runs)."""
    work = Path(tempfile.mkdtemp(prefix="envkit-bench-"))
    text = (REPO / "recipes" / "faiss-cpu.yaml").read_text().replace(
        "name: faiss-cpu", "name: bench-faiss")
    recipe = work / "bench-faiss.yaml"

    def build(last: str, *extra: str) -> float:
        step = f"  - name: the edited last step\n    run: echo {last}\n"
        recipe.write_text(text.replace("\nverify:", f"\n{step}verify:", 1))
        return run([str(BIN / "invoke"), "-r", str(REPO), "build", "--recipe", str(recipe),
                    "--no-lock", "--ca-bundle", CA, "--no-verify", *extra], cwd=work)

    seconds = {"cold (--no-cache)": build("one", "--no-cache"),
               "unchanged (every step cached)": build("one"),
               "last step edited": build("two")}
    report("docker builds of faiss-cpu (one run each)", seconds, "cold (--no-cache)")
    shutil.rmtree(work, ignore_errors=True)


def bench_uv_against_pip() -> None:
    """paddle-full's pip steps into fresh venvs with empty caches: pip resolving, uv
    resolving, uv installing the locked set as builds do."""
    sys.path.insert(0, str(REPO / "src"))
    from envkit.load.catalog import Catalog
    from envkit.plan import locking, make_plan
    from envkit.plan import resolver as resolve

    catalog = Catalog()
    recipe = catalog.find("paddle-full")
    plan = make_plan(recipe, catalog, locker=locking.Locker(catalog, recipe))
    steps = [ps for ps in plan.steps if ps.kind == "pip"]
    work = Path(tempfile.mkdtemp(prefix="envkit-bench-"))
    env = {"PIP_CERT": CA, "SSL_CERT_FILE": CA, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "PIP_CONFIG_FILE": os.devnull, "UV_LINK_MODE": "copy", "UV_COMPILE_BYTECODE": "1"}
    uv = resolve.uv_bin()

    def fresh(way: str) -> str:
        subprocess.run([sys.executable, "-m", "venv", str(work / way)], check=True)
        return str(work / way / "bin" / "python")

    def each(argvs: list[list[str]], extra: dict[str, str]) -> float:
        return sum(run(argv, {**env, **extra}) for argv in argvs)

    files = []
    for ps in steps:
        path = work / f"step-{ps.number}.txt"
        path.write_text(plan.generated[f"files/envkit/lock/{ps.step.locked.file}"])  # type: ignore[attr-defined]
        files.append(path)
    py = fresh("pip")
    seconds = {"pip install (resolves)": each(
        [[py, "-m", "pip", "install", "--index-url", resolve.PYPI, *ps.step.packages]  # type: ignore[attr-defined]
         for ps in steps], {"PIP_CACHE_DIR": str(work / "pip-cache")})}
    py = fresh("uv")
    seconds["uv pip install (resolves)"] = each(
        [[uv, "pip", "install", "--no-config", "--python", py, "--default-index", resolve.PYPI,
          *ps.step.packages] for ps in steps], {"UV_CACHE_DIR": str(work / "uv-cache")})  # type: ignore[attr-defined]
    py = fresh("locked")
    seconds["uv, the locked set (--require-hashes)"] = each(
        [[uv, "pip", "install", "--no-config", "--python", py, "--default-index", resolve.PYPI,
          "--require-hashes", "--no-deps", "-r", str(f)] for f in files],
        {"UV_CACHE_DIR": str(work / "locked-cache")})
    report("paddle-full's packages into a fresh venv, empty caches (one run)", seconds,
           "pip install (resolves)")
    shutil.rmtree(work, ignore_errors=True)


def bench_sizes() -> None:
    """Image sizes against the base: lapack-src's runtime stage and its build stage (what
    a single-stage build ships), built here if missing."""
    def size(image: str) -> int | None:
        done = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", image],
                              capture_output=True, text=True)
        return int(done.stdout) if done.returncode == 0 else None

    work = Path(tempfile.mkdtemp(prefix="envkit-bench-"))
    if size("envkit/lapack-src:latest") is None or size("envkit/lapack-src:build") is None:
        run([str(BIN / "invoke"), "-r", str(REPO), "build", "--recipe", "lapack-src",
             "--ca-bundle", CA], cwd=work)
        argv = ["/usr/bin/docker", "build", "--target", "build", "-t", "envkit/lapack-src:build",
                "--secret", f"id=envkit-ca,src={CA}"]
        for var in ("ENVKIT_CA", "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
                    "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "NODE_EXTRA_CA_CERTS"):
            argv += ["--build-arg", f"{var}=/run/secrets/envkit-ca"]
        run([*argv, str(work / "build" / "lapack-src")], {"DOCKER_BUILDKIT": "1"})
    base = size("envkit/base:bookworm") or 0
    print("\nimage sizes (MB, as docker image inspect says)")
    for image in ("envkit/base:bookworm", "envkit/lapack-src:build", "envkit/lapack-src:latest"):
        got = size(image) or 0
        print(f"  {image:<44} {got / 1e6:9.1f} MB   {got / base if base else 0:5.2f}x base")
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--all", action="store_true",
                        help="also builds, uv against pip, image sizes (engine, network)")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"envkit benchmarks, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
          f"Python {sys.version.split()[0]}")
    bench_render(args.rounds)
    bench_validate(max(3, args.rounds // 2))
    if args.all:
        bench_builds()
        bench_uv_against_pip()
        bench_sizes()


if __name__ == "__main__":
    main()
