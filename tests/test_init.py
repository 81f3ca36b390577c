"""`invoke init --from FILE`: what each importer maps (Python, packages or files, system
packages, base, CUDA, runtime fields, checks), what it leaves as comments, and that the
recipe it writes validates."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import run_cli

# PaddleOCR's requirements.txt (release 2.7), the project the notes install
PADDLEOCR = """\
shapely
scikit-image
imgaug
pyclipper
lmdb
tqdm
numpy
visualdl
rapidfuzz
opencv-python
opencv-contrib-python
cython
lxml
premailer
openpyxl
attrdict
Pillow>=10.0.0
pyyaml
"""


def init(folder: Path, *args: str) -> tuple[dict, str, str]:
    done = run_cli("envkit", "init", *args, cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    written = next(line.split()[2] for line in done.stdout.splitlines()
                   if line.startswith("envkit: wrote "))
    text = (folder / written).read_text()
    return yaml.safe_load(text), text, done.stdout


def test_a_real_projects_requirements_file(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(PADDLEOCR)
    data, _text, out = init(tmp_path, "--from", "requirements.txt", "--name", "paddleocr")
    assert data["name"] == "paddleocr" and data["requires"] == ["python-venv"]
    assert data["python"] == "==3.11.*"
    [apt, pip] = data["steps"]
    assert apt == {"name": "system packages", "apt": ["libgl1", "libglib2.0-0"]}  # cv2's
    assert pip == {"name": "Python packages", "pip": {"requirements": ["requirements.txt"]}}
    modules = [c["python_import"]["module"] for c in data["verify"]]
    assert modules == ["shapely", "skimage", "imgaug", "pyclipper", "lmdb", "tqdm", "numpy",
                       "visualdl", "rapidfuzz", "cv2", "Cython", "lxml", "premailer",
                       "openpyxl", "attrdict", "PIL", "yaml"]
    assert "paddleocr.yaml validates" in out


def test_a_requirements_file_with_index_options_becomes_packages(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(
        "--extra-index-url https://example.org/simple\nsix==1.17.0\n-r base.txt\n")
    (tmp_path / "base.txt").write_text("idna==3.10\n")
    data, text, _ = init(tmp_path, "--from", "requirements.txt", "--name", "app")
    assert data["steps"][0]["pip"] == {"packages": ["six==1.17.0"], "requirements": ["base.txt"]}
    assert ("# - requirements.txt: --extra-index-url https://example.org/simple (an index is "
            "the mirror profile's or a step's 'index')") in text


def project(folder: Path) -> None:
    (folder / "src" / "mypkg").mkdir(parents=True)
    (folder / "src" / "mypkg" / "__init__.py").write_text("VALUE = 42\n")
    (folder / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "mypkg"
        version = "0.2.0"
        description = "A package with an extra"
        requires-python = ">=3.12"
        dependencies = ["six==1.17.0"]

        [project.optional-dependencies]
        yaml = ["PyYAML==6.0.2"]

        [project.scripts]
        mypkg = "mypkg:main"
        """))


def test_a_pyproject_with_an_extra(tmp_path: Path) -> None:
    project(tmp_path)
    data, text, _ = init(tmp_path, "--from", "pyproject.toml")
    assert (data["name"], data["description"]) == ("mypkg", "A package with an extra")
    assert data["python"] == "==3.13.*"  # requires-python >=3.12: not 3.11, the newest
    assert data["steps"] == [{"name": "Python packages",
                              "pip": {"project": ".", "extras": ["yaml"]}}]
    assert [c["python_import"]["module"] for c in data["verify"]] == ["mypkg", "six", "yaml"]
    assert "# - [project.scripts]: installed with the project; no entrypoint chosen" in text
    assert text.startswith("# Made by `invoke init --from pyproject.toml` (pyproject). "
                           "Python 3.13 from requires-python (>=3.12).")
    data, _, _ = init(tmp_path, "--from", "pyproject.toml", "--python", "3.12", "--force")
    assert data["python"] == "==3.12.*"


def test_a_conda_environment_with_a_pip_section(tmp_path: Path) -> None:
    (tmp_path / "environment.yml").write_text(textwrap.dedent("""\
        name: speech
        channels: [conda-forge, defaults]
        dependencies:
          - python=3.10
          - numpy=1.26
          - scipy>=1.11
          - conda-forge::ffmpeg
          - cudatoolkit=11.8
          - pip
          - pip:
              - soundfile==0.12.1
              - -r extra.txt
        """))
    (tmp_path / "extra.txt").write_text("librosa==0.10.2\n")
    data, text, out = init(tmp_path, "--from", "environment.yml")
    assert data["name"] == "speech" and data["python"] == "==3.10.*"
    assert data["steps"][0] == {"name": "system packages", "apt": ["ffmpeg", "libsndfile1"]}
    assert data["steps"][1]["pip"] == {
        "packages": ["numpy==1.26.*", "scipy>=1.11", "soundfile==0.12.1"],
        "requirements": ["extra.txt"]}
    unmapped = [ln for ln in text.splitlines() if ln.startswith("# - ")]
    assert unmapped == [
        "# - channels: conda-forge, defaults (conda channels; pip packages come from the mirror "
        "profile's index)",
        "# - cudatoolkit=11.8: a conda package with no PyPI equivalent (envkit's python-venv "
        "and the wheels provide Python, CUDA and BLAS)"]
    assert "  not mapped: cudatoolkit=11.8" in out


def test_a_cog_yaml_with_a_gpu_and_system_packages(tmp_path: Path) -> None:
    (tmp_path / "cog.yaml").write_text(textwrap.dedent("""\
        build:
          gpu: true
          python_version: "3.11"
          system_packages: ["libgl1-mesa-glx", "libglib2.0-0"]
          python_packages: ["torch==2.5.1", "torchvision==0.20.1", "transformers==4.57.6"]
          run:
            - "echo built > /opt/built.txt"
            - command: "pip download private-thing"
              mounts: [{type: secret, id: token, target: /run/token}]
        predict: "predict.py:Predictor"
        image: "r8.im/me/sd"
        """))
    data, text, _ = init(tmp_path, "--from", "cog.yaml", "--name", "sd")
    assert data["python"] == "==3.11.*"
    assert data["params"]["cuda"]["default"] == "12.4"  # the newest CUDA torch 2.5.1 has
    assert "NVIDIA driver >=" in data["params"]["cuda"]["description"]
    steps = {s["name"]: s for s in data["steps"]}
    assert steps["system packages"]["apt"] == ["libgl1", "libglib2.0-0"]
    assert steps["CUDA wheels"]["pip"] == {
        "packages": ["torch==2.5.1+{{ cuda_tag }}", "torchvision==0.20.1+{{ cuda_tag }}"],
        "index": "https://download.pytorch.org/whl/{{ cuda_tag }}"}
    assert steps["Python packages"]["pip"] == {"packages": ["transformers==4.57.6"]}
    assert steps["build.run 1"]["run"] == "echo built > /opt/built.txt"
    assert steps["build.run 2"]["run"] == "pip download private-thing"
    assert "base" not in data  # the CUDA wheels bring the runtime: python-venv's Debian base
    for line in ("# - predict: 'predict.py:Predictor' (cog's prediction interface",
                 "# - image: 'r8.im/me/sd' (the image name: invoke build --tag)",
                 "# - build.run[1].mounts: a secret mount",
                 "# - build.system_packages: libgl1-mesa-glx is libgl1 in Debian"):
        assert line in text, line


def test_a_cog_gpu_without_torch_or_paddle_says_so(tmp_path: Path) -> None:
    (tmp_path / "cog.yaml").write_text("build:\n  gpu: true\n  python_packages: [six]\n")
    data, text, _ = init(tmp_path, "--from", "cog.yaml", "--name", "plain")
    assert "params" not in data
    assert "# - gpu: true: no torch or paddlepaddle pin to choose a CUDA build for" in text


def test_a_devcontainer_with_comments_features_and_ports(tmp_path: Path) -> None:
    folder = tmp_path / ".devcontainer"
    folder.mkdir()
    (folder / "devcontainer.json").write_text(textwrap.dedent("""\
        // a dev container: JSON with comments
        {
          "name": "ML dev",
          "image": "mcr.microsoft.com/devcontainers/python:1-3.12-bookworm",
          "features": {"ghcr.io/devcontainers/features/node:1": {"version": "20"}},
          "forwardPorts": [8000],
          "containerEnv": {"APP_ENV": "dev // not a comment", "HOST": "${localEnv:HOME}"},
          "postCreateCommand": "pip install -r requirements.txt",
          "remoteUser": "vscode",
          "workspaceFolder": "/workspace",  // trailing comma next
        }
        """))
    data, text, _ = init(folder, "--from", "devcontainer.json", "--name", "mldev")
    assert data["python"] == "==3.12.*"
    assert data["env"] == {"APP_ENV": "dev // not a comment"}
    assert (data["user"], data["workdir"], data["expose"]) == ("vscode", "/workspace", [8000])
    for line in ("# - feature ghcr.io/devcontainers/features/node:1 {\"version\": \"20\"}",
                 "# - containerEnv.HOST: '${localEnv:HOME}' (refers to the dev host)",
                 "# - postCreateCommand: \"pip install -r requirements.txt\"",
                 "# - image: mcr.microsoft.com/devcontainers/python:1-3.12-bookworm"):
        assert line in text, line


def test_init_refuses_to_replace_a_recipe_and_unknown_files(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("six\n")
    init(tmp_path, "--from", "requirements.txt", "--name", "app")
    done = run_cli("envkit", "init", "--from", "requirements.txt", "--name", "app",
                   cwd=tmp_path)
    assert done.returncode == 1 and "app.yaml is already there" in done.stderr
    (tmp_path / "setup.py").write_text("")
    done = run_cli("envkit", "init", "--from", "setup.py", cwd=tmp_path)
    assert done.returncode == 1 and "cannot tell what setup.py is" in done.stderr
    done = run_cli("envkit", "init", "--from", "requirements.txt", "--python", "3.7",
                   "--name", "old", cwd=tmp_path)
    assert done.returncode == 1 and "Python 3.7 is not offered" in done.stderr
    assert not (tmp_path / "old.yaml").exists()


@pytest.mark.parametrize("text", ["[project\nname='x'", "[tool.x]\ny = 1\n"])
def test_a_pyproject_that_cannot_be_read(tmp_path: Path, text: str) -> None:
    (tmp_path / "pyproject.toml").write_text(text)
    done = run_cli("envkit", "init", "--from", "pyproject.toml", cwd=tmp_path)
    assert done.returncode == 1
    assert "pyproject.toml" in done.stderr and "Traceback" not in done.stderr


def test_text_from_the_file_cannot_start_a_key_in_the_recipe(tmp_path: Path) -> None:
    """YAML breaks lines at U+2028, U+2029 and NEL too: a comment keeps them out."""
    (tmp_path / "environment.yml").write_text(
        'name: x\nchannels: ["a\\u2028base: evil/img\\u2029#", "b\\u0085cmd: [x]"]\n'
        "dependencies: [six]\n", encoding="utf-8")
    data, text, _ = init(tmp_path, "--from", "environment.yml")
    assert "base" not in data and "cmd" not in data
    assert all(line.startswith("# ") or not line.startswith("#")
               for line in text.splitlines())


@pytest.mark.parametrize("name, text", [
    ("cog.yaml", "build: [python_version]\n"),
    ("cog.yaml", "build: just a string\n"),
    ("pyproject.toml", "[project]\nname = 'x'\noptional-dependencies = ['a']\n"),
    ("environment.yml", "dependencies:\n  - pip: 5\n"),
    (".devcontainer.json", '{"features": [1], "forwardPorts": "8000"}'),
])
def test_files_of_an_odd_shape_are_one_line_not_a_traceback(tmp_path: Path, name: str,
                                                           text: str) -> None:
    (tmp_path / name).write_text(text)
    done = run_cli("envkit", "init", "--from", name, "--name", "odd", cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, (
        done.stderr)
    assert not (tmp_path / "odd.yaml").exists()


def test_a_utf16_requirements_file(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("six\n", encoding="utf-16")
    done = run_cli("envkit", "init", "--from", "requirements.txt", "--name", "w", cwd=tmp_path)
    assert done.returncode == 1 and "cannot read requirements.txt" in done.stderr


def test_python_is_chosen_before_the_gpu_build(tmp_path: Path) -> None:
    (tmp_path / "cog.yaml").write_text(
        'build:\n  gpu: true\n  python_version: "3.11"\n  python_packages: ["torch==2.9.1"]\n')
    data, _, _ = init(tmp_path, "--from", "cog.yaml", "--name", "g", "--python", "3.13")
    assert data["python"] == "==3.13.*" and data["params"]["cuda"]["default"] == "13.0"
