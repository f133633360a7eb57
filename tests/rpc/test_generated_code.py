import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_generated_code_matches_the_protos(tmp_path):
    """Fails when a .proto changed without `make proto`."""
    spec = importlib.util.spec_from_file_location("generate", ROOT / "protos" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    fresh = generate.generate(tmp_path)
    assert fresh, "no protos found"
    checked_in = ROOT / "services" / "proto"
    for path in fresh:
        relative = path.relative_to(tmp_path)
        assert (checked_in / relative).read_text() == path.read_text(), f"{relative} is stale: run `make proto`"
    generated_names = {p.relative_to(tmp_path) for p in fresh}
    extra = {p.relative_to(checked_in) for p in checked_in.rglob("*_pb2*.py*")} - generated_names
    assert not extra, f"generated files without a proto: {sorted(map(str, extra))}"
