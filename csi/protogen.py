"""Regenerate the Python stubs of ``protos/csi.proto`` into ``csi/generated``.

grpcio-tools writes ``import csi_pb2`` into the service module, which only works when
the output directory is on ``sys.path``. The stubs live inside the ``csi`` package, so
the import is rewritten to the package path; a unit test regenerates into a temp dir
and compares, so committed stubs can never drift from the proto.

grpcio-tools is a development dependency, imported only when generating.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = REPO_ROOT / "protos"
PROTO_FILE = "csi.proto"
OUTPUT_DIR = REPO_ROOT / "csi" / "generated"
PACKAGE = "csi.generated"
GENERATED_FILES = ("csi_pb2.py", "csi_pb2.pyi", "csi_pb2_grpc.py")

_HEADER = "# Generated from protos/csi.proto by scripts/generate-protos.sh; do not edit.\n"


def _fix_imports(text: str) -> str:
    """Point the service module's sibling import at the package instead of the top level."""
    return re.sub(
        r"^import csi_pb2 as csi__pb2$", f"from {PACKAGE} import csi_pb2 as csi__pb2", text, flags=re.M
    )


def generate(output_dir: Path) -> list[Path]:
    """Compile the proto into ``output_dir`` and return the files written."""
    from grpc_tools import protoc  # development dependency

    include = Path(protoc.__file__).resolve().parent / "_proto"
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as raw_dir:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"-I{include}",
            f"--python_out={raw_dir}",
            f"--pyi_out={raw_dir}",
            f"--grpc_python_out={raw_dir}",
            str(PROTO_DIR / PROTO_FILE),
        ]
        status = protoc.main(args)
        if status != 0:
            raise RuntimeError(f"protoc failed with status {status}")
        written = []
        for name in GENERATED_FILES:
            text = (Path(raw_dir) / name).read_text()
            target = output_dir / name
            target.write_text(_HEADER + _fix_imports(text))
            written.append(target)
    init = output_dir / "__init__.py"
    if not init.exists():
        init.write_text('"""Stubs generated from protos/csi.proto (CSI v1.12.0 wire format)."""\n')
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate the CSI Python stubs from protos/csi.proto.")
    parser.add_argument(
        "--out", type=Path, default=OUTPUT_DIR, help="output directory (default: csi/generated)"
    )
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
