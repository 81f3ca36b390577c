"""End to end, on a real Docker engine: secrets leave no trace in the image, its history, its
labels, the rendered files or the logs; hostile values in a recipe arrive literally and run
nothing. ``-m docker``; the base image comes from conftest's fixture (made by `invoke base`).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import textwrap
import uuid
from pathlib import Path

import pytest

from conftest import FlakyServer, bridge_gateway, envkit, show, simple_index
from test_e2e import HOST_CA, _record, image_bytes


@pytest.fixture
def private_index(tmp_path: Path) -> FlakyServer:
    root = tmp_path / "www"
    root.mkdir()
    server = FlakyServer(root, host="0.0.0.0")  # build containers reach it on the bridge
    simple_index(root, "envkit-probe", "1.0")
    server.login = f"envkit:pw-{uuid.uuid4().hex}"
    yield server  # type: ignore[misc]
    server.close()


@pytest.mark.docker
def test_secrets_reach_only_their_steps_and_leave_no_trace(
        base: str, private_index: FlakyServer, tmp_path: Path) -> None:
    password = private_index.login.split(":", 1)[1]
    token = f"tok-{uuid.uuid4().hex}"
    gateway = bridge_gateway()
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine {gateway} login envkit password {password}\n")
    (tmp_path / "private.yaml").write_text(textwrap.dedent(f"""\
        name: private
        description: a package from an index that needs a login, and an API token
        version: 1.0.0
        requires: [python-venv]
        secrets:
          index-login: {{env: NETRC, description: .netrc with the index's login}}
          api-token: {{env: API_TOKEN, as: value}}
        steps:
          - name: the private package
            secrets: [index-login]
            pip:
              packages: ["envkit-probe==1.0"]
              index: "http://{gateway}:{private_index.port}/simple"
              options: [--no-cache]
          - name: a careless step that prints its secrets
            secrets: [api-token, index-login]
            run: |
              [ "$(printf %s "$API_TOKEN" | sha256sum | cut -c1-64)" = \\
                {hashlib.sha256(token.encode()).hexdigest()} ]
              echo "token: $API_TOKEN"
              cat "$NETRC"
          - name: a step without secrets sees none
            run: |
              [ -z "${{NETRC:-}}" ] && [ -z "${{API_TOKEN:-}}" ]
              [ ! -e /run/secrets/index-login ] && [ ! -e /run/secrets/api-token ]
              touch /opt/envkit/no-secrets-here
        verify:
          - python_import: {{module: envkit_probe, version: "==1.0"}}
          - file_exists: /opt/envkit/no-secrets-here
        """))
    tag = f"envkit-test/private:{uuid.uuid4().hex[:8]}"
    args = ("build", "--recipe", "./private.yaml", "--base", base, "--tag", tag,
            "--ca-bundle", HOST_CA, "--no-cache")
    missing = envkit(*args, cwd=tmp_path)
    assert missing.returncode == 1, show(missing)
    lines = missing.stderr.splitlines()
    assert len(lines) == 2 and "secret 'index-login' is required and was not given" in lines[0]
    assert "secret 'api-token' is required and was not given" in lines[1]
    assert "envkit: building" not in missing.stdout  # refused before any build started

    done = envkit(*args, "--secret", f"id=index-login,src={netrc}", cwd=tmp_path,
                  env={"ENVKIT_SECRET_API_TOKEN": token})
    try:
        assert done.returncode == 0, show(done)
        # python-venv's two, ours, and the installed set against the lock made for this build
        # (with the login: uv read the .netrc as the step did)
        assert "all 5 checks passed" in done.stdout
        assert "PASS  installed packages match the lock" in done.stdout
        assert private_index.hits.get("/simple/envkit-probe/", 0) >= 1
        log = (tmp_path / "build" / "private" / "build.log").read_text()
        assert "token: ***" in log  # the careless step's output, masked

        hits: list[str] = []
        searched = 0
        for name, data in image_bytes(tag, tmp_path):  # every file of every layer
            searched += 1
            if password.encode() in data or token.encode() in data:
                hits.append(name)
        assert searched > 1000 and hits == []
        _record({"secret_search": tag, "files_searched": searched, "hits": len(hits)})
        for command in (["docker", "history", "--no-trunc", tag], ["docker", "inspect", tag]):
            text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            assert password not in text and token not in text and str(netrc) not in text
        for path in [*(tmp_path / "build").rglob("*"), tmp_path / "private.yaml"]:
            if path.is_file():
                data = path.read_bytes()
                assert password.encode() not in data and token.encode() not in data, path
        assert password not in done.stdout + done.stderr
        assert token not in done.stdout + done.stderr
        inside = subprocess.run(["docker", "run", "--rm", tag, "bash", "-c",
                                 "ls -A /run/secrets 2>/dev/null | wc -l; env | grep -c -e "
                                 "NETRC -e API_TOKEN || true"],
                                capture_output=True, text=True, check=True)
        assert inside.stdout.split() == ["0", "0"]
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


@pytest.mark.docker
def test_an_image_with_a_user_runs_and_verifies_as_that_user(
        base: str, tmp_path: Path) -> None:
    (tmp_path / "nonroot.yaml").write_text(textwrap.dedent(f"""\
        name: nonroot
        description: the image runs as uid 1234, who cannot change what the steps installed
        version: 1.0.0
        base: {base}
        user: {{name: ml, uid: 1234}}
        steps:
          - run: mkdir -p /opt/envkit && echo installed > /opt/envkit/tool
        verify:
          - command: {{argv: [id, -u], output: "^1234$"}}
          - command: {{argv: [bash, -c, 'echo "$HOME $PWD"'], output: "^/home/ml /home/ml$"}}
          - name: what root installed is read-only to the user
            command: {{argv: [bash, -c, 'cat /opt/envkit/tool && ! touch /opt/envkit/tool']}}
        """))
    tag = f"envkit-test/nonroot:{uuid.uuid4().hex[:8]}"
    done = envkit("build", "--recipe", "./nonroot.yaml", "--tag", tag, cwd=tmp_path)
    try:
        assert done.returncode == 0, show(done)
        assert "all 3 checks passed" in done.stdout
        user = subprocess.run(["docker", "inspect", "-f", "{{.Config.User}}", tag],
                              capture_output=True, text=True, check=True).stdout.strip()
        assert user == "1234:1234"
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


# --- hostile values through a real build ----------------------------------------------------

# The strongest payloads: each breaks out of one kind of quoting if any quoting is wrong.
DOCKER_PAYLOADS = ["$(touch /PWNED)", "`touch /PWNED`", "'; touch /PWNED; echo '",
                   '"; touch /PWNED; echo "', "a;touch${IFS}/PWNED", "x && touch /PWNED",
                   "${HOME} $$ \\$(touch /PWNED)", "ünïcødé ✓ 日本"]
NOT_IN_DOCKER = {"run-workdir"}  # its folder would have to exist first; bash tests cover it


def _docker_cases() -> list[object]:
    from test_injection import FIELDS

    return [pytest.param(field, id=field) for field in FIELDS if field not in NOT_IN_DOCKER]


@pytest.mark.docker
@pytest.mark.parametrize("field", _docker_cases())
def test_hostile_values_arrive_literally_in_a_real_build(
        base: str, tmp_path: Path, field: str) -> None:
    """Every accepted payload goes into ``field`` of one recipe, a step each (each below its
    own prefix, so no step finds another's output), built for real, with argv-recording
    stand-ins for apt-get, pip's python3, git, cmake and curl copied into the image first; the
    calls recorded inside the image are exactly the expected ones, step after step, and no
    /PWNED exists anywhere in it."""
    from conftest import problems
    from test_injection import (
        CURL_STUB,
        EXTRA,
        FIELDS,
        GIT_STUB,
        STUB,
        _expected_calls,
        _fits,
        yq,
    )

    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in ("apt-get", "python3", "git", "cmake", "curl", "uv"):
        (stubs / name).write_text({"curl": CURL_STUB, "git": GIT_STUB}.get(name, STUB))
    (tmp_path / "data.txt").write_text("data\n")
    body, _ = FIELDS[field]

    def recipe(description: str, steps: str) -> str:
        return textwrap.dedent(f"""\
            name: inj
            description: {yq(description)}
            version: 1.0.0
            base: {base}
            steps:
              - name: stand-ins for the tools that would need the network
                copy: {{src: stubs, dest: /usr/local/sbin, mode: "0755"}}
              # envkit's own variables are no recipe's to set (ENVKIT_*): the test hands
              # the stand-ins' log and uv to every later RUN through the helpers it sources
              - name: the stand-ins' log and uv
                run: >-
                  printf 'export ENVKIT_TEST_LOG=/var/log/envkit-calls
                  ENVKIT_UV=/usr/local/sbin/uv\\n' >> /usr/local/lib/envkit/helpers.sh
            """) + steps

    def steps_of(value: str, prefix: str) -> str:
        return body(value).rstrip("\n").replace("{{ prefix }}", prefix) + "\n"

    # the payloads, then values that look hostile but fit the field's grammar (a strict one,
    # like apt's, refuses every payload: then only those get built)
    tried, accepted = 0, []
    for value in [*DOCKER_PAYLOADS, *EXTRA.get(field, []), "plain"]:
        if not _fits(field, value):
            continue
        tried += 1
        if field == "copy-src":
            (tmp_path / value).write_text("data\n")
        single = tmp_path / "inj.yaml"
        single.write_text(recipe(f"hostile {field}: {value}", steps_of(value, "/opt/envkit")))
        if not problems(single):  # else refused, with a diagnostic (test_injection checks it)
            accepted.append(value)
    assert tried and accepted, f"no payload was accepted for {field}"

    prefixes = [f"/opt/envkit/{i}" for i in range(len(accepted))]
    description = f"hostile {field}: " + " | ".join(accepted)
    (tmp_path / "inj.yaml").write_text(recipe(description, "".join(
        steps_of(value, prefix) for value, prefix in zip(accepted, prefixes, strict=True))))
    assert not problems(tmp_path / "inj.yaml"), "each value was accepted alone"
    tag = f"envkit-test/inj:{uuid.uuid4().hex[:8]}"
    # --no-lock: the stand-ins install nothing, so there is nothing to lock
    done = envkit("build", "--recipe", "./inj.yaml", "--tag", tag, "--ca-bundle", "none",
                  "--no-verify", "--no-lock", cwd=tmp_path)
    try:
        assert done.returncode == 0, show(done)
        probe = subprocess.run(
            ["docker", "run", "--rm", tag, "bash", "-c",
             # a PWNED below /opt/envkit is a path value arriving literally; elsewhere
             # (the payloads aim at /PWNED) it would be a command that ran
             "cat /var/log/envkit-calls 2>/dev/null; printf '\\0%s' \"$(find / -xdev "
             "-name PWNED -not -path '/opt/envkit/*' 2>/dev/null | wc -l)\""],
            capture_output=True, check=True)
        *tokens, found = probe.stdout.split(b"\0")
        assert found == b"0", f"PWNED exists in the image ({field}: {accepted!r})"
        calls, i = [], 0
        while i < len(tokens) and tokens[i]:
            n = int(tokens[i])
            calls.append([t.decode() for t in tokens[i + 1: i + 2 + n]])
            i += 2 + n
        # the python3 stand-in also answers envkit's record of what the image holds
        calls = [c for c in calls if not (c[:2] == ["python3", "-c"]
                                          and "importlib.metadata" in c[2])]
        expected = [call for value, prefix in zip(accepted, prefixes, strict=True)
                    for call in _expected_calls(field, value, Path(prefix))]
        assert calls == expected, accepted
        image = json.loads(subprocess.run(["docker", "inspect", tag], capture_output=True,
                                          text=True, check=True).stdout)[0]
        assert image["Config"]["Labels"]["org.opencontainers.image.description"] == (
            " ".join(description.split()))
        if field == "venv-path":
            # the image keeps the last venv's variables; each venv step set its own
            assert f"VIRTUAL_ENV={prefixes[-1]}/{accepted[-1]}" in image["Config"]["Env"]
            history = subprocess.run(
                ["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", tag],
                capture_output=True, text=True, check=True).stdout
            for value, prefix in zip(accepted, prefixes, strict=True):
                assert f"VIRTUAL_ENV={prefix}/{value}" in history, value
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)

    _record({"injection_field": field, "payloads_tried": tried, "built": len(accepted)})


# --- resuming a Docker build: the layer cache -------------------------------------------------


@pytest.mark.docker
def test_a_failed_build_resumes_at_the_failed_step_from_the_layer_cache(
        base: str, tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    server = FlakyServer(root, host="0.0.0.0")
    data = b"the file\n"
    (root / "f.bin").write_bytes(data)
    server.status, server.fail["/f.bin"] = 404, 10**6  # the fault: the file is not there
    gateway = bridge_gateway()

    def recipe(last: str) -> None:
        (tmp_path / "resume.yaml").write_text(textwrap.dedent(f"""\
            name: resume
            description: step 3 fails until the server has its file
            version: 1.0.0
            base: {base}
            steps:
              - name: curl
                apt: [curl]
              - name: a slow, stable step
                run: sleep 3; date +%s%N > /opt/first
              - name: the file
                download:
                  url: http://{gateway}:{server.port}/f.bin
                  sha256: {hashlib.sha256(data).hexdigest()}
                  dest: /opt/f.bin
              - name: the last step
                run: {last}
            """))

    args = ("build", "--recipe", "./resume.yaml", "--ca-bundle", HOST_CA, "--no-verify",
            "--tag", f"envkit-test/resume:{uuid.uuid4().hex[:8]}")
    try:
        recipe("cp /opt/f.bin /opt/copy")
        first = envkit(*args, cwd=tmp_path)
        assert first.returncode == 1, show(first)
        assert "the build failed at step 3/4 resume: the file" in first.stderr
        server.fail.clear()  # the fault is gone; the recipe is the same
        second = envkit(*args, cwd=tmp_path)
        assert second.returncode == 0, show(second)
        out = second.stdout
        assert "step 1/4 resume: curl: cached" in out
        assert "step 2/4 resume: a slow, stable step: cached" in out
        assert re.search(r"step 3/4 resume: the file: done in", out)
        assert re.search(r"step 4/4 resume: the last step: done in", out)
        recipe("cp /opt/f.bin /opt/copy2")  # only the last step changes
        third = envkit(*args, cwd=tmp_path)
        assert third.returncode == 0, show(third)
        assert third.stdout.count(": cached") == 3, third.stdout
        assert re.search(r"step 4/4 resume: the last step: done in", third.stdout)
    finally:
        server.close()
        subprocess.run(["docker", "rmi", "-f", args[-1]], capture_output=True)
