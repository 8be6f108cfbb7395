"""The checked-in gRPC code is what its .proto files generate, and speaks containerd's wire."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path

import pytest
from google.protobuf.message import Message

from layerdiff.api import content_pb2, descriptor_pb2, diff_pb2, generate, mount_pb2


def _generated_with() -> str:
    text = (generate.API_DIR / "diff_pb2_grpc.py").read_text()
    found = re.search(r"^GRPC_GENERATED_VERSION = '([^']+)'", text, re.MULTILINE)
    return found[1] if found else "?"


def test_checked_in_code_is_current(tmp_path: Path) -> None:
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.skip("grpcio-tools is not installed (pip install -e '.[test]')")
    fresh = generate.generate(tmp_path)
    checked_in = sorted(p.name for p in generate.API_DIR.glob("*_pb2*.py*"))
    assert checked_in == generate.generated_names(), (
        "generated files are missing or left over: run python -m layerdiff.api.generate"
    )
    # Another grpcio-tools writes other code: say so rather than blame the protos.
    tools = f"checked in from grpcio-tools {_generated_with()}, " + (
        f"installed {importlib.metadata.version('grpcio-tools')}"
    )
    for new in fresh:
        old = generate.API_DIR / new.name
        assert old.read_bytes() == new.read_bytes(), (
            f"{old} is stale ({tools}): run python -m layerdiff.api.generate"
        )


def test_service_methods_have_containerds_full_names() -> None:
    methods = {
        f"/{service.full_name}/{method.name}"
        for module in (diff_pb2, content_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert methods == {
        "/containerd.services.diff.v1.Diff/Apply",
        "/containerd.services.diff.v1.Diff/Diff",
        *(
            f"/containerd.services.content.v1.Content/{name}"
            for name in (
                "Info", "Update", "List", "Delete", "Read", "Status", "ListStatuses",
                "Write", "Abort",
            )
        ),
    }


@pytest.mark.parametrize(
    ("message", "fields"),
    [
        (descriptor_pb2.Descriptor, {"media_type": 1, "digest": 2, "size": 3, "annotations": 5}),
        (mount_pb2.Mount, {"type": 1, "source": 2, "target": 3, "options": 4}),
        (
            diff_pb2.ApplyRequest,
            {"diff": 1, "mounts": 2, "payloads": 3, "sync_fs": 4},
        ),
        (diff_pb2.ApplyResponse, {"applied": 1}),
        (
            diff_pb2.DiffRequest,
            {
                "left": 1, "right": 2, "media_type": 3, "ref": 4, "labels": 5,
                "source_date_epoch": 6,
            },
        ),
        (diff_pb2.DiffResponse, {"diff": 3}),
        (
            content_pb2.WriteContentRequest,
            {
                "action": 1, "ref": 2, "total": 3, "expected": 4, "offset": 5, "data": 6,
                "labels": 7,
            },
        ),
    ],
)
def test_field_numbers_are_containerds(message: type[Message], fields: dict[str, int]) -> None:
    numbers = {f.name: f.number for f in message.DESCRIPTOR.fields}
    assert numbers == fields


def test_messages_are_in_containerds_packages() -> None:
    assert descriptor_pb2.Descriptor.DESCRIPTOR.full_name == "containerd.types.Descriptor"
    assert mount_pb2.Mount.DESCRIPTOR.full_name == "containerd.types.Mount"
    assert content_pb2.Info.DESCRIPTOR.full_name == "containerd.services.content.v1.Info"
