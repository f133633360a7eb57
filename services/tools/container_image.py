"""Build the project's Dockerfile and run its image here, with no registry and no Docker engine.

Nothing is pulled: the Python base image is made once with debootstrap (Debian
bookworm, whose python3 is 3.11) and imported into podman's storage; buildah
builds the Dockerfile on it through its `PYTHON_IMAGE` build argument, so the
Dockerfile users build stays the one this builds. Both tools run as root with
chroot isolation (no user namespaces needed), on a storage of the project's
own in the cache: the overlay driver where the kernel allows it (layers are
diffs, a container starts at once), else vfs (every layer and every container
a full copy of the files: minutes and gigabytes). pip inside the build reads
this machine's pip configuration (its indexes and wheel folders, mounted
read-only), because the torch index the Dockerfile names for the CPU variant is
not reachable from everywhere.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from services.core.errors import PreconditionError
from services.models.loading import cache_dir

REPO = Path(__file__).resolve().parents[2]
IMAGE = "localhost/rlhf-loop:cpu"
LABELSTUDIO_IMAGE = "localhost/rlhf-loop-labelstudio:1.23.2"  # deploy/compose/labelstudio.Dockerfile
BASE_IMAGE = "localhost/rlhf-loop-python:3.11-bookworm"
DEFAULT_INDEX = "https://pypi.org/simple"
# python-is-python3 puts `python` on PATH, as the official python images have it; the Dockerfile calls `python`.
BASE_PACKAGES = "python3,python3-venv,python-is-python3,ca-certificates"
# What a minbase root filesystem carries that no container needs (apt's caches, docs, translations).
BASE_TRIM = ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale")
TOOLS = ("debootstrap", "buildah", "podman", "runc")
# What the Dockerfile copies, and the Dockerfile: an image labelled with their digest is up to date.
BUILD_INPUTS = ("Dockerfile", ".dockerignore", "pyproject.toml", "constraints.txt", "README.md", "protos", "services",
                "labelstudio_backend")  # fmt: skip
DIGEST_LABEL = "rlhf-loop.source-digest"
BuildArgs = Callable[[dict[str, str]], dict[str, str]]  # the Dockerfile's build arguments, from pip's settings


def image_dir() -> Path:
    return cache_dir() / "image"


CONTAINERS_CONF = """\
[containers]
# the sandbox cannot raise rlimits: podman's default ulimits fail every start
default_ulimits = []

[engine]
# crun refuses this machine's hybrid cgroups; no systemd to manage them
runtime = "runc"
cgroup_manager = "cgroupfs"
"""


def container_env() -> dict[str, str]:
    """The environment podman and buildah (and podman-compose, which runs podman) need here.

    containers.conf holds the engine settings this machine needs; storage.conf
    names the project's storage and its driver, chosen once.
    """
    folder = image_dir()
    conf, storage = folder / "containers.conf", folder / "storage.conf"
    if not conf.is_file() or conf.read_text() != CONTAINERS_CONF:
        folder.mkdir(parents=True, exist_ok=True)
        conf.write_text(CONTAINERS_CONF)
    env = {**os.environ, "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}
    if not storage.is_file():
        _choose_storage_driver(storage, env)
    return env


def _choose_storage_driver(storage: Path, env: dict[str, str]) -> None:
    for driver in ("overlay", "vfs"):
        root = storage.parent / f"storage-{driver}"
        storage.write_text(f'[storage]\ndriver = "{driver}"\ngraphroot = "{root}"\nrunroot = "{root}-run"\n')
        probe = subprocess.run(["podman", "info", "--format", "{{.Store.GraphDriverName}}"], env=env,
                               capture_output=True, text=True)  # fmt: skip
        if probe.returncode == 0 and probe.stdout.strip() == driver:
            return
    storage.unlink()
    raise PreconditionError(f"podman cannot start a storage here: {probe.stderr.strip()}")


def check_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise PreconditionError(f"{', '.join(missing)} not installed: run `make tools` (Debian packages)")
    if os.geteuid() != 0:
        raise PreconditionError("building and running the image here needs root (its own storage, chroot isolation)")


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], env=container_env(), check=check, capture_output=True, text=True)


def image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def image_size_bytes(name: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", name).stdout.strip())


def source_digest(root: Path = REPO, inputs: tuple[str, ...] = BUILD_INPUTS) -> str:
    """A digest of the build's inputs, bytecode aside (the image compiles its own)."""
    digest = hashlib.sha256()
    for name in inputs:
        top = root / name
        files = sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else [top]
        for path in files:
            if "__pycache__" in path.parts:
                continue
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def image_digest_label(name: str) -> str | None:
    if not image_exists(name):
        return None
    label = podman("image", "inspect", "--format", f'{{{{index .Labels "{DIGEST_LABEL}"}}}}', name).stdout.strip()
    return label or None


def ensure_base_image(progress: Callable[[str], None] = print) -> None:
    """The Python base in podman's storage, from a root filesystem made once and kept in the cache."""
    if image_exists(BASE_IMAGE):
        return
    tarball = image_dir() / "python-3.11-bookworm.tar"
    if not tarball.is_file():
        progress("making the Python base image with debootstrap (once per machine, ~1 min)")
        _debootstrap(tarball)
    progress(f"importing {BASE_IMAGE}")
    with tarball.open("rb") as source:
        subprocess.run(["podman", "import", "-", BASE_IMAGE], stdin=source, env=container_env(), check=True,
                       capture_output=True)  # fmt: skip


def _debootstrap(tarball: Path) -> None:
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tarball.parent) as scratch:
        root = Path(scratch) / "rootfs"
        log = tarball.parent / "debootstrap.log"
        with log.open("w") as out:
            done = subprocess.run(
                ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", str(root)],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        if done.returncode != 0:
            raise PreconditionError(f"debootstrap failed ({done.returncode}); see {log}")
        for trimmed in BASE_TRIM:
            shutil.rmtree(root / trimmed, ignore_errors=True)
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True)
        partial.replace(tarball)  # a half-written base is never imported


def pip_settings() -> dict[str, str]:
    """This machine's effective pip settings (`pip config list`: files and PIP_* variables, the last one wins)."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                            check=True).stdout  # fmt: skip
    settings: dict[str, str] = {}
    for line in listed.splitlines():
        scoped_key, _, quoted = line.partition("=")
        key = scoped_key.split(".", 1)[-1]
        settings[key] = quoted.strip().strip("'\"")
    return settings


def pip_mounts(settings: dict[str, str]) -> Iterator[Path]:
    """The local paths pip's settings point at; a `file://…/simple` index needs its parent (links go ../../files)."""
    for value in settings.values():
        for token in value.split():
            path = Path(token.removeprefix("file://")) if token.startswith(("file://", "/")) else None
            if path is None or not path.exists():
                continue
            yield path.parent if token.startswith("file://") and path.name == "simple" else path


def build_image(tag: str = IMAGE, progress: Callable[[str], None] = print) -> dict:
    """Build the Dockerfile's CPU variant as `tag`, unless the image already holds this tree.

    buildah's layer cache spares the dependency layers when only the code
    changed; copying the venv into the runtime stage is never cached, so an
    image labelled with this tree's digest is not rebuilt.
    """

    def build_args(pip: dict[str, str]) -> dict[str, str]:
        return {"VARIANT": "cpu", "CPU_WHEELS": pip.get("index-url", DEFAULT_INDEX)}

    return _build(tag, REPO, "Dockerfile", BUILD_INPUTS, build_args, progress)


def build_labelstudio_image(progress: Callable[[str], None] = print) -> dict:
    """Label Studio from PyPI on the same Python base: the compose stack's `labelstudio` on this machine."""
    context = REPO / "deploy" / "compose"
    return _build(LABELSTUDIO_IMAGE, context, "labelstudio.Dockerfile", ("labelstudio.Dockerfile",),
                  lambda pip: {}, progress)  # fmt: skip


def _build(tag: str, context: Path, dockerfile: str, inputs: tuple[str, ...], build_args: BuildArgs,
           progress: Callable[[str], None]) -> dict:  # fmt: skip
    check_tools()
    if not (context / dockerfile).is_file():
        raise PreconditionError(f"no {context / dockerfile}: build the images from a checkout of rlhf-loop")
    digest = source_digest(context, inputs)
    if image_digest_label(tag) == digest:
        return {"image": tag, "build_seconds": 0.0, "image_bytes": image_size_bytes(tag), "up_to_date": True}
    ensure_base_image(progress)
    settings = pip_settings()
    pip_conf = image_dir() / "pip.conf"
    pip_conf.write_text("[global]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items()))
    volumes = [f"{pip_conf}:/etc/pip.conf:ro"]
    volumes += [f"{path}:{path}:ro" for path in sorted(set(pip_mounts(settings)))]
    args = {"PYTHON_IMAGE": BASE_IMAGE, **build_args(settings)}
    command = [
        "buildah", "bud", "--isolation", "chroot", "--network", "host", "--layers", "--file", str(context / dockerfile),
        *[flag for name, value in args.items() for flag in ("--build-arg", f"{name}={value}")],
        "--label", f"{DIGEST_LABEL}={digest}",
        *[flag for volume in volumes for flag in ("--volume", volume)],
        "--tag", tag, str(context),
    ]  # fmt: skip
    previous = podman("image", "inspect", "--format", "{{.Id}}", tag, check=False).stdout.strip()
    progress(f"building {tag} from {context / dockerfile} (minutes the first time)")
    log = image_dir() / f"build-{tag.rsplit('/', 1)[-1].replace(':', '-')}.log"
    started = time.monotonic()
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=container_env())
    if done.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise PreconditionError(f"the image build failed ({done.returncode}); {log} ends:\n{tail}")
    built = podman("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
    if previous and previous != built:  # the tag moved: drop the old image's own layers; the build cache stays
        podman("rmi", previous, check=False)
    return {"image": tag, "build_seconds": round(time.monotonic() - started, 1),
            "image_bytes": image_size_bytes(tag), "up_to_date": False}  # fmt: skip
