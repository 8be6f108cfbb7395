"""A stream processor program for the tests, run as containerd runs ``ctd-decoder``.

It "decrypts" stdin to stdout with a keystream (SHA-256 of key and block counter, XORed
in): a test of the plumbing, not cryptography. The key is the ``value`` of the
``google.protobuf.Any`` containerd writes on file descriptor 3. Options make it misbehave
in the ways the tests need: fail, hang, exit without reading, leave a helper running.

``encrypt`` (the same XOR) builds the encrypted layers the tests feed it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

from google.protobuf import any_pb2

#: The processor's output is read this much at a time.
_BLOCK = 1 << 16
_DIGEST = 32


def _keystream(key: bytes, offset: int, length: int) -> bytes:
    first = offset // _DIGEST
    last = (offset + length + _DIGEST - 1) // _DIGEST
    stream = b"".join(
        hashlib.sha256(key + i.to_bytes(8, "big")).digest() for i in range(first, last)
    )
    skip = offset - first * _DIGEST
    return stream[skip : skip + length]


def _xor(data: bytes, key: bytes, offset: int) -> bytes:
    ks = _keystream(key, offset, len(data))
    return (int.from_bytes(data, "big") ^ int.from_bytes(ks, "big")).to_bytes(len(data), "big")


def encrypt(data: bytes, key: bytes) -> bytes:
    """``data`` encrypted with ``key`` (decrypting is the same operation)."""
    return _xor(data, key, 0)


def payload_for(key: bytes) -> bytes:
    """The bytes containerd would write on fd 3 for a payload carrying ``key``."""
    return any_pb2.Any(type_url="layerdiff.test/Key", value=key).SerializeToString()


def _read_payload() -> bytes | None:
    try:
        with os.fdopen(3, "rb") as f:
            data = f.read()
    except OSError:  # EBADF: containerd passes fd 3 only when there is a payload
        return None
    msg = any_pb2.Any()
    msg.ParseFromString(data)
    return msg.value


def _sleep_forever() -> None:
    while True:
        time.sleep(3600)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--record", help="write what the processor was given here, as JSON")
    parser.add_argument("--fail", metavar="MESSAGE", help="print MESSAGE on stderr, exit 3")
    parser.add_argument("--hang", action="store_true", help="never read, never exit")
    parser.add_argument("--hang-at-end", action="store_true", help="decrypt, then never exit")
    parser.add_argument("--emit", metavar="FILE", help="write FILE, never read stdin, exit 0")
    parser.add_argument("--helper", action="store_true", help="leave a sleeping child behind")
    parser.add_argument("--after", metavar="FILE", help="first wait (up to 30 s) for FILE")
    args = parser.parse_args()

    key = _read_payload()
    record = {
        "pid": os.getpid(),
        "media_type": os.environ.get("STREAM_PROCESSOR_MEDIATYPE"),
        "extra_env": os.environ.get("LAYERDIFF_TEST_ENV"),
        "payload": None if key is None else key.hex(),
        "helper": None,
    }
    if args.helper:
        helper = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(3600)"], stdout=subprocess.DEVNULL
        )
        record["helper"] = helper.pid
    if args.record:
        with open(args.record + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(args.record + ".tmp", args.record)  # readers never see half a record

    if args.after:
        deadline = time.monotonic() + 30
        while not os.path.exists(args.after) and time.monotonic() < deadline:
            time.sleep(0.01)
    if args.fail is not None:
        print("decrypt: starting", file=sys.stderr)
        print(args.fail, file=sys.stderr)
        return 3
    if args.hang:
        _sleep_forever()
    if args.emit:
        with open(args.emit, "rb") as f:
            sys.stdout.buffer.write(f.read())
        return 0
    if key is None:
        print("decrypt: no key on fd 3", file=sys.stderr)
        return 2
    offset = 0
    out = sys.stdout.buffer
    while data := sys.stdin.buffer.read(_BLOCK):
        out.write(_xor(data, key, offset))
        offset += len(data)
    out.flush()
    if args.hang_at_end:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the output ends here
        _sleep_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
