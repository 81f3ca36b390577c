"""What a user writes wrong that once got through: each is refused in one line, at the
value's position, and nothing is written."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import plan_of, problems
from envkit.diagnostics import EnvkitError
from envkit.load.catalog import Catalog
from envkit.plan import make_plan
from envkit.render import render

# --- credentials in URLs -------------------------------------------------------------------

COMMIT = "a" * 40
# (step as YAML with {url} where a URL goes, the field path the error names)
URL_FIELDS = [
    ("{{git: {{url: '{url}/repo.git', ref: main, commit: " + COMMIT + ", dest: /opt/src}}}}",
     "steps[0].git.url"),
    ("{{venv: {{path: /opt/v}}}}\n  - {{pip: ['pkg @ {url}/pkg-1.0-py3-none-any.whl']}}",
     "steps[1].pip[0]"),
    ("{{venv: {{path: /opt/v}}}}\n  - {{pip: {{packages: [numpy], index: '{url}/simple'}}}}",
     "steps[1].pip.index"),
    ("{{venv: {{path: /opt/v}}}}\n  - {{pip: {{packages: [numpy], "
     "extra_index: ['{url}/simple']}}}}",
     "steps[1].pip.extra_index[0]"),
    ("{{download: {{url: '{url}/f.tgz', sha256: '" + "a" * 64 + "', dest: /opt/f.tgz}}}}",
     "steps[0].download.url"),
    ("{{download: {{url: 'https://h/f.tgz', mirrors: ['{url}/f.tgz'], sha256: '" + "a" * 64
     + "', dest: /opt/f.tgz}}}}", "steps[0].download.mirrors[0]"),
    ("{{env: {{INDEX: '{url}/simple'}}}}", "steps[0].env.INDEX"),
    ("{{run: 'curl -fsSL {url}/install.sh -o /tmp/i.sh'}}", "steps[0].run"),
]


@pytest.mark.parametrize(("step", "path"), URL_FIELDS)
@pytest.mark.parametrize("userinfo", ["user:token", "__token__", "oauth2:glpat-x"])
def test_a_credential_in_any_url_is_refused_without_repeating_it(
        recipe, step: str, path: str, userinfo: str) -> None:
    url = f"https://{userinfo}@git.example.com"
    lines = problems(recipe("steps:\n  - " + step.format(url=url) + "\n"))
    assert len(lines) == 1, lines
    assert f"{path}: a credential in a URL (https://***@git.example.com/...)" in lines[0]
    assert "secrets:" in lines[0] and userinfo not in lines[0]


def test_a_credential_given_through_a_param_is_refused_too(recipe) -> None:
    path = recipe("params:\n  repo: {type: string, default: 'https://h/r.git'}\n"
                  "steps:\n  - {git: {url: '{{ repo }}', ref: main, commit: " + COMMIT
                  + ", dest: /opt/src}}\n")
    assert problems(path) == []
    [line] = problems(path, {"repo": "https://me:s3cret@h/r.git"})
    assert "steps[0].git.url: a credential in a URL" in line and "s3cret" not in line


def test_an_ssh_login_name_is_no_credential(recipe) -> None:
    for url in ("ssh://git@github.com/org/repo.git", "git@github.com:org/repo.git"):
        assert problems(recipe(f"steps:\n  - {{git: {{url: '{url}', ref: main, "
                               f"commit: {COMMIT}, dest: /opt/src}}}}\n")) == []
    [line] = problems(recipe("steps:\n  - {git: {url: 'ssh://git:pw@h/r.git', ref: main, "
                             f"commit: {COMMIT}, dest: /opt/src}}}}\n"))
    assert "a credential in a URL" in line and "pw" not in line.split("(give")[0][-30:]


# Bracketed by marks no rendered file or message holds, so a hit is the credential itself
# (a bare draw such as '--targ' occurs in the helpers).
_SECRET = st.text(alphabet=string.ascii_letters + string.digits + "-_.~", min_size=4,
                  max_size=22).map(lambda s: f"Qz{s}7w")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(user=_SECRET, password=_SECRET, field=st.sampled_from(URL_FIELDS),
       scheme=st.sampled_from(["https", "http", "git+https", "ftp"]))
def test_no_credential_ever_reaches_a_file_or_a_log(tmp_path: Path, user: str, password: str,
                                                   field: tuple[str, str], scheme: str) -> None:
    """Whatever the credential and wherever a URL goes, it is refused; the refusal does not
    show it; and the same recipe without it renders files that do not hold it either."""
    step, _ = field
    recipe = tmp_path / "p.yaml"
    header = "name: p\ndescription: d\nversion: '1'\nbase: debian:bookworm-slim\nsteps:\n  - "
    recipe.write_text(header + step.format(url=f"{scheme}://{user}:{password}@h.example") + "\n")
    catalog = Catalog()
    with pytest.raises(EnvkitError) as exc:
        make_plan(catalog.load(recipe), catalog)
    shown = str(exc.value)
    assert password not in shown and f"{user}:" not in shown
    clean = tmp_path / "clean.yaml"
    clean.write_text(header.replace("name: p", "name: clean")
                     + step.format(url="https://h.example") + "\n")
    plan = make_plan(catalog.load(clean), catalog)
    for fmt in ("shell", "dockerfile"):
        assert password not in render(plan, fmt)


# --- env that breaks envkit's machinery ----------------------------------------------------


@pytest.mark.parametrize("name", ["BASH_ENV", "ENV", "IFS", "PS4", "SHELLOPTS", "BASHOPTS",
                                  "ENVKIT_FILES", "ENVKIT_ANYTHING", "BASH_FUNC_x"])
def test_env_names_bash_or_envkit_rely_on_are_refused(recipe, name: str) -> None:
    for where, path in ((f"env:\n  {name}: x\nsteps: [{{run: 'true'}}]\n", f"env.{name}"),
                        (f"steps:\n  - {{env: {{{name}: x}}}}\n", f"steps[0].env.{name}")):
        [line] = problems(recipe(where))
        assert f": {path}: {name}" in line and ("relies on" in line or "belong to" in line)


@pytest.mark.parametrize("value", ["", "/opt/tool/bin", "/usr/bin:/bin"])
def test_a_path_that_drops_the_one_before_it_is_refused(recipe, value: str) -> None:
    [line] = problems(recipe(f"env:\n  PATH: '{value}'\nsteps: [{{run: 'true'}}]\n"))
    assert ":6:9: env.PATH: PATH must keep the one before it" in line


@pytest.mark.parametrize("value", ["/opt/t/bin:${PATH}", "$PATH:/opt/t/bin", "/a:${PATH}:/b"])
def test_a_path_that_keeps_the_one_before_it_is_fine(recipe, value: str) -> None:
    assert problems(recipe(f"env:\n  PATH: '{value}'\nsteps: [{{run: 'true'}}]\n")) == []


# --- half placeholders ---------------------------------------------------------------------


@pytest.mark.parametrize(("run", "message"), [
    ("ls {{ prefix/bin", "unclosed placeholder"),
    ("ls {{ prefix }}/bin {{", "unclosed placeholder"),
    ("ls prefix }}/bin", "'}}' without '{{'"),
    ("ls {% if x %}", "template logic"),
])
def test_a_half_placeholder_is_refused(recipe, run: str, message: str) -> None:
    [line] = problems(recipe(f"steps:\n  - run: '{run}'\n"))
    assert ":6:10: steps[0].run: " in line and message in line


@pytest.mark.parametrize("run", ['echo "${A:-${B}}"', "awk '{if($1>0){print $2}}' f",
                                 "echo {{ prefix }}/bin"])
def test_shell_braces_that_close_their_own_are_fine(recipe, run: str) -> None:
    assert problems(recipe(f"steps:\n  - run: |\n      {run}\n")) == []


# --- invisible format characters -----------------------------------------------------------


@pytest.mark.parametrize(("char", "named"), [
    ("\u202e", "U+202E (RIGHT-TO-LEFT OVERRIDE)"), ("\u200d", "U+200D (ZERO WIDTH JOINER)"),
    ("\u200b", "U+200B (ZERO WIDTH SPACE)"), ("\u2066", "U+2066 (LEFT-TO-RIGHT ISOLATE)")])
def test_unicode_format_characters_are_refused_where_they_are(recipe, char: str,
                                                             named: str) -> None:
    for body, at in ((f"steps:\n  - {{name: 'ok{char}cod.exe', run: 'true'}}\n", ":6:"),
                     (f"steps:\n  - run: 'echo a{char}b'\n", ":6:10:"),
                     (f"env:\n  A{char}B: x\nsteps: [{{run: 'true'}}]\n", ":6:3:")):
        with pytest.raises(EnvkitError) as exc:
            plan_of(recipe(body))
        [d] = exc.value.diagnostics
        assert at in str(d) and f"invisible Unicode format character {named}" in d.message
        assert char not in str(d)  # shown escaped, never as itself


def test_a_format_character_in_a_set_value_is_refused(recipe) -> None:
    path = recipe("params:\n  who: {type: string, default: me}\nsteps: [{run: 'true'}]\n")
    [line] = problems(path, {"who": "a\u202eb"})
    assert "--set: who: invisible Unicode format character U+202E" in line


# --- requirements files without a placeholder package ---------------------------------------


@pytest.mark.parametrize("options", [
    "[-r, requirements.txt]", "['-r requirements.txt']", "[--requirement, requirements.txt]",
    "['--requirement=requirements.txt']", "[-rrequirements.txt]"])
def test_a_requirements_file_in_options_says_to_use_requirements(recipe, options: str) -> None:
    """The one way is the step's ``requirements``: the lock, validate and compat read it."""
    [line] = problems(recipe(f"steps:\n  - {{venv: {{path: /opt/v}}}}\n"
                             f"  - {{pip: {{packages: [six], options: {options}}}}}\n"))
    assert ("steps[1].pip.options[0]: a requirements file is the step's requirements: "
            "requirements: [requirements.txt] (a path next to the recipe;") in line


def test_a_requirements_file_needs_no_placeholder_package(recipe, tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("six==1.17.0\n")
    plan = plan_of(recipe("steps:\n  - {venv: {path: /opt/v}}\n"
                          "  - {pip: {requirements: [requirements.txt]}}\n"))
    step = plan.steps[1].step
    assert step.packages == [] and step.requirements == ["requirements.txt"]
    assert plan.steps[1].title == "pip -r requirements.txt"
    script = render(plan, "shell")
    assert 'install -r "$ENVKIT_INPUTS"/t/requirements.txt\n' in script
    assert 'ENVKIT_INPUTS="${ENVKIT_INPUTS:-$ENVKIT_FILES}"' in script


def test_an_option_that_is_not_one_says_what_is_wrong(recipe) -> None:
    [line] = problems(recipe("steps:\n  - {venv: {path: /opt/v}}\n"
                             "  - {pip: {packages: [numpy], options: [requirements.txt]}}\n"))
    assert ("steps[1].pip.options[0]: 'requirements.txt' is not an option (options start with "
            "'-'): a requirements file goes in 'requirements', packages in 'packages'") in line
    [line] = problems(recipe("steps:\n  - {venv: {path: /opt/v}}\n  - {pip: {options: [-r]}}\n"))
    assert "steps[1].pip.options[0]: a requirements file is the step's requirements" in line
    [line] = problems(recipe("steps:\n  - {venv: {path: /opt/v}}\n"
                             "  - {pip: {options: [--no-deps]}}\n"))
    assert "nothing to install: give packages, requirements (files) or a project" in line
