"""`make install` installs exactly what constraints.txt locks: the versions the suite last passed with."""

from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", line
            pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def test_every_installed_dependency_is_the_locked_version():
    pins = locked()
    # every dependency, dev extras included: the suite runs with them
    wanted = {canonicalize_name(Requirement(r).name) for r in metadata.requires("rlhf-loop") or []}
    assert wanted <= set(pins), f"not locked: {sorted(wanted - set(pins))}"
    for name, version in pins.items():
        installed = metadata.version(name).split("+")[0]  # torch's +cpu / +cu130 label is not locked
        assert installed == version, f"{name} {installed} is installed, constraints.txt locks {version}"
