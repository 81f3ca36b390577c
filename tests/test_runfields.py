"""How an image runs: workdir, expose, entrypoint, cmd (exec form, quoted like every value),
the requiring recipe's winning field by field, and verify's check that each port answers."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import plan_of, problems, run_cli
from envkit.render import render

RUNS = """
    params:
      port: {type: int, default: 8000, minimum: 1, maximum: 65535}
    workdir: /srv/app
    expose: ["{{ port }}", "9000/udp"]
    entrypoint: [python3, -m]
    cmd: [http.server, "{{ port }}"]
    steps: [{run: "true"}]
"""


def test_the_fields_render_as_instructions_in_exec_form(recipe) -> None:
    plan = plan_of(recipe(RUNS))
    assert (plan.workdir, plan.expose) == ("/srv/app", ["8000/tcp", "9000/udp"])
    assert (plan.entrypoint, plan.cmd) == (["python3", "-m"], ["http.server", "8000"])
    dockerfile = render(plan, "dockerfile")
    block = dockerfile[dockerfile.index("# [envkit] How the image runs."):
                       dockerfile.index("# Labels last")]
    assert block.splitlines()[1:] == [
        'WORKDIR "/srv/app"', "EXPOSE 8000/tcp", "EXPOSE 9000/udp",
        'ENTRYPOINT ["python3", "-m"]', 'CMD ["http.server", "8000"]', ""]
    assert "How the image runs" not in render(plan, "shell")  # a host runs nothing


def test_hostile_arguments_stay_literal_json(recipe) -> None:
    plan = plan_of(recipe("""
        cmd: ["a\\"b", "$(id)", "x\\\\", "line\\nbreak", "ü"]
        steps: [{run: "true"}]
    """))
    dockerfile = render(plan, "dockerfile")
    line = next(ln for ln in dockerfile.splitlines() if ln.startswith("CMD "))
    assert json.loads(line[4:]) == ['a"b', "$(id)", "x\\", "line\nbreak", "ü"]


def test_the_requiring_recipe_wins_field_by_field(write, recipe) -> None:
    write("""
        name: lower
        description: l
        version: 1.0.0
        base: debian:bookworm-slim
        workdir: /lower
        cmd: [lower-cmd]
        expose: [1234]
        steps: [{run: "true"}]
    """, "lower")
    plan = plan_of(recipe("requires: [lower]\ncmd: [upper-cmd]\nsteps: [{run: 'true'}]\n"))
    assert (plan.workdir, plan.cmd, plan.expose) == ("/lower", ["upper-cmd"], ["1234/tcp"])


@pytest.mark.parametrize("body, text", [
    ("workdir: srv\n", "workdir: must be an absolute path"),
    ("expose: [70000]\n", "expose[0]"),
    ("expose: ['80/sctp']\n", "'80/sctp' is not a port (1-65535, optionally /tcp or /udp)"),
    ("expose: ['{{ name }}']\nparams: {name: {type: string, default: web}}\n",
     "'web' is not a port"),
    ("entrypoint: []\n", "entrypoint"),
    ("cmd: [1]\n", "cmd[0]"),
])
def test_bad_run_fields_are_errors_at_their_line(recipe, body: str, text: str) -> None:
    found = problems(recipe(body + "steps: [{run: 'true'}]\n"))
    assert found and any(text in line for line in found), found


def test_each_tcp_port_gets_a_check_that_runs_the_command(recipe) -> None:
    plan = plan_of(recipe(RUNS))
    assert not [c for c in [*plan.checks, *plan.build_checks] if "answers on port" in c.label()]
    [check] = plan.image_checks  # only an image runs it: on a host the port may be another's
    assert check.label() == "the image's command answers on port 8000"
    argv = check.command()
    assert argv[:2] == ["bash", "-c"] and argv[3:] == ["envkit-port", "8000", "60", "python3",
                                                        "-m", "http.server", "8000"]
    assert check.judge(0, "port 8000 answers\n")[0]
    assert not check.judge(1, "the command exited (2) before port 8000 answered:\n")[0]
    # no command: nothing to start, so no check
    plan = plan_of(recipe("expose: [80]\nsteps: [{run: 'true'}]\n"))
    assert not plan.image_checks


def test_the_port_script_itself(tmp_path) -> None:
    """The check's script with a real server and a command that exits at once."""
    import socket

    from envkit.plan import _PORT_SCRIPT
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = subprocess.run(["bash", "-c", _PORT_SCRIPT, "envkit-port", str(port), "20",
                           "python3", "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 0 and done.stdout == f"port {port} answers\n", done
    done = subprocess.run(["bash", "-c", _PORT_SCRIPT, "envkit-port", str(port), "20",
                           "bash", "-c", "echo broken >&2; exit 3"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stdout.startswith(f"the command exited (3) before port {port} answered:")
    assert "broken" in done.stdout


def test_invoke_list_shows_how_an_image_runs() -> None:
    done = run_cli("invoke", "list")
    assert done.returncode == 0, done.stderr
    assert '   runs: expose 8888/tcp; cmd ["jupyter-server-start"]' in done.stdout


@pytest.mark.parametrize("value", ["80", "80/tcp;x", "80/tcp\nRUN id", "/tcp", "123456/tcp"])
def test_the_port_filter_lets_only_a_port_through(value: str) -> None:
    from envkit.render.quote import QuoteError, df_port

    with pytest.raises(QuoteError):
        df_port(value)
    assert df_port("8888/udp") == "8888/udp"
