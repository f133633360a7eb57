"""Regenerate the Python gRPC code for protos/rlhf/v1 into services/proto.

protoc writes `from rlhf.v1 import x_pb2` for a proto in package rlhf.v1; we
keep the generated code inside the `services` package, so those imports are
rewritten to `services.proto.rlhf.v1`.
"""

import argparse
import re
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
DEFAULT_OUT = ROOT / "services" / "proto"
IMPORT_PREFIX = "services.proto."


def generate(out: Path) -> list[Path]:
    """Compile every proto under protos/rlhf into `out`; return the files written."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "rlhf").rglob("*.proto"))
    well_known = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    out.mkdir(parents=True, exist_ok=True)
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    written = sorted(p for p in out.rglob("*.py*") if p.suffix in (".py", ".pyi"))
    for path in written:
        text = re.sub(r"^from rlhf\.", f"from {IMPORT_PREFIX}rlhf.", path.read_text(), flags=re.MULTILINE)
        path.write_text(text)
    for package in {p.parent for p in written} | {out, out / "rlhf"}:
        (package / "__init__.py").touch()
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    written = generate(parser.parse_args().out)
    print(f"generated {len(written)} files", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
