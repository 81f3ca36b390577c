"""Proxies: HTTP_PROXY and friends reach builds, host runs and apt's simulation, and no
rendered file, command line or log keeps a proxy's login (the real build: test_e2e)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from backend_fakes import SUCCESS, MakeRecipe, progress_of
from conftest import plan_of, script
from envkit import paths, proxy
from envkit.backends import buildkit, host
from envkit.load.catalog import Catalog
from envkit.plan import make_plan
from envkit.render import FORMATS, render

LOGIN = "http://build-bot:s3cr%40t-pw@proxy.corp:3128"


def test_settings_are_both_spellings_of_each_variable_that_is_set() -> None:
    environ = {"HTTPS_PROXY": LOGIN, "http_proxy": "http://p:1", "NO_PROXY": "localhost,.corp",
               "FTP_PROXY": "", "PATH": "/bin", "HTTP_PROXY_EXTRA": "x"}
    assert proxy.settings(environ) == {"http_proxy": "http://p:1", "HTTPS_PROXY": LOGIN,
                                       "NO_PROXY": "localhost,.corp"}
    assert list(proxy.settings(environ)) == ["http_proxy", "HTTPS_PROXY", "NO_PROXY"]


@pytest.mark.parametrize(("value", "hidden"), [
    (LOGIN, ["build-bot:s3cr%40t-pw", "build-bot:s3cr@t-pw", "s3cr%40t-pw", "s3cr@t-pw"]),
    ("socks5://u:pw12@10.0.0.1:1080, http://tok3n@p:1", ["u:pw12", "tok3n", "pw12"]),
    ("proxy.corp:3128", []),
    ("http://proxy.corp:3128", []),
])
def test_a_login_in_a_proxy_url_is_what_logs_mask(value: str, hidden: list[str]) -> None:
    found = proxy.redactions({"ALL_PROXY": value, "NO_PROXY": "user:pass@x"})
    assert sorted(found) == sorted(hidden)
    assert found == sorted(found, key=len, reverse=True)  # longest first, as redact needs


def test_no_template_declares_a_proxy_argument() -> None:
    """Docker keeps a declared ARG's value in the history; the predefined proxy ARGs, left
    undeclared, reach every RUN and are kept nowhere."""
    for path in paths.templates_dir().rglob("*.j2"):
        text = path.read_text()
        for var in proxy.VARS:
            assert f"ARG {var}" not in text, path


def test_rendered_files_hold_no_proxy_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in proxy.VARS:
        monkeypatch.setenv(var, LOGIN)
    catalog = Catalog()
    plan = make_plan(catalog.find("paddle-cpu"), catalog)
    for fmt in FORMATS:
        text = render(plan, fmt)
        assert "proxy.corp" not in text and "s3cr" not in text, fmt


def test_a_build_reads_proxies_from_its_environment_never_its_command_line(
        tmp_path: Path, full_plan: object) -> None:
    (tmp_path / "canned.txt").write_text(SUCCESS + f"#9 0.1 via {LOGIN}\n")
    client = script(tmp_path / "fake-docker", f"""\
        printf '%s\\n' "$@" > {str(tmp_path / 'argv.txt')!r}
        echo "$HTTPS_PROXY|$no_proxy" > {str(tmp_path / 'env.txt')!r}
        cat {str(tmp_path / 'canned.txt')!r}
        """)
    builder = buildkit.Builder(client=str(client), args=("build",), env=(), about="fake")
    progress, out = progress_of(full_plan)  # type: ignore[arg-type]
    log = tmp_path / "build.log"
    environ = {"HTTPS_PROXY": LOGIN, "no_proxy": "localhost"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in environ.items():
            mp.setenv(key, value)
        outcome = buildkit.build(builder, tmp_path, ["x:1"], {}, progress, log,
                                 env_args=list(proxy.settings(environ)),
                                 redact=proxy.redactions(environ))
    assert outcome.ok
    argv = (tmp_path / "argv.txt").read_text().splitlines()
    assert argv[argv.index("-t") + 2:] == ["--build-arg", "HTTPS_PROXY",
                                           "--build-arg", "no_proxy", str(tmp_path)]
    assert (tmp_path / "env.txt").read_text() == f"{LOGIN}|localhost\n"  # the client has it
    text = log.read_text()
    assert "via http://***@proxy.corp:3128" in text
    assert "s3cr" not in text and "s3cr" not in out.getvalue()


def test_a_host_run_has_the_proxies_and_its_log_masks_their_login(
        recipe: MakeRecipe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", LOGIN)
    target = tmp_path / "env"
    plan = plan_of(recipe("""\
        steps:
          - run: |
              mkdir -p {{ prefix }}
              echo "[envkit] through $HTTPS_PROXY"
              printf '%s' "$HTTPS_PROXY" > {{ prefix }}/seen
        """), {"prefix": str(target)})
    out = io.StringIO()
    host.provision(plan, target, out)
    assert (target / "seen").read_text() == LOGIN  # the script itself has the value
    assert "through http://***@proxy.corp:3128" in out.getvalue()
    for shown in (out.getvalue(), (target / host.LOG).read_text()):
        assert "s3cr" not in shown and "build-bot" not in shown


def test_apt_simulation_gets_the_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from envkit.plan import aptlock

    seen: dict[str, str] = {}

    def run_script(image: str, text: str, files: object,
                   env: dict[str, str], timeout: float) -> tuple[int, str, str]:
        seen.update(env)
        return 0, "", ""

    monkeypatch.setenv("http_proxy", "http://p:3128")
    monkeypatch.setattr(aptlock, "_parse", lambda out, jobs: None)
    engine = SimpleNamespace(run_script=run_script)
    aptlock.simulate(engine, "img", [], {"ENVKIT_MIRROR_APT": "m"})  # type: ignore[arg-type]
    assert seen["http_proxy"] == "http://p:3128" and seen["ENVKIT_MIRROR_APT"] == "m"

