"""Stream processors chain a blob's media type down to plain tar, as containerd's do.

The external processor is a real program (tests/support/decrypt_processor.py), run as
containerd runs ctd-decoder. Every test also checks that no child process outlives it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from backports import zstd

from layerdiff import ApplyOptions, apply_layer
from layerdiff.compression import Readable
from layerdiff.config import StreamProcessorConfig
from layerdiff.errors import (
    CanceledError,
    CorruptLayerError,
    DeadlineExceededError,
    ProcessorError,
    SourceError,
    UnsupportedError,
)
from layerdiff.processors import (
    MAX_STAGES,
    DecompressStage,
    ProcessorChain,
    ProcessorRegistry,
    Stage,
    StageOpener,
    compressed_handler,
    diff_compression,
)
from tests.support import tarbuild
from tests.support.decrypt_processor import encrypt, payload_for

PROGRAM = Path(__file__).parent / "support" / "decrypt_processor.py"
TAR = "application/vnd.oci.image.layer.v1.tar"
TAR_GZIP = TAR + "+gzip"
TAR_ENCRYPTED = TAR + "+encrypted"
TAR_GZIP_ENCRYPTED = TAR_GZIP + "+encrypted"
KEY = b"the key"

LAYER = tarbuild.layer(
    tarbuild.dir_("etc", mode=0o755),
    tarbuild.reg("etc/motd", b"hello through a processor\n", mode=0o644),
    tarbuild.reg("big", bytes(range(256)) * 8192, mode=0o600),  # 2 MiB: pipes fill up
)
DIFF_ID = "sha256:" + hashlib.sha256(LAYER).hexdigest()


def _children() -> set[int]:
    """Our child processes that still run or wait to be reaped."""
    me = str(os.getpid())
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if stat[stat.rindex(")") + 2 :].split()[1] == me:
                found.add(int(entry))
    return found


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie someone else must reap does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
    return state != "Z" or ppid == str(os.getpid())


def _processor_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("processor-")]


def _killed(pid: int) -> bool:
    """Whether ``pid`` (a helper, not our child) is gone within a few seconds: SIGKILL is
    sent to it, but its exit is not waited for."""
    deadline = time.monotonic() + 5
    while _running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture(autouse=True)
def no_child_left() -> Iterator[None]:
    before = _children()
    yield
    assert _children() - before == set(), "a processor was left behind"
    deadline = time.monotonic() + 5
    while _processor_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _processor_threads() == []


def _spec(
    *args: str,
    accepts: tuple[str, ...] = (TAR_GZIP_ENCRYPTED,),
    returns: str = TAR_GZIP,
    timeout: float | None = None,
    pid: str = "decrypt",
) -> StreamProcessorConfig:
    return StreamProcessorConfig(
        id=pid,
        accepts=accepts,
        returns=returns,
        path=sys.executable,
        args=(str(PROGRAM), *args),
        env=("LAYERDIFF_TEST_ENV=from config",),
        timeout=timeout,
    )


def _options(*specs: StreamProcessorConfig, key: bytes | None = KEY) -> ApplyOptions:
    payloads = {} if key is None else {"decrypt": payload_for(key)}
    return ApplyOptions(
        processors=ProcessorRegistry.from_config({s.id: s for s in specs}), payloads=payloads
    )


def _record(path: Path) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline, "the processor never started"
        time.sleep(0.01)
    data: dict[str, object] = json.loads(path.read_text())
    return data


# ----------------------------------------------------------------------- the registry


def _named(name: str, accepts: str, calls: list[str]) -> object:
    def handler(media_type: str) -> StageOpener | None:
        calls.append(name)
        if media_type != accepts:
            return None

        def open_stage(stream: Readable, payloads: Mapping[str, bytes]) -> Stage:
            return DecompressStage(stream, decompress=False)

        return open_stage

    return handler


def test_the_last_registered_handler_is_asked_first_and_the_builtin_last() -> None:
    calls: list[str] = []
    registry = ProcessorRegistry()
    registry.register(_named("first", "x/y", calls))  # type: ignore[arg-type]
    registry.register(_named("second", "x/y", calls))  # type: ignore[arg-type]
    registry.lookup("x/y")
    assert calls == ["second"]
    calls.clear()
    registry.lookup(TAR_GZIP)  # neither accepts it: they are asked, then the built-in
    assert calls == ["second", "first"]


def test_configured_processors_are_asked_in_file_order_before_the_builtin(
    tmp_path: Path,
) -> None:
    record = tmp_path / "record.json"
    first = _spec("--record", str(record), accepts=(TAR_GZIP,), returns=TAR, pid="first")
    second = _spec("--fail", "not me", accepts=(TAR_GZIP,), returns=TAR, pid="second")
    registry = ProcessorRegistry.from_config({"first": first, "second": second})
    blob = encrypt(LAYER, KEY)
    with ProcessorChain(TAR_GZIP, io.BytesIO(blob), registry, {"first": payload_for(KEY)}) as c:
        assert b"".join(c) == LAYER
    assert _record(record)["media_type"] == TAR_GZIP


def test_an_unknown_media_type_is_unsupported_by_name(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError, match="'application/x-unknown'"):
        apply_layer(io.BytesIO(LAYER), tmp_path, media_type="application/x-unknown")


def test_a_type_returned_by_a_processor_that_nothing_accepts_names_both(tmp_path: Path) -> None:
    spec = _spec(returns="application/x-after")
    with pytest.raises(UnsupportedError) as err:
        apply_layer(io.BytesIO(b""), tmp_path, _options(spec), media_type=TAR_GZIP_ENCRYPTED)
    assert "'application/x-after'" in str(err.value)
    assert TAR_GZIP_ENCRYPTED in str(err.value)


def test_a_processor_loop_is_cut_and_every_started_process_is_stopped(tmp_path: Path) -> None:
    spec = _spec("--hang", accepts=("x/loop",), returns="x/loop")
    with pytest.raises(UnsupportedError, match=f"more than {MAX_STAGES}"):
        apply_layer(io.BytesIO(b""), tmp_path, _options(spec), media_type="x/loop")


# ------------------------------------------------------- the built-in compression handler

DOCKER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar"
NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"

#: media type -> what containerd's DiffCompression says (None: not implemented).
COMPRESSION_TABLE: dict[str, str | None] = {
    DOCKER: "unknown",
    DOCKER_FOREIGN: "unknown",
    DOCKER + ".gzip": "gzip",
    DOCKER_FOREIGN + ".gzip": "gzip",
    TAR: "",
    TAR_GZIP: "gzip",
    TAR + "+zstd": "zstd",
    NONDIST: "",
    NONDIST + "+gzip": "gzip",
    NONDIST + "+zstd": "zstd",
    # Further suffixes: left for configured processors, except that containerd sorts the
    # suffixes and looks at the last one only.
    TAR_ENCRYPTED: "",
    TAR_GZIP_ENCRYPTED: "gzip",
    TAR + "+zstd+encrypted": "zstd",
    TAR + "+encrypted+gzip": "gzip",
    TAR + "+": "",
    DOCKER + "+encrypted": "",
    DOCKER + ".gzip+encrypted": "",
    # Not layers.
    "": None,
    "application/octet-stream": None,
    "application/vnd.oci.image.config.v1+json": None,
    "application/vnd.oci.image.manifest.v1+json": None,
    TAR + ".gzip": None,
    "application/vnd.docker.image.rootfs.diff.tar.zstd": None,
    "application/vnd.docker.container.image.v1+json": None,
}


@pytest.mark.parametrize(("media_type", "expected"), COMPRESSION_TABLE.items())
def test_diff_compression_matches_containerd(media_type: str, expected: str | None) -> None:
    assert diff_compression(media_type) == expected


@pytest.mark.parametrize(("media_type", "expected"), COMPRESSION_TABLE.items())
def test_the_compressed_handler_decompresses_passes_through_or_refuses(
    media_type: str, expected: str | None
) -> None:
    opener = compressed_handler(media_type)
    if expected is None:
        assert opener is None
        return
    assert opener is not None
    for blob in (gzip.compress(LAYER), zstd.compress(LAYER), LAYER):
        stage = opener(io.BytesIO(blob), {})
        assert stage.media_type == TAR
        # Compression is detected from the magic, whatever the type says, unless the
        # type says "not compressed": then the bytes pass as they are.
        assert b"".join(stage) == (blob if expected == "" else LAYER)


@pytest.mark.parametrize(
    ("media_type", "blob"),
    [
        (DOCKER, LAYER),
        (DOCKER, gzip.compress(LAYER)),  # docker's plain type is often compressed anyway
        (DOCKER + ".gzip", gzip.compress(LAYER)),
        (TAR, LAYER),
        (TAR_GZIP, gzip.compress(LAYER)),
        (TAR + "+zstd", zstd.compress(LAYER)),
    ],
    ids=["docker", "docker-gzipped", "docker-gzip", "oci", "oci-gzip", "oci-zstd"],
)
def test_every_layer_type_applies_with_the_builtin_handler(
    media_type: str, blob: bytes, tmp_path: Path
) -> None:
    desc = apply_layer(io.BytesIO(blob), tmp_path, media_type=media_type)
    assert desc.digest == DIFF_ID
    assert (tmp_path / "etc/motd").read_bytes() == b"hello through a processor\n"


# ------------------------------------------------------------ an external processor


def test_an_encrypted_gzip_layer_is_decrypted_then_decompressed(tmp_path: Path) -> None:
    record = tmp_path / "record.json"
    blob = tmp_path / "layer.blob"
    blob.write_bytes(encrypt(gzip.compress(LAYER), KEY))
    dest = tmp_path / "rootfs"
    dest.mkdir()
    options = _options(_spec("--record", str(record)))
    desc = apply_layer(blob, dest, options, media_type=TAR_GZIP_ENCRYPTED)
    assert (desc.media_type, desc.digest, desc.size) == (TAR, DIFF_ID, len(LAYER))
    assert (dest / "etc/motd").read_bytes() == b"hello through a processor\n"
    assert (dest / "big").read_bytes() == bytes(range(256)) * 8192
    got = _record(record)
    assert got["media_type"] == TAR_GZIP_ENCRYPTED
    assert got["extra_env"] == "from config"
    assert got["payload"] == KEY.hex()  # the Any on fd 3, unpacked by the processor
    assert not _running(int(str(got["pid"])))


def test_a_processor_may_return_plain_tar_directly(tmp_path: Path) -> None:
    spec = _spec(accepts=(TAR_ENCRYPTED,), returns=TAR)
    with ProcessorChain(
        TAR_ENCRYPTED,
        io.BytesIO(encrypt(LAYER, KEY)),
        _options(spec).processors,
        {"decrypt": payload_for(KEY)},
    ) as chain:
        assert [s.media_type for s in chain.stages] == [TAR]
        assert b"".join(chain) == LAYER


def test_a_payload_larger_than_a_pipe_reaches_the_processor(tmp_path: Path) -> None:
    key = os.urandom(300_000)
    small = tarbuild.layer(tarbuild.reg("f", b"x" * 100))
    blob = encrypt(gzip.compress(small), key)
    desc = apply_layer(
        io.BytesIO(blob), tmp_path, _options(_spec(), key=key), media_type=TAR_GZIP_ENCRYPTED
    )
    assert desc.digest == "sha256:" + hashlib.sha256(small).hexdigest()


def test_a_processor_found_through_path_gets_no_fd_3_without_a_payload(tmp_path: Path) -> None:
    # `cat` ignores fd 3; what matters is that a processor with no payload still runs.
    spec = StreamProcessorConfig("cat", (TAR_ENCRYPTED,), TAR_GZIP, "cat")
    registry = ProcessorRegistry.from_config({"cat": spec})
    desc = apply_layer(
        io.BytesIO(gzip.compress(LAYER)),
        tmp_path,
        ApplyOptions(processors=registry),
        media_type=TAR_ENCRYPTED,
    )
    assert desc.digest == DIFF_ID


# ------------------------------------------------------------------------- failures


def test_a_failing_processor_is_named_with_its_status_and_stderr(tmp_path: Path) -> None:
    record = tmp_path / "record.json"
    spec = _spec("--record", str(record), "--fail", "bad key: wrong recipient")
    with pytest.raises(ProcessorError) as err:
        apply_layer(
            io.BytesIO(encrypt(gzip.compress(LAYER), KEY)),
            tmp_path,
            _options(spec),
            media_type=TAR_GZIP_ENCRYPTED,
        )
    assert str(err.value) == (
        "stream processor 'decrypt' failed with exit status 3: "
        "decrypt: starting; bad key: wrong recipient"
    )
    assert not _running(int(str(_record(record)["pid"])))


def test_a_processor_without_its_payload_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ProcessorError, match=r"'decrypt' failed .*no key on fd 3"):
        apply_layer(
            io.BytesIO(encrypt(gzip.compress(LAYER), KEY)),
            tmp_path,
            _options(_spec(), key=None),
            media_type=TAR_GZIP_ENCRYPTED,
        )


def test_a_processor_killed_by_a_signal_says_so(tmp_path: Path) -> None:
    spec = StreamProcessorConfig("seg", (TAR_ENCRYPTED,), TAR, "/bin/sh", ("-c", "kill -SEGV $$"))
    with pytest.raises(ProcessorError, match=r"^stream processor 'seg' was killed by SIGSEGV$"):
        apply_layer(
            io.BytesIO(LAYER),
            tmp_path,
            ApplyOptions(processors=ProcessorRegistry.from_config({"seg": spec})),
            media_type=TAR_ENCRYPTED,
        )


@pytest.mark.parametrize(
    ("path", "message"),
    [("no-such-processor-anywhere", "not found in PATH"), ("/etc/hostname", "cannot run")],
)
def test_a_processor_that_cannot_start_is_named(path: str, message: str, tmp_path: Path) -> None:
    spec = StreamProcessorConfig("p", (TAR_ENCRYPTED,), TAR, path)
    with pytest.raises(ProcessorError, match=rf"^stream processor 'p': .*{message}"):
        apply_layer(
            io.BytesIO(LAYER),
            tmp_path,
            ApplyOptions(processors=ProcessorRegistry.from_config({"p": spec})),
            media_type=TAR_ENCRYPTED,
        )


@pytest.mark.parametrize("mode", ["--hang", "--hang-at-end"])
def test_a_processor_that_hangs_is_killed_at_its_time_limit(mode: str, tmp_path: Path) -> None:
    record = tmp_path / "record.json"
    spec = _spec("--record", str(record), "--helper", mode, timeout=1)
    dest = tmp_path / "rootfs"
    dest.mkdir()
    start = time.monotonic()
    with pytest.raises(DeadlineExceededError) as err:
        apply_layer(
            io.BytesIO(encrypt(gzip.compress(LAYER), KEY)),
            dest,
            _options(spec),
            media_type=TAR_GZIP_ENCRYPTED,
        )
    assert time.monotonic() - start < 10
    assert str(err.value) == (
        "stream processor 'decrypt' ran past its time limit of 1s and was killed"
    )
    got = _record(record)
    assert not _running(int(str(got["pid"])))
    assert _killed(int(str(got["helper"])))  # its whole process group went


def test_a_helper_left_behind_by_a_successful_processor_is_stopped(tmp_path: Path) -> None:
    record = tmp_path / "record.json"
    spec = _spec("--record", str(record), "--helper")
    desc = apply_layer(
        io.BytesIO(encrypt(gzip.compress(LAYER), KEY)),
        tmp_path,
        _options(spec),
        media_type=TAR_GZIP_ENCRYPTED,
    )
    assert desc.digest == DIFF_ID
    assert _killed(int(str(_record(record)["helper"])))


def test_a_processor_that_never_reads_its_input_may_still_succeed(tmp_path: Path) -> None:
    emitted = tmp_path / "emitted.tar"
    emitted.write_bytes(LAYER)
    spec = _spec("--emit", str(emitted), accepts=(TAR_ENCRYPTED,), returns=TAR)
    dest = tmp_path / "rootfs"
    dest.mkdir()
    blob = os.urandom(8 << 20)  # far more than a pipe holds: the feeder must not block
    desc = apply_layer(io.BytesIO(blob), dest, _options(spec), media_type=TAR_ENCRYPTED)
    assert desc.digest == DIFF_ID


def test_a_processor_that_fails_without_reading_does_not_block_the_feeder(
    tmp_path: Path,
) -> None:
    spec = _spec("--fail", "refused", accepts=(TAR_ENCRYPTED,), returns=TAR)
    with pytest.raises(ProcessorError, match=r"exit status 3: decrypt: starting; refused$"):
        apply_layer(
            io.BytesIO(os.urandom(8 << 20)), tmp_path, _options(spec), media_type=TAR_ENCRYPTED
        )


class _BrokenSource(io.RawIOBase):
    """Gives some bytes of a blob, then fails as a disk would."""

    def __init__(self, data: bytes, fail_at: int) -> None:
        self._data = data
        self._pos = 0
        self._fail_at = fail_at

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._pos >= self._fail_at:
            raise OSError(5, "Input/output error")
        n = min(len(buffer), self._fail_at - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def test_an_error_upstream_of_a_processor_is_reported_as_itself(tmp_path: Path) -> None:
    blob = encrypt(gzip.compress(LAYER), KEY)
    source = io.BufferedReader(_BrokenSource(blob, len(blob) // 2))
    with pytest.raises(SourceError, match="Input/output error"):
        apply_layer(source, tmp_path, _options(_spec()), media_type=TAR_GZIP_ENCRYPTED)


def test_a_failure_while_applying_stops_a_processor_that_would_never_end(
    tmp_path: Path,
) -> None:
    # The processor's output is not a tar, and the processor never exits (no time limit):
    # the applier's error must come at once, and the processor must go with it.
    record = tmp_path / "record.json"
    spec = _spec("--record", str(record), "--hang-at-end", accepts=(TAR_ENCRYPTED,), returns=TAR)
    start = time.monotonic()
    with pytest.raises(CorruptLayerError):
        apply_layer(
            io.BytesIO(encrypt(b"\x01" * 4096, KEY)),
            tmp_path,
            _options(spec),
            media_type=TAR_ENCRYPTED,
        )
    assert time.monotonic() - start < 10
    assert not _running(int(str(_record(record)["pid"])))


def test_closing_the_chain_from_another_thread_cancels_a_blocked_read(tmp_path: Path) -> None:
    record = tmp_path / "record.json"
    spec = _spec("--record", str(record), "--hang", accepts=(TAR_ENCRYPTED,), returns=TAR)
    errors: list[BaseException] = []
    chain = ProcessorChain(
        TAR_ENCRYPTED, io.BytesIO(b"x"), _options(spec).processors, {"decrypt": b""}
    )

    def read() -> None:
        try:
            b"".join(chain)
        except BaseException as err:
            errors.append(err)

    reader = threading.Thread(target=read)
    reader.start()
    pid = int(str(_record(record)["pid"]))
    chain.close()
    reader.join(10)
    assert not reader.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], CanceledError)
    assert str(errors[0]) == "stream processor 'decrypt' was stopped"
    assert not _running(pid)


def test_a_chain_abandoned_midway_leaves_no_process(tmp_path: Path) -> None:
    blob = encrypt(gzip.compress(LAYER), KEY)
    with ProcessorChain(
        TAR_GZIP_ENCRYPTED,
        io.BytesIO(blob),
        _options(_spec()).processors,
        {"decrypt": payload_for(KEY)},
    ) as chain:
        assert next(iter(chain))


WRAPPED = TAR_GZIP_ENCRYPTED + "+wrapped"


def _two_stage_options(outer: StreamProcessorConfig, inner: StreamProcessorConfig) -> ApplyOptions:
    return ApplyOptions(
        processors=ProcessorRegistry.from_config({"outer": outer, "decrypt": inner}),
        payloads={"outer": payload_for(b"outer key"), "decrypt": payload_for(KEY)},
    )


def test_two_external_processors_chain_each_with_its_own_payload(tmp_path: Path) -> None:
    outer = _spec(accepts=(WRAPPED,), returns=TAR_GZIP_ENCRYPTED, pid="outer")
    blob = encrypt(encrypt(gzip.compress(LAYER), KEY), b"outer key")
    options = _two_stage_options(outer, _spec())
    with ProcessorChain(WRAPPED, io.BytesIO(blob), options.processors, options.payloads) as c:
        assert [s.media_type for s in c.stages] == [TAR_GZIP_ENCRYPTED, TAR_GZIP, TAR]
    desc = apply_layer(io.BytesIO(blob), tmp_path, options, media_type=WRAPPED)
    assert desc.digest == DIFF_ID


def test_a_failing_stage_is_reported_at_once_while_an_earlier_one_hangs(tmp_path: Path) -> None:
    record = tmp_path / "record.json"
    outer = _spec(
        "--record",
        str(record),
        "--hang",
        accepts=(WRAPPED,),
        returns=TAR_GZIP_ENCRYPTED,
        pid="outer",
        # Not waited for: were it, its time limit would end the apply with its own error.
        timeout=120,
    )
    # Fails once the outer one runs: were it faster, the outer one would be killed
    # before it could record its pid, and nothing would show it was stopped.
    inner = _spec("--after", str(record), "--fail", "inner gave up")
    with pytest.raises(ProcessorError, match=r"^stream processor 'decrypt' failed"):
        apply_layer(
            io.BytesIO(b"x" * 100),
            tmp_path,
            _two_stage_options(outer, inner),
            media_type=WRAPPED,
        )
    assert not _running(int(str(_record(record)["pid"])))
