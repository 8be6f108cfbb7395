"""``python -m tests.fuzz.seeds [DIR]``: write each target's seed corpus under DIR.

DIR defaults to ``.cache/fuzz/corpus`` (ignored by git); each target gets DIR/TARGET.
The apply seeds are the layers of ``tests.support.corpus`` (ordinary, edge and hostile
cases), each prefixed with a ``Setting`` byte that spreads them over the settings; the
others are typical inputs of each parser. Files are named by content, so rerunning the
script next to a corpus the fuzzer grew adds nothing twice.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

from layerdiff import WhiteoutMode
from tests.fuzz import TARGETS
from tests.fuzz.fuzz_apply import Setting
from tests.support import corpus

DEFAULT_DIR = Path(".cache/fuzz/corpus")

#: Larger corpus layers (bombs of headers, long files) are left out: libFuzzer mutates
#: small inputs best, and every seed is rerun at the start of each session.
MAX_SEED_BYTES = 64 << 10

#: ``ConsumeUnicode``'s first byte: odd means the characters that follow are ASCII.
ASCII = b"\x01"

MOUNT_TEXTS = [
    "type=bind,source=/src,options=rbind,ro",
    "type=overlay,source=overlay,options=lowerdir=/l2:/l1,upperdir=/u,workdir=/w",
    "type=tmpfs,source=tmpfs,target=sub/dir,options=size=64m,mode=755,nodev,nosuid",
    "type=ext4,source=/img,options=loop,direct-io,rshared,noatime",
    r"type=overlay,source=a\,b,options=lowerdir=/with\:colon\,comma,userxattr",
    '{"type": "bind", "source": "/s", "options": ["rbind", "ro"]}',
    '[{"type": "overlay", "source": "overlay", "target": "", "options": '
    '["lowerdir=/a:/b", "upperdir=/u", "workdir=/w"]}, {"type": "tmpfs", "source": "t"}]',
]

FILTER_TEXTS = [
    "digest==sha256:0123",
    'labels."containerd.io/uncompressed"',
    "labels.tag~=/^v1[.]/,size!=0",
    "name~=|a\\|b|\nlabels.x==\"quoted \\\"value\\\"\\n\"",
    "labels.a,labels.b==c d",
]


def apply_seeds() -> Iterator[bytes]:
    """Every distinct small layer of the corpus, behind a ``Setting`` byte."""
    layers = dict.fromkeys(blob for case in corpus.CASES for blob in case.layers
                           if len(blob) <= MAX_SEED_BYTES)
    for i, blob in enumerate(layers):
        mode = (WhiteoutMode.NAIVE, WhiteoutMode.OVERLAY, WhiteoutMode.AUFS)[i % 3]
        setting = Setting(gzip=i % 2 == 1, mode=mode, strict_oci=i % 5 == 0,
                          base_tree=i % 4 != 0, repair=i % 7 != 0)
        yield bytes([setting.encode()]) + blob


def seeds(target: str) -> list[bytes]:
    """The seed inputs of ``target`` (one of ``tests.fuzz.TARGETS``)."""
    if target == "apply":
        return list(apply_seeds())
    texts = MOUNT_TEXTS if target == "mount_options" else FILTER_TEXTS
    return [ASCII + text.encode() for text in texts]


def write_seeds(directory: Path, target: str) -> int:
    """Write ``target``'s seeds into ``directory`` (made if missing); return their number."""
    directory.mkdir(parents=True, exist_ok=True)
    inputs = seeds(target)
    for data in inputs:
        (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)
    return len(inputs)


def main(argv: list[str]) -> int:
    """Write every target's seeds under ``argv[1]`` (or ``DEFAULT_DIR``)."""
    top = Path(argv[1]) if len(argv) > 1 else DEFAULT_DIR
    for target in TARGETS:
        count = write_seeds(top / target, target)
        print(f"{top / target}: {count} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
