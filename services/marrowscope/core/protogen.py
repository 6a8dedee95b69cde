"""Generate the Python gRPC code from protos/ (``make protos``).

The sources live in ``protos/marrowscope/v1``; the generated modules go to
``services/marrowscope/v1``, the file path of their import path ``marrowscope.v1``. A test regenerates into a temporary folder and compares, so checked-in code
can never drift from the contracts.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
PROTO_ROOT = REPO_ROOT / "protos"
GENERATED_ROOT = REPO_ROOT / "services"  # + marrowscope/v1: the package marrowscope.v1


def proto_files(root: Path = PROTO_ROOT) -> list[Path]:
    return sorted((root / "marrowscope" / "v1").glob("*.proto"))


def generate(out_dir: Path, root: Path = PROTO_ROOT) -> list[Path]:
    """Run protoc for every .proto under ``root`` into ``out_dir``; return the files written."""
    from grpc_tools import protoc  # dev dependency: only generation needs it

    well_known = resources.files("grpc_tools") / "_proto"
    files = [str(p.relative_to(root)) for p in proto_files(root)]
    args = [
        "protoc",
        f"-I{root}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed for {files}")
    return sorted((out_dir / "marrowscope" / "v1").glob("*_pb2*.py*"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=GENERATED_ROOT)
    args = parser.parse_args(argv)
    written = generate(args.out)
    print(f"generated {len(written)} files under {args.out / 'marrowscope' / 'v1'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
