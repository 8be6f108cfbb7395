"""Regenerate the checked-in gRPC code of ``layerdiff.api`` from its .proto files.

Run ``python -m layerdiff.api.generate`` (or ``scripts/gen-api``) after editing a .proto
file. Needs the test extras (grpcio-tools, mypy-protobuf), which is why nothing else in
layerdiff imports this module.

The .proto files live beside the code they generate and are named from ``src`` as
``layerdiff/api/NAME.proto``: protoc then writes ``from layerdiff.api import x_pb2``
itself, so the generated imports need no rewriting. The protobuf packages inside the
files stay containerd's (``containerd.types``, ``containerd.services.diff.v1``...), and
those, not the file names, are what goes on the wire.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

API_DIR = Path(__file__).resolve().parent
SRC_DIR = API_DIR.parent.parent
PACKAGE = "layerdiff/api"
MESSAGE_SUFFIXES = ("_pb2.py", "_pb2.pyi")
SERVICE_SUFFIXES = ("_pb2_grpc.py", "_pb2_grpc.pyi")


def proto_files() -> list[Path]:
    """The .proto files, sorted."""
    return sorted(API_DIR.glob("*.proto"))


def _has_service(proto: Path) -> bool:
    return any(line.startswith("service ") for line in proto.read_text().splitlines())


def generated_names() -> list[str]:
    """The names of the files generation writes into ``layerdiff/api``, sorted."""
    names = []
    for proto in proto_files():
        suffixes = MESSAGE_SUFFIXES + (SERVICE_SUFFIXES if _has_service(proto) else ())
        names += [proto.stem + suffix for suffix in suffixes]
    return sorted(names)


def generate(out_root: Path) -> list[Path]:
    """Write the generated code under ``out_root/layerdiff/api``; return the files.

    ``out_root`` is ``src`` to update the checked-in code, or a scratch directory to
    compare with it.
    """
    (out_root / PACKAGE).mkdir(parents=True, exist_ok=True)
    protos = proto_files()
    _protoc(["python", "mypy"], out_root, protos)
    # Apart, so that message-only files get no empty *_pb2_grpc modules.
    _protoc(["grpc_python", "mypy_grpc"], out_root, [p for p in protos if _has_service(p)])
    return [out_root / PACKAGE / name for name in generated_names()]


def _protoc(outputs: list[str], out_root: Path, protos: list[Path]) -> None:
    bindir = Path(sys.executable).parent  # the plugins come with mypy-protobuf, beside us
    command = [
        sys.executable, "-m", "grpc_tools.protoc",
        f"--proto_path={SRC_DIR}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        *(f"--{output}_out={out_root}" for output in outputs),
        *(f"{PACKAGE}/{p.name}" for p in protos),
    ]
    # grpc_tools.protoc adds its bundled google/protobuf/*.proto to the include path.
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"protoc failed ({result.returncode}): {result.stderr.strip()}")


def main() -> None:
    """Regenerate the checked-in code in place."""
    for path in generate(SRC_DIR):
        print(path.relative_to(SRC_DIR))


if __name__ == "__main__":
    main()
