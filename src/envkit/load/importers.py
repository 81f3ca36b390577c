"""`invoke init --from FILE`: a recipe from what a project already has.

Each importer reads one kind of file (requirements.txt, pyproject.toml, a conda
environment.yml, cog.yaml, devcontainer.json) into a :class:`Draft`: the Python, Debian
packages, pip packages or files, a project, the runtime fields, a CUDA build for a GPU, the
modules to import in checks, and one line for each thing it cannot map. ``write`` turns a
draft into recipe YAML: the mapped values as data, what is left as comments at the top.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from envkit import grammar
from envkit.diagnostics import EnvkitError, error

PYTHONS = ("3.8", "3.9", "3.10", "3.11", "3.12", "3.13")  # what python-venv offers
DEFAULT_PYTHON = "3.11"
KINDS = ("requirements", "pyproject", "conda", "cog", "devcontainer")

# Distributions whose module is not their name (the usual suspects of ML projects).
MODULES = {
    "pyyaml": "yaml", "pillow": "PIL", "scikit-learn": "sklearn", "scikit-image": "skimage",
    "opencv-python": "cv2", "opencv-python-headless": "cv2", "opencv-contrib-python": "cv2",
    "opencv-contrib-python-headless": "cv2", "beautifulsoup4": "bs4",
    "python-dateutil": "dateutil", "protobuf": "google.protobuf", "paddlepaddle": "paddle",
    "paddlepaddle-gpu": "paddle", "faiss-cpu": "faiss", "faiss-gpu": "faiss",
    "pyzmq": "zmq", "attrs": "attr", "python-dotenv": "dotenv", "msgpack-python": "msgpack",
    "pymupdf": "fitz", "typing-extensions": "typing_extensions", "huggingface-hub":
    "huggingface_hub", "sentence-transformers": "sentence_transformers",
    "pytorch-lightning": "pytorch_lightning", "lightning": "lightning",
    "tensorflow-cpu": "tensorflow", "jax": "jax", "ruamel.yaml": "ruamel.yaml",
    "google-cloud-storage": "google.cloud.storage", "psycopg2-binary": "psycopg2",
    "mysqlclient": "MySQLdb", "pycryptodome": "Crypto", "lmdb": "lmdb",
    "python-multipart": "multipart", "websocket-client": "websocket", "imageio-ffmpeg":
    "imageio_ffmpeg", "setuptools": "setuptools", "paddleocr": "paddleocr",
    "paddlenlp": "paddlenlp", "rapidfuzz": "rapidfuzz", "pyclipper": "pyclipper",
    "shapely": "shapely", "tqdm": "tqdm", "numpy": "numpy", "cython": "Cython",
}
# Ubuntu names cog.yaml files often carry that Debian does not have
APT_RENAMED = {"libgl1-mesa-glx": "libgl1", "libgl1-mesa-dev": "libgl-dev",
               "python3-opencv": "libopencv-dev"}
# Debian packages a distribution's wheels load at import time but do not ship
SYSTEM_DEPS = {"opencv-python": ["libgl1", "libglib2.0-0"],
               "opencv-contrib-python": ["libgl1", "libglib2.0-0"],
               "opencv-python-headless": ["libglib2.0-0"],
               "opencv-contrib-python-headless": ["libglib2.0-0"],
               "soundfile": ["libsndfile1"], "pydub": ["ffmpeg"], "faiss-cpu": ["libgomp1"],
               "psycopg2": ["libpq5"], "paddlepaddle": ["libgomp1"]}
# Distributions whose import needs what a build container lacks (a display, a GPU driver):
# installed and listed, but not imported by a check.
NO_IMPORT = {"tensorflow-gpu", "pycuda", "cupy", "nvidia-ml-py", "pynvml", "tkinter"}

# conda packages that are not Python distributions: what Debian has (apt) or nothing
CONDA_APT = {"ffmpeg": "ffmpeg", "git": "git", "make": "make", "cmake": "cmake",
             "curl": "curl", "wget": "wget", "graphviz": "graphviz", "libsndfile": "libsndfile1",
             "sox": "sox", "unzip": "unzip", "gcc": "gcc", "gxx": "g++", "libgomp": "libgomp1"}
CONDA_ONLY = re.compile(r"python|pip|_libgcc_mutex|_openmp_mutex|libgcc(-ng)?|libstdcxx(-ng)?|"
                        r"ld_impl_.*|ca-certificates|openssl|libffi|ncurses|readline|sqlite|"
                        r"tk|xz|zlib|bzip2|libzlib|libuuid|libnsl|tzdata|setuptools|wheel|"
                        r"cudatoolkit|cudatoolkit-dev|cuda(-.*)?|cudnn|nccl|mkl(-.*)?|"
                        r"intel-openmp|blas|libblas|liblapack|libcblas|openblas|magma.*|"
                        r"pytorch-cuda|pytorch-mutex|cpuonly|libjpeg-turbo|libpng|freetype")
CONDA_RENAME = {"pytorch": "torch", "py-opencv": "opencv-python-headless",
                "pytorch-lightning": "pytorch-lightning"}


@dataclass
class Draft:
    kind: str
    source: Path  # the file read
    name: str
    description: str
    python: str = DEFAULT_PYTHON
    python_note: str = ""  # where the Python came from
    apt: list[str] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)
    requirements: list[str] = field(default_factory=list)  # relative to the recipe
    project: str = ""
    extras: list[str] = field(default_factory=list)
    cuda: str = ""  # a CUDA build of torch or paddle for a GPU
    driver: str = ""  # the host driver that CUDA needs (compat.yaml)
    index: str = ""  # the pip index of a CUDA build (one step on its own)
    cuda_packages: list[str] = field(default_factory=list)  # installed from that index
    runs: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = ""
    expose: list[int] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    user: str = ""
    modules: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)  # one line each, left as comments


def detect(path: Path) -> str:
    name = path.name.lower()
    if name == "pyproject.toml":
        return "pyproject"
    if name == "cog.yaml":
        return "cog"
    if name.endswith("devcontainer.json"):
        return "devcontainer"
    if name.endswith((".yml", ".yaml")) and ("environment" in name or "env" in name):
        return "conda"
    if name.endswith((".txt", ".in")):
        return "requirements"
    raise error(f"cannot tell what {path.name} is", path="--from",
                hint="requirements.txt, pyproject.toml, environment.yml, cog.yaml or "
                     "devcontainer.json")


def read(path: Path, name: str = "", python: str = "") -> Draft:
    """The draft of a recipe from ``path``; ``python`` (3.X) wins over the file's."""
    if not path.is_file():
        raise error(f"no such file: {path}", path="--from")
    kind = detect(path)
    stem = name or _name(path.resolve().parent.name)
    draft = Draft(kind, path, stem, "")
    if python:  # before reading: what the file says about Python yields, a GPU build fits it
        if python not in PYTHONS:
            raise error(f"Python {python} is not offered", path="--python",
                        hint="one of " + ", ".join(PYTHONS))
        draft.python, draft.python_note = python, "--python"
    try:
        READERS[kind](draft)
    except EnvkitError:
        raise
    except (OSError, UnicodeError, ValueError, TypeError, AttributeError, KeyError) as exc:
        # a file of another shape than its kind has (a list where a table goes, UTF-16)
        raise error(f"cannot read {path.name} as a {kind} file: {type(exc).__name__}: "
                    f"{_comment(str(exc))[:200]}", path="--from") from None
    draft.description = draft.description or f"{draft.name}, from its {path.name} (invoke init)"
    _system_deps(draft)
    draft.modules = list(dict.fromkeys(draft.modules))
    return draft


def _name(text: str) -> str:
    out = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._") or "project"
    return out[:100]


def _python_from(text: str, where: str, draft: Draft) -> None:
    """'3.10', '3.10.4', '>=3.9', 'python=3.10.*' -> the 3.X offered that fits."""
    if draft.python_note == "--python":
        return
    text = text.strip()
    m = re.fullmatch(r"(?:python\s*)?=*\s*(3\.\d+)(?:\.[\d*]+)?", text)
    if m:
        wanted = m[1]
        if wanted not in PYTHONS:
            draft.unmapped.append(f"{where}: Python {wanted} is not offered (3.8-3.13); "
                                  f"{draft.python} instead")
            return
        draft.python, draft.python_note = wanted, where
        return
    try:
        spec = SpecifierSet(text.removeprefix("python").strip())
    except InvalidSpecifier:
        draft.unmapped.append(f"{where}: cannot read the Python {text!r}; {draft.python}")
        return
    fits = [p for p in PYTHONS if spec.contains(Version(p), prereleases=True)]
    if not fits:
        draft.unmapped.append(f"{where}: no Python 3.8-3.13 is {text}; {draft.python}")
        return
    draft.python = DEFAULT_PYTHON if DEFAULT_PYTHON in fits else fits[-1]
    draft.python_note = f"{where} ({text})"


def _system_deps(draft: Draft) -> None:
    """Debian packages the named distributions need at import time."""
    names = [*draft.packages, *draft.cuda_packages]
    for rel in draft.requirements:
        path = draft.source.parent / rel
        if path.is_file():
            names += path.read_text(encoding="utf-8", errors="replace").splitlines()
    for line in names:
        for pkg in SYSTEM_DEPS.get(grammar.requirement_name(line.split("#")[0].strip()), []):
            if pkg not in draft.apt:
                draft.apt.append(pkg)


def _module(requirement: str) -> str:
    try:
        req = Requirement(requirement)
    except InvalidRequirement:
        return ""
    name = canonicalize_name(req.name)
    if name in NO_IMPORT:
        return ""
    if name in MODULES:
        return MODULES[name]
    module = name.replace("-", "_")
    return module if module.isidentifier() and "-" not in req.name else ""


def _requirements(draft: Draft, lines: list[str], where: str) -> list[str]:
    """Lines of a requirements list: requirements kept (without pip's --hash options: the
    lock pins hashes), the rest said."""
    from envkit.steps.pip import logical_lines

    out = []
    for _, line, _ in logical_lines("\n".join(lines)):
        if line.startswith("-"):
            draft.unmapped.append(f"{where}: {line} (an index is the mirror profile's or a "
                                  "step's 'index'; an editable install is a 'project')")
            continue
        if msg := grammar.requirement(line):
            draft.unmapped.append(f"{where}: {line!r}: {msg}")
            continue
        out.append(line)
    return out


# --- requirements.txt ------------------------------------------------------------------


def _read_requirements(draft: Draft) -> None:
    """The file itself when the pip step can read it as it is; else its requirements as
    packages (and what it includes as files), its other lines said."""
    from envkit.steps.pip import _HARMLESS, _NESTED, logical_lines

    lines = [body for _, body, _ in logical_lines(draft.source.read_text(encoding="utf-8"))]
    options = [ln for ln in lines if ln.startswith("-") and not _NESTED.fullmatch(ln)
               and not _HARMLESS.fullmatch(ln)]
    kept = [ln for ln in lines if ln and not ln.startswith("-")]
    for line in kept:
        draft.modules.append(_module(line))
    if not options:
        draft.requirements = [draft.source.name]
    else:
        draft.packages = _requirements(draft, kept, draft.source.name)
        draft.requirements = [m[2] for ln in lines if (m := _NESTED.fullmatch(ln))]
        draft.unmapped += [f"{draft.source.name}: {ln} (an index is the mirror profile's or "
                           "a step's 'index')" for ln in options]
    draft.modules = [m for m in draft.modules if m]


# --- pyproject.toml --------------------------------------------------------------------


def _read_pyproject(draft: Draft) -> None:
    import tomllib

    try:
        data = tomllib.loads(draft.source.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{draft.source.name} is not valid TOML: {exc}", path="--from") from None
    project = data.get("project")
    if not isinstance(project, dict) or not isinstance(project.get("name"), str):
        raise error(f"{draft.source.name} has no [project] name (PEP 621)", path="--from",
                    hint="envkit installs PEP 621 projects; or start from requirements.txt")
    draft.name = draft.name if draft.name != _name(draft.source.resolve().parent.name) \
        else _name(project["name"])
    if project.get("description"):
        draft.description = str(project["description"]).splitlines()[0][:200]
    draft.project = "."
    extras = project.get("optional-dependencies") or {}
    draft.extras = sorted(extras)
    if "requires-python" in project:
        _python_from(str(project["requires-python"]), "requires-python", draft)
    for dep in [*(project.get("dependencies") or []),
                *(d for group in extras.values() for d in group or [])]:
        if isinstance(dep, str):
            draft.modules.append(_module(dep))
    draft.modules = [*_packages_of(draft.source.parent), *(m for m in draft.modules if m)]
    for key in ("scripts", "gui-scripts", "entry-points"):
        if project.get(key):
            draft.unmapped.append(f"[project.{key}]: installed with the project; no "
                                  "entrypoint chosen")
    if "dynamic" in project:
        draft.unmapped.append(f"[project] dynamic = {project['dynamic']}: the build backend "
                              "decides them at build time")


def _packages_of(root: Path) -> list[str]:
    """Top-level import packages of a project folder: src/ layout or flat."""
    out = []
    for base in (root / "src", root):
        if not base.is_dir():
            continue
        for child in sorted(base.iterdir()):
            if (child.is_dir() and child.name.isidentifier() and (child / "__init__.py").is_file()
                    and child.name not in ("tests", "test", "docs", "examples", "build")):
                out.append(child.name)
        if out:
            break
    return out


# --- conda environment.yml -------------------------------------------------------------


def _read_conda(draft: Draft) -> None:
    from envkit.load.yamlsrc import load_file

    doc = load_file(draft.source)
    data = doc.data if isinstance(doc.data, dict) else {}
    if data.get("name"):
        draft.name = draft.name if draft.name != _name(draft.source.resolve().parent.name) \
            else _name(str(data["name"]))
    channels = [str(c) for c in data.get("channels") or []]
    if channels:
        draft.unmapped.append(f"channels: {', '.join(channels)} (conda channels; pip packages "
                              "come from the mirror profile's index)")
    for dep in data.get("dependencies") or []:
        if isinstance(dep, dict) and "pip" in dep:
            lines = [str(x).strip() for x in dep["pip"] or []]
            for line in lines:
                if m := re.fullmatch(r"(?:-r|--requirement)[=\s]+(\S+)", line):
                    draft.requirements.append(m[1])
            for line in _requirements(draft, [ln for ln in lines if not re.match(
                    r"(-r|--requirement)[=\s]", ln)], "pip:"):
                draft.packages.append(line)
                draft.modules.append(_module(line))
            continue
        if not isinstance(dep, str):
            draft.unmapped.append(f"dependencies: {dep!r} (not a package)")
            continue
        name, _, version = _conda_spec(dep)
        if name == "pip":  # the venv has pip (and uv installs)
            continue
        if name == "python":
            if version:
                _python_from(version if re.match(r"[<>=!~]", version) else f"={version}",
                             "python", draft)
            continue
        if name in CONDA_APT:
            draft.apt.append(CONDA_APT[name])
            continue
        if CONDA_ONLY.fullmatch(name):
            draft.unmapped.append(f"{dep}: a conda package with no PyPI equivalent (envkit's "
                                  "python-venv and the wheels provide Python, CUDA and BLAS)")
            continue
        pip_name = CONDA_RENAME.get(name, name)
        requirement = pip_name + (_pip_version(version) if version else "")
        if msg := grammar.requirement(requirement):
            draft.unmapped.append(f"{dep}: {msg}")
            continue
        draft.packages.append(requirement)
        draft.modules.append(_module(requirement))
    draft.modules = [m for m in draft.modules if m]


def _conda_spec(text: str) -> tuple[str, str, str]:
    """'numpy=1.26.4=py310h...' -> ('numpy', '', '1.26.4'); 'pkg>=1' -> ('pkg', '', '>=1')."""
    text = text.split("::", 1)[-1].strip()  # a channel prefix
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", text)
    if not m:
        return text, "", ""
    name, rest = m[1].lower(), m[2].strip()
    if rest.startswith("=") and not rest.startswith("=="):
        rest = rest[1:].split("=", 1)[0]  # conda's =VERSION[=BUILD]
    elif rest.startswith("=="):
        rest = rest[2:].split("=", 1)[0]
    return name, "", rest


def _pip_version(version: str) -> str:
    """conda's '1.26' (1.26.*) and '1.26.4' -> pip's; ranges as they are."""
    if re.match(r"[<>!~]", version):
        return version
    if version.endswith(".*"):
        return f"=={version}"
    parts = version.split(".")
    return f"=={version}" if len(parts) >= 3 else f"=={version}.*"


# --- cog.yaml --------------------------------------------------------------------------


def _read_cog(draft: Draft) -> None:
    from envkit.load.yamlsrc import load_file

    doc = load_file(draft.source)
    data = doc.data if isinstance(doc.data, dict) else {}
    build = data.get("build") or {}
    if "python_version" in build:
        _python_from(str(build["python_version"]), "build.python_version", draft)
    for pkg in build.get("system_packages") or []:
        pkg = str(pkg)
        if pkg in APT_RENAMED:
            draft.unmapped.append(f"build.system_packages: {pkg} is {APT_RENAMED[pkg]} in "
                                  "Debian bookworm and trixie (used instead)")
        draft.apt.append(APT_RENAMED.get(pkg, pkg))
    if build.get("python_requirements"):
        draft.requirements.append(str(build["python_requirements"]))
        path = draft.source.parent / str(build["python_requirements"])
        if path.is_file():
            for line in _requirements(draft, path.read_text(encoding="utf-8").splitlines(),
                                      str(build["python_requirements"])):
                draft.modules.append(_module(line))
    for line in _requirements(draft, [str(p) for p in build.get("python_packages") or []],
                              "build.python_packages"):
        draft.packages.append(line)
        draft.modules.append(_module(line))
    for i, item in enumerate(build.get("run") or []):
        if isinstance(item, dict):
            command = str(item.get("command", ""))
            if item.get("mounts"):
                draft.unmapped.append(f"build.run[{i}].mounts: a secret mount (declare it under "
                                      "'secrets' and name it in the step)")
        else:
            command = str(item)
        if command:
            draft.runs.append(command)
    if build.get("gpu"):
        _gpu(draft, str(build.get("cuda", "")))
    for key in ("predict", "train", "image", "concurrency", "environment"):
        if key in data:
            what = {"predict": "cog's prediction interface; envkit builds the environment, "
                               "run your server with 'cmd'",
                    "train": "cog's training interface",
                    "image": "the image name: invoke build --tag",
                    "concurrency": "cog's server setting",
                    "environment": "cog's runtime variables"}[key]
            draft.unmapped.append(f"{key}: {data[key]!r} ({what})")
    for key in ("cuda", "cudnn"):
        if key in build and not build.get("gpu"):
            draft.unmapped.append(f"build.{key}: {build[key]} without gpu: true")
    draft.modules = [m for m in draft.modules if m]


def _gpu(draft: Draft, cuda_wanted: str) -> None:
    """A GPU build of torch or paddle: the CUDA the compat table has for the pinned release
    and Python (cog's build.cuda when it names one of them, else the newest), the wheels
    from that CUDA's index. They bring the CUDA runtime: the base stays Debian's, and the
    host needs the driver the table gives for that CUDA."""
    from envkit.load.catalog import Catalog

    table = Catalog().compat_table()
    python = Version(draft.python)
    for i, req_text in enumerate(list(draft.packages)):
        try:
            req = Requirement(req_text)
        except InvalidRequirement:
            continue
        name = canonicalize_name(req.name)
        if name not in ("torch", "paddlepaddle"):
            continue
        releases = [r for r in table.packages.get("paddlepaddle-gpu" if name ==
                                                  "paddlepaddle" else name, [])
                    if req.specifier.contains(r.version, prereleases=True)
                    and r.python.contains(python, prereleases=True) and r.cuda]
        if not releases:
            draft.unmapped.append(f"gpu: true: the compatibility table has no CUDA build of "
                                  f"{req_text} for Python {draft.python}")
            return
        release = max(releases, key=lambda r: r.version)
        cudas = [c for c in release.cuda or () if c in table.cuda]
        cuda = cuda_wanted if cuda_wanted in cudas else max(cudas, key=Version)
        if cuda_wanted and cuda_wanted != cuda:
            draft.unmapped.append(f"build.cuda: {cuda_wanted} has no {name} {release.version} "
                                  f"build; CUDA {cuda} instead")
        draft.cuda = cuda
        tag = "{{ cuda_tag }}"
        draft.driver = str(table.cuda.get(cuda, {}).get("driver", ""))
        if name == "torch":
            draft.index = f"https://download.pytorch.org/whl/{tag}"
            pinned = [f"torch=={release.version}+{tag}"]
            named = {grammar.requirement_name(p) for p in draft.packages}
            for other, version in release.goes_with.items():  # the companions it names
                if other in named:
                    pinned.append(f"{other}=={version}+{tag}")
            drop = {"torch", *release.goes_with}
        else:
            draft.index = f"https://www.paddlepaddle.org.cn/packages/stable/{tag}/"
            pinned = [f"paddlepaddle-gpu=={release.version}"]
            drop = {"paddlepaddle"}
        draft.packages = [p for j, p in enumerate(draft.packages)
                          if j != i and grammar.requirement_name(p) not in drop]
        draft.cuda_packages = pinned
        draft.modules.append("torch" if name == "torch" else "paddle")
        return
    draft.unmapped.append("gpu: true: no torch or paddlepaddle pin to choose a CUDA build "
                          "for (add a cuda param and CUDA wheels yourself)")




# --- devcontainer.json -----------------------------------------------------------------


def _read_devcontainer(draft: Draft) -> None:
    import json5

    try:
        data = json5.loads(draft.source.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise error(f"{draft.source.name} is not valid JSON (with comments): {exc}",
                    path="--from") from None
    if not isinstance(data, dict):
        raise error(f"{draft.source.name} is not a JSON object", path="--from")
    if data.get("name"):
        draft.description = f"{data['name']} (from {draft.source.name}, invoke init)"
    image = str(data.get("image", ""))
    if image:
        m = re.search(r"python:(?:\d+-)?(3\.\d+)", image)
        if m:
            _python_from(m[1], "image", draft)
        draft.unmapped.append(f"image: {image} (envkit starts from Debian's base with "
                              "python-venv's Python)")
    if data.get("build"):
        draft.unmapped.append(f"build: {data['build']!r} (a Dockerfile of its own: make its "
                              "steps recipe steps)")
    for feature, options in (data.get("features") or {}).items():
        draft.unmapped.append(f"feature {feature} {json_text(options)} (devcontainer features "
                              "are not mapped; a step does what it did)")
    ports = data.get("forwardPorts") or []
    for port in ports:
        if isinstance(port, int) and 1 <= port <= 65535:
            draft.expose.append(port)
        else:
            draft.unmapped.append(f"forwardPorts: {port!r} (not a port of this container)")
    for key, value in (data.get("containerEnv") or {}).items():
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(key)) and isinstance(value, str) \
                and "${" not in value:
            draft.env[str(key)] = value
        else:
            draft.unmapped.append(f"containerEnv.{key}: {value!r} (refers to the dev host)")
    if isinstance(data.get("workspaceFolder"), str) and data["workspaceFolder"].startswith("/") \
            and "${" not in data["workspaceFolder"]:
        draft.workdir = data["workspaceFolder"]
    user = data.get("remoteUser") or data.get("containerUser")
    if isinstance(user, str) and user not in ("root",) and re.fullmatch(r"[a-z_][a-z0-9_-]*",
                                                                          user):
        draft.user = user
    for key in ("postCreateCommand", "onCreateCommand", "postStartCommand",
                "postAttachCommand", "updateContentCommand", "initializeCommand",
                "customizations", "mounts", "runArgs", "appPort"):
        if key in data:
            draft.unmapped.append(f"{key}: {json_text(data[key])} (runs or applies in a dev "
                                  "container, not in an image build)")
    # the project's own files next to it
    for req in ("requirements.txt",):
        path = draft.source.parent.parent / req if draft.source.parent.name == \
            ".devcontainer" else draft.source.parent / req
        if path.is_file():
            rel = "../requirements.txt" if draft.source.parent.name == ".devcontainer" \
                else "requirements.txt"
            draft.unmapped.append(f"{rel}: a requirements file next to the project (run invoke "
                                  f"init --from it, or add 'requirements: [{rel}]' where the "
                                  "recipe can reach it)")


def json_text(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, sort_keys=True)[:200]


READERS = {"requirements": _read_requirements, "pyproject": _read_pyproject,
           "conda": _read_conda, "cog": _read_cog, "devcontainer": _read_devcontainer}


# --- the recipe ------------------------------------------------------------------------


def recipe_text(draft: Draft) -> str:
    """The recipe YAML: a header saying where it came from and what it left out, then the
    mapped values (dumped by PyYAML, so every value is quoted as YAML needs)."""
    import yaml

    data: dict[str, Any] = {"name": draft.name, "description": draft.description,
                            "version": "0.1.0", "requires": ["python-venv"],
                            "python": f"=={draft.python}.*"}
    if draft.cuda:
        data["params"] = {"cuda": {"type": "choice", "values": [draft.cuda],
                                   "default": draft.cuda,
                                   "description": "CUDA build of the GPU wheels (their "
                                                  "index); the host needs NVIDIA driver "
                                                  f"{draft.driver or '(see compat.yaml)'}"}}
    if draft.env:
        data["env"] = dict(draft.env)
    if draft.user:
        data["user"] = draft.user
    for key in ("workdir", "expose", "entrypoint", "cmd"):
        if getattr(draft, key):
            data[key] = getattr(draft, key)
    steps: list[dict[str, Any]] = []
    if draft.apt:
        steps.append({"name": "system packages", "apt": list(dict.fromkeys(draft.apt))})
    if draft.cuda_packages:
        steps.append({"name": "CUDA wheels", "pip": {"packages": draft.cuda_packages,
                                                     "index": draft.index}})
    pip: dict[str, Any] = {}
    if draft.packages:
        pip["packages"] = draft.packages
    if draft.requirements:
        pip["requirements"] = draft.requirements
    if draft.project:
        pip["project"] = draft.project
        if draft.extras:
            pip["extras"] = draft.extras
    if pip:
        steps.append({"name": "Python packages", "pip": pip})
    for i, command in enumerate(draft.runs, 1):
        steps.append({"name": f"build.run {i}", "run": command})
    if not steps:
        steps.append({"name": "nothing to install yet", "run": "true"})
    data["steps"] = steps
    checks = [{"python_import": {"module": m}} for m in draft.modules]
    if checks:
        data["verify"] = checks
    head = [_comment(f"Made by `invoke init --from {draft.source.name}` ({draft.kind}). "
                     f"Python {draft.python}" + (f" from {draft.python_note}."
                                                 if draft.python_note else " (the default).")),
            "Check it with `invoke validate --recipe THIS_FILE`, lock it with `invoke lock`."]
    if draft.unmapped:
        head.append("Not mapped (left for you, one line each):")
        head += [f"- {_comment(line)}" for line in draft.unmapped]
    head = [f"# {line}" for line in head]
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100,
                          default_flow_style=False)
    return "\n".join(head) + "\n" + body


def _comment(text: str) -> str:
    """One comment line: whatever YAML or a terminal reads as a line break (U+2028, NEL, ...)
    or a control character becomes a space, so a file's text cannot start a key."""
    from envkit.chars import BREAKS, FORMAT

    return FORMAT.sub(" ", BREAKS.sub(" ", text))


def summary(draft: Draft) -> list[str]:
    """What was mapped, one line per kind of thing."""
    out = [f"python {draft.python}" + (f" ({draft.python_note})" if draft.python_note else "")]
    if draft.apt:
        out.append("apt: " + ", ".join(draft.apt))
    if draft.cuda:
        out.append(f"cuda {draft.cuda}: " + ", ".join(draft.cuda_packages))
    if draft.packages:
        out.append("pip: " + ", ".join(draft.packages))
    if draft.requirements:
        out.append("requirements: " + ", ".join(draft.requirements))
    if draft.project:
        out.append(f"project: {draft.project}" + (f" [{', '.join(draft.extras)}]"
                                                  if draft.extras else ""))
    if draft.runs:
        out.append(f"run steps: {len(draft.runs)}")
    for key in ("workdir", "expose", "entrypoint", "cmd", "user"):
        if getattr(draft, key):
            out.append(f"{key}: {getattr(draft, key)}")
    if draft.env:
        out.append("env: " + ", ".join(draft.env))
    if draft.modules:
        out.append("checks import: " + ", ".join(draft.modules))
    return out
