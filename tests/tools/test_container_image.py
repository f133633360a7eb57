"""The image build's own logic: when an image is up to date, and what of pip's configuration the build mounts."""

from services.tools.container_image import BUILD_INPUTS, pip_mounts, source_digest


def test_the_source_digest_follows_the_build_inputs_and_ignores_bytecode(tmp_path):
    for name in BUILD_INPUTS:
        if "." in name or name == "Dockerfile":
            (tmp_path / name).write_text(name)
        else:
            (tmp_path / name / "pkg").mkdir(parents=True)
            (tmp_path / name / "pkg" / "mod.py").write_text("x = 1\n")
    before = source_digest(tmp_path)
    (tmp_path / "services" / "pkg" / "__pycache__").mkdir()
    (tmp_path / "services" / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "tests").mkdir()  # not copied into the image
    (tmp_path / "tests" / "test_x.py").write_text("")
    assert source_digest(tmp_path) == before
    (tmp_path / "services" / "pkg" / "mod.py").write_text("x = 2\n")
    assert source_digest(tmp_path) != before


def test_the_build_mounts_what_pip_points_at_and_a_simple_index_with_its_files(tmp_path):
    (tmp_path / "wheels").mkdir()
    (tmp_path / "pypi" / "simple").mkdir(parents=True)
    (tmp_path / "ca.crt").write_text("")
    settings = {
        "find-links": str(tmp_path / "wheels"),
        "extra-index-url": f"file://{tmp_path}/pypi/simple https://example.org/simple file:///nowhere/simple",
        "cert": str(tmp_path / "ca.crt"),
        "default-timeout": "180",
    }
    assert sorted(pip_mounts(settings)) == sorted([tmp_path / "wheels", tmp_path / "pypi", tmp_path / "ca.crt"])
