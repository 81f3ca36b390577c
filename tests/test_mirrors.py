"""Mirror profiles: the shipped data, the loader's checks, the rendered candidate lists, and
the bash helper (data/helpers.sh) run for real against a local HTTP server and local git
repositories. No network: a mirror 'that answers' is a server on loopback."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, FlakyServer, git, make_repo
from envkit.diagnostics import EnvkitError
from envkit.plan import mirrors

HELPER = REPO / "src" / "envkit" / "data" / "helpers.sh"
DEAD = "http://127.0.0.1:1/simple"  # nothing listens on port 1: the connect is refused at once
BASE_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}


def helper(script: str, env: dict[str, str] | None = None, *, strict: bool = False,
           cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Source the helper in a clean bash (only PATH and ``env``), then run ``script``."""
    head = "set -euo pipefail; " if strict else ""
    return subprocess.run(["bash", "-c", f'{head}. "$0"; {script}', str(HELPER)],
                          env={**BASE_ENV, **(env or {})}, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def exported(env: dict[str, str], *names: str) -> dict[str, str]:
    """What the helper exports to child processes: ``env`` run in a child after sourcing."""
    done = helper("env", env)
    assert done.returncode == 0, done.stderr
    found = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return {n: found[n] for n in names if n in found}


@pytest.fixture
def live(flaky: FlakyServer) -> str:
    """A local HTTP server: the mirror that answers."""
    return f"{flaky.url}/simple"


@pytest.fixture
def probes(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A PATH whose `timeout` logs each call before running the real one: the helper probes
    through `timeout 5 bash -c ...`, so the log counts probes."""
    bindir, log = tmp_path / "bin", tmp_path / "probes.log"
    bindir.mkdir()
    real = shutil.which("timeout")
    assert real
    shim = bindir / "timeout"
    shim.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{real}" "$@"\n')
    shim.chmod(0o755)
    return {"PATH": f"{bindir}:{BASE_ENV['PATH']}"}, log


# --- picking a mirror at run time -----------------------------------------------------------

def test_a_mirror_that_does_not_answer_is_skipped_and_reported(live: str, probes) -> None:
    env, log = probes
    done = helper('echo "PIP=$PIP_INDEX_URL UV=$UV_DEFAULT_INDEX"',
                  {**env, "ENVKIT_MIRROR_PIP": f"{DEAD} {live}"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"PIP={live} UV={live}"
    assert done.stderr == f"[envkit] pip mirror {DEAD} does not answer; using {live}\n"
    assert len(log.read_text().splitlines()) == 2  # both candidates probed, in order
    assert exported({"ENVKIT_MIRROR_PIP": f"{DEAD} {live}"},
                    "PIP_INDEX_URL", "UV_DEFAULT_INDEX") == {"PIP_INDEX_URL": live,
                                                            "UV_DEFAULT_INDEX": live}


def test_the_first_mirror_that_answers_is_used_silently(live: str) -> None:
    done = helper('echo "$PIP_INDEX_URL"', {"ENVKIT_MIRROR_PIP": f"{live} {DEAD}"})
    assert (done.stdout.strip(), done.stderr) == (live, "")


def test_a_single_candidate_is_used_without_probing(probes) -> None:
    env, log = probes
    done = helper('echo "$PIP_INDEX_URL"', {**env, "ENVKIT_MIRROR_PIP": DEAD})
    assert done.returncode == 0
    assert (done.stdout.strip(), done.stderr) == (DEAD, "")
    assert not log.exists()  # no probe at all


def test_when_no_mirror_answers_the_first_is_kept_and_said(probes) -> None:
    env, log = probes
    other = "http://127.0.0.1:2/simple"
    done = helper('echo "$PIP_INDEX_URL"', {**env, "ENVKIT_MIRROR_PIP": f"{DEAD} {other}"})
    assert done.returncode == 0
    assert done.stdout.strip() == DEAD
    assert done.stderr.splitlines() == [
        f"[envkit] pip mirror {other} does not answer either",
        f"[envkit] no pip mirror answers; trying {DEAD}",
    ]
    assert len(log.read_text().splitlines()) == 2


def test_upstream_marker_ends_with_the_tools_default() -> None:
    done = helper('echo "PIP=${PIP_INDEX_URL-unset} UV=${UV_DEFAULT_INDEX-unset}"',
                  {"ENVKIT_MIRROR_PIP": f"{DEAD} -"})
    assert done.stdout.strip() == "PIP=unset UV=unset"
    assert done.stderr == f"[envkit] pip mirror {DEAD} does not answer; using the default\n"
    # '-' alone, or nothing set: nothing exported, nothing said
    for env in ({"ENVKIT_MIRROR_PIP": "-"}, {}):
        done = helper('echo "PIP=${PIP_INDEX_URL-unset}"', env)
        assert (done.stdout.strip(), done.stderr) == ("PIP=unset", "")


def test_every_probed_tool_is_exported() -> None:
    env = {"ENVKIT_MIRROR_APT": "http://apt.example", "ENVKIT_MIRROR_CONDA": "https://c.example/ana",
           "ENVKIT_MIRROR_PYTHON_BUILD": "https://py.example/python",
           "ENVKIT_MIRROR_GITHUB": "https://gh.example/github.com/"}
    assert exported(env, "ENVKIT_APT_MIRROR", "ENVKIT_CONDA_MIRROR", "PYTHON_BUILD_MIRROR_URL",
                    "GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_0",
                    "ENVKIT_MIRRORS_PICKED") == {
        "ENVKIT_APT_MIRROR": "http://apt.example",
        "ENVKIT_CONDA_MIRROR": "https://c.example/ana",
        "PYTHON_BUILD_MIRROR_URL": "https://py.example/python",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "url.https://gh.example/github.com/.insteadOf",
        "GIT_CONFIG_VALUE_0": "https://github.com/",
        "ENVKIT_MIRRORS_PICKED": "1",
    }
    # the defaults: apt and conda say '-', nothing else is set
    assert exported({}, "ENVKIT_APT_MIRROR", "ENVKIT_CONDA_MIRROR", "PYTHON_BUILD_MIRROR_URL",
                    "GIT_CONFIG_COUNT") == {"ENVKIT_APT_MIRROR": "-", "ENVKIT_CONDA_MIRROR": "-"}


def test_a_child_shell_keeps_the_choice_without_probing_again(probes) -> None:
    env, log = probes
    done = helper('echo "PIP=${PIP_INDEX_URL-unset}"',
                  {**env, "ENVKIT_MIRRORS_PICKED": "1", "ENVKIT_MIRROR_PIP": f"{DEAD} -"})
    assert (done.stdout.strip(), done.stderr) == ("PIP=unset", "")
    assert not log.exists()


# --- GitHub through the mirror, for real with git -------------------------------------------


@pytest.fixture
def github_mirror(tmp_path: Path) -> tuple[Path, str]:
    """tmp/mirror/x/repo.git, a bare repo standing for https://github.com/x/repo.git, and a
    superproject tmp/super whose .gitmodules names that GitHub URL."""
    src = tmp_path / "src"
    commit = make_repo(src, "from the mirror\n")
    (tmp_path / "mirror" / "x").mkdir(parents=True)
    git("clone", "-q", "--bare", str(src), str(tmp_path / "mirror" / "x" / "repo.git"),
         cwd=tmp_path)
    sup = tmp_path / "super"
    sup.mkdir()
    git("init", "-q", "-b", "main", cwd=sup)
    (sup / ".gitmodules").write_text(
        '[submodule "sub"]\n\tpath = sub\n\turl = https://github.com/x/repo.git\n')
    git("add", ".gitmodules", cwd=sup)
    git("update-index", "--add", "--cacheinfo", f"160000,{commit},sub", cwd=sup)
    git("commit", "-qm", "with a submodule", cwd=sup)
    return tmp_path, f"file://{tmp_path}/mirror/"


def _git_env(tmp: Path, mirror: str) -> dict[str, str]:
    # only file:// may be used: a clone that is not rewritten fails at once, never goes online
    return {"HOME": str(tmp), "GIT_CONFIG_NOSYSTEM": "1", "GIT_ALLOW_PROTOCOL": "file",
            "GIT_TERMINAL_PROMPT": "0", "ENVKIT_MIRROR_GITHUB": mirror}


@pytest.mark.skipif(not shutil.which("git"), reason="git not installed")
def test_github_clone_goes_to_the_mirror(github_mirror) -> None:
    tmp, mirror = github_mirror
    done = helper("git clone -q https://github.com/x/repo.git c1 && cat c1/f",
                  _git_env(tmp, mirror), cwd=tmp)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "from the mirror\n"
    # the control: without a github mirror the same clone is not rewritten
    done = helper("git clone -q https://github.com/x/repo.git c2", _git_env(tmp, "-"), cwd=tmp)
    assert done.returncode != 0 and "https" in done.stderr
    assert not (tmp / "c2" / "f").exists()


@pytest.mark.skipif(not shutil.which("git"), reason="git not installed")
def test_github_submodules_go_to_the_mirror(github_mirror) -> None:
    tmp, mirror = github_mirror
    script = ("git clone -q super s1 && cd s1 && git submodule update --init -q "
              "&& cat sub/f && git config --get submodule.sub.url")
    done = helper(script, _git_env(tmp, mirror), cwd=tmp)
    assert done.returncode == 0, done.stderr
    # the submodule came from the mirror; the superproject still names GitHub
    assert done.stdout.splitlines() == ["from the mirror", "https://github.com/x/repo.git"]
    assert not (tmp / "s1" / ".git" / "config").read_text().count("insteadOf")  # nothing written
    done = helper("git clone -q super s2 && cd s2 && git submodule update --init -q",
                  _git_env(tmp, "-"), cwd=tmp)
    assert done.returncode != 0  # the control: GitHub itself is not allowed here


# --- apt sources ----------------------------------------------------------------------------

OS_RELEASE = {
    "debian": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
              'VERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n',
    "ubuntu": 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\n'
              'VERSION_CODENAME=jammy\nID=ubuntu\nID_LIKE=debian\nUBUNTU_CODENAME=jammy\n',
    "fedora": 'NAME="Fedora Linux"\nVERSION_ID=40\nID=fedora\n',
}
APT = "http://apt.example"


def _apt(tmp: Path, os_id: str, mirror: str = APT) -> tuple[subprocess.CompletedProcess[str],
                                                               Path]:
    osr = tmp / "os-release"
    osr.write_text(OS_RELEASE[os_id])
    state = tmp / "state"
    done = helper('envkit_apt_sources; echo "LIST=$ENVKIT_APT_LIST PARTS=$ENVKIT_APT_PARTS"',
                  {"ENVKIT_MIRROR_APT": mirror, "ENVKIT_OS_RELEASE": str(osr),
                   "ENVKIT_APT_STATE": str(state)}, strict=True)
    assert done.returncode == 0, done.stderr
    return done, state


def test_apt_sources_for_debian(tmp_path: Path) -> None:
    done, state = _apt(tmp_path, "debian")
    assert done.stdout.strip() == f"LIST={state}/sources.list PARTS={state}/parts"
    assert (state / "sources.list").read_text() == (
        f"deb {APT}/debian bookworm main\n"
        f"deb {APT}/debian bookworm-updates main\n"
        f"deb {APT}/debian-security bookworm-security main\n")
    assert (state / "parts").is_dir() and not list((state / "parts").iterdir())
    assert done.stderr == ""


def test_apt_sources_for_ubuntu(tmp_path: Path) -> None:
    done, state = _apt(tmp_path, "ubuntu")
    assert done.stdout.strip() == f"LIST={state}/sources.list PARTS={state}/parts"
    assert (state / "sources.list").read_text() == (
        f"deb {APT}/ubuntu jammy main restricted universe multiverse\n"
        f"deb {APT}/ubuntu jammy-updates main restricted universe multiverse\n"
        f"deb {APT}/ubuntu jammy-security main restricted universe multiverse\n")


def test_apt_sources_on_another_system_keep_its_sources(tmp_path: Path) -> None:
    done, state = _apt(tmp_path, "fedora")
    assert done.stdout.strip() == "LIST= PARTS="
    assert done.stderr == ("[envkit] apt mirror: fedora is neither Debian nor Ubuntu; "
                           "keeping its sources\n")
    assert not (state / "sources.list").exists()


def test_apt_sources_without_an_apt_mirror_set_nothing(tmp_path: Path) -> None:
    done, state = _apt(tmp_path, "debian", mirror="-")
    assert (done.stdout.strip(), done.stderr) == ("LIST= PARTS=", "")
    assert not state.exists()


# --- conda ----------------------------------------------------------------------------------

def _condarc(tmp: Path, mirror: str | None, *channels: str) -> dict:
    rc = tmp / "home" / ".condarc"
    env = {"ENVKIT_MIRROR_CONDA": mirror} if mirror else {}
    done = helper("envkit_condarc " + shlex.join([str(rc), *channels]), env, strict=True)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(rc.read_text())


def test_condarc_without_a_conda_mirror(tmp_path: Path) -> None:
    assert _condarc(tmp_path, None) == {"channels": ["conda-forge"], "show_channel_urls": True}
    assert _condarc(tmp_path, "-", "pytorch", "nvidia") == {"channels": ["pytorch", "nvidia"],
                                                            "show_channel_urls": True}


def test_condarc_with_a_conda_mirror(tmp_path: Path) -> None:
    m = "https://mirrors.example/anaconda"
    rc = _condarc(tmp_path, m, "pytorch", "conda-forge")
    assert rc == {
        "channels": ["pytorch", "conda-forge"],
        "show_channel_urls": True,
        "default_channels": [f"{m}/pkgs/main", f"{m}/pkgs/r"],
        "custom_channels": {ch: f"{m}/cloud" for ch in ("conda-forge", "pytorch", "nvidia",
                                                          "bioconda")},
    }


# --- the helper as a shell file -------------------------------------------------------------

def test_helper_passes_shellcheck() -> None:
    tool = Path(sys.executable).parent / "shellcheck"
    exe = str(tool) if tool.exists() else shutil.which("shellcheck")
    if not exe:
        pytest.skip("shellcheck not installed")
    done = subprocess.run([exe, "--rcfile", str(REPO / ".shellcheckrc"), "-s", "bash",
                           str(HELPER)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("env", [
    {},
    {"ENVKIT_MIRROR_PIP": f"{DEAD} http://127.0.0.1:2/x", "ENVKIT_MIRROR_APT": "http://a.example",
     "ENVKIT_MIRROR_CONDA": "- https://c.example", "ENVKIT_MIRROR_GITHUB": "https://g.example/",
     "ENVKIT_MIRROR_PYTHON_BUILD": f"{DEAD} -"},
    {"ENVKIT_MIRRORS_PICKED": "1"},  # a child shell: picked already, nothing else set
], ids=["nothing-set", "everything-set", "picked"])
def test_sourcing_under_strict_mode_never_fails(tmp_path: Path, env: dict[str, str]) -> None:
    env = {**env, "ENVKIT_APT_STATE": str(tmp_path / "state"),
           "ENVKIT_OS_RELEASE": str(tmp_path / "missing")}
    done = helper(f'envkit_apt_sources; envkit_condarc "{tmp_path}/rc"; echo survived', env,
                  strict=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("survived\n")


# --- profiles (Python side) -----------------------------------------------------------------

def test_shipped_profiles_are_complete() -> None:
    known = mirrors.profiles()
    assert mirrors.DEFAULT in known and {"tuna", "aliyun", "ustc"} <= set(known)
    for name, profile in known.items():
        assert profile.urls.get("pip"), f"{name} has no pip index"
        if name != mirrors.DEFAULT:
            assert sorted(profile.urls) == sorted(mirrors.TOOLS), name
            # every fallback chain ends upstream, and the default pip index is a candidate
            assert profile.candidates("pip")[-1] == known[mirrors.DEFAULT].urls["pip"], name
            assert profile.chain[-1].name == mirrors.DEFAULT, name


def test_tuna_candidates_follow_the_fallbacks_in_order_without_duplicates() -> None:
    tuna = mirrors.get("tuna")
    assert [p.name for p in tuna.chain] == ["ustc", "aliyun", "default"]
    assert tuna.candidates("pip") == ["https://pypi.tuna.tsinghua.edu.cn/simple",
                                      "https://mirrors.ustc.edu.cn/pypi/simple",
                                      "https://mirrors.aliyun.com/pypi/simple",
                                      "https://pypi.org/simple"]
    # all three name the same GitHub prefix: listed once, then upstream
    assert tuna.candidates("github") == ["https://gitclone.com/github.com/", "-"]
    assert tuna.goproxy() == ("https://goproxy.cn|https://mirrors.aliyun.com/goproxy|"
                              "https://proxy.golang.org,direct")
    assert tuna.registries() == ["docker.m.daocloud.io"]
    env = dict(tuna.env())
    assert set(env) == {*mirrors.PROBED.values(), "GOPROXY"}
    assert env["ENVKIT_MIRROR_APT"].split() == [*tuna.candidates("apt")[:3], "-"]
    default = mirrors.get(None)
    assert default.name == "default" and default.registries() == []
    assert dict(default.env())["ENVKIT_MIRROR_APT"] == "-"


def _profiles(tmp_path: Path, text: str, name: str) -> dict[str, mirrors.Mirror]:
    path = tmp_path / f"{name}.yaml"  # profiles() is cached per path: one file per case
    path.write_text(text)
    return mirrors.profiles(path)


def test_candidates_stop_at_a_profile_without_that_tool(tmp_path: Path) -> None:
    known = _profiles(tmp_path, """\
default:
  description: upstream
  pip: https://pypi.org/simple
a:
  description: a, then b, then upstream
  fallbacks: [b, default]
  pip: https://a.example/simple
  go: https://a.example/go
b:
  description: b
  pip: https://a.example/simple
  apt: http://b.example
  go: https://b.example/go
  registry: reg.b.example:5000
""", "chain")
    a = known["a"]
    assert a.candidates("pip") == ["https://a.example/simple", "https://pypi.org/simple"]
    assert a.candidates("apt") == ["-"]  # a has none: its default, and that ends the list
    assert known["b"].candidates("apt") == ["http://b.example"]  # no fallbacks: that alone
    assert a.goproxy() == "https://a.example/go|https://b.example/go,direct"
    assert a.registries() == []
    assert known["b"].registries() == ["reg.b.example:5000"]
    assert known["default"].goproxy() == "https://proxy.golang.org,direct"
    assert a.summary() == "a (then b, default)"


def test_profiles_reject_bad_data_with_positions(tmp_path: Path) -> None:
    with pytest.raises(EnvkitError) as err:
        _profiles(tmp_path, """\
default:
  description: upstream
a:
  description: broken
  fallbacks: [nope, a]
  pip: pypi.example/simple
  registry: https://docker.io
""", "bad")
    lines = [str(d) for d in err.value.diagnostics]
    f = tmp_path / "bad.yaml"
    assert any(ln.startswith(f"{f}:5:15: a.fallbacks[0]: unknown profile 'nope'") for ln in lines)
    assert any(ln.startswith(f"{f}:5:21: a.fallbacks[1]: a profile cannot fall back to itself")
               for ln in lines)
    assert any(ln.startswith(f"{f}:6:8: a.pip: not an http(s) URL") for ln in lines)
    assert any(ln.startswith(f"{f}:7:13: a.registry: not a registry host") for ln in lines)
    assert len(lines) == 4, lines


def test_profiles_reject_unknown_keys_and_missing_description(tmp_path: Path) -> None:
    with pytest.raises(EnvkitError) as err:
        _profiles(tmp_path, "default:\n  description: up\nx:\n  colour: red\n", "schema")
    lines = [str(d) for d in err.value.diagnostics]
    f = tmp_path / "schema.yaml"
    assert any(ln.startswith(f"{f}:4:3: x:") and "'colour' was unexpected" in ln for ln in lines)
    assert any(ln.startswith(f"{f}:4:3: x:") and "'description' is a required property" in ln
               for ln in lines)


def test_unknown_profile_name() -> None:
    with pytest.raises(EnvkitError) as err:
        mirrors.get("tunaa")
    assert str(err.value) == ("envkit: --mirror: unknown mirror profile 'tunaa' "
                              "(did you mean 'tuna'?)")


# --- what render writes ---------------------------------------------------------------------

def _render(fmt: str) -> str:
    done = subprocess.run([sys.executable, "-m", "invoke", "render", "--recipe", "faiss-cpu",
                           "--mirror", "tuna", "--format", fmt], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("fmt", ["shell", "dockerfile"])
def test_render_carries_every_tools_tuna_mirror(fmt: str) -> None:
    out = _render(fmt)
    pattern = (r"^ARG (\w+)=\"(.*)\"$" if fmt == "dockerfile" else r"^export (\w+)='(.*)'$")
    found = {k: v for k, v in re.findall(pattern, out, re.M)
             if k.startswith("ENVKIT_MIRROR_") or k == "GOPROXY"}
    tuna = mirrors.get("tuna")
    assert found == dict(tuna.env())
    first = {"ENVKIT_MIRROR_PIP": "https://pypi.tuna.tsinghua.edu.cn/simple",
             "ENVKIT_MIRROR_APT": "http://mirrors.tuna.tsinghua.edu.cn",
             "ENVKIT_MIRROR_CONDA": "https://mirrors.tuna.tsinghua.edu.cn/anaconda",
             "ENVKIT_MIRROR_GITHUB": "https://gitclone.com/github.com/",
             "ENVKIT_MIRROR_PYTHON_BUILD": "https://registry.npmmirror.com/-/binary/python",
             "GOPROXY": "https://goproxy.cn"}
    for var, url in first.items():
        assert re.split(r"[ |,]", found[var])[0] == url, var
    assert ", mirror: tuna\n" in out
    if fmt == "dockerfile":
        assert "# invoke build pulls a missing base image through docker.m.daocloud.io." in out
        assert "\nARG BASH_ENV=/usr/local/lib/envkit/helpers.sh\n" in out
    else:  # the helper is inlined, after the lists it reads
        assert out.index("envkit_mirror_pick() {") > out.index("export ENVKIT_MIRROR_PIP=")
