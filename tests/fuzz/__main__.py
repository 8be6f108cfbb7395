"""``python -m tests.fuzz TARGET [libFuzzer options] [CORPUS_DIR...]``: run one target.

TARGET is ``apply``, ``mount_options`` or ``filters`` (the module ``fuzz_TARGET``).
The target is imported under atheris's instrumentation so that libFuzzer sees the
coverage of layerdiff's code; every option libFuzzer knows (``-runs=``,
``-max_total_time=``, ``-jobs=``, a crash file to replay...) passes through.
"""

from __future__ import annotations

import importlib
import logging
import shlex
import sys

from tests.fuzz import TARGETS, _atheris


def main(argv: list[str]) -> int:
    """Run the target named by ``argv[1]`` with the rest of ``argv`` as libFuzzer's."""
    if len(argv) < 2 or argv[1] not in TARGETS:
        print(f"usage: python -m tests.fuzz {{{','.join(TARGETS)}}} [libFuzzer args]",
              file=sys.stderr)
        return 2
    # The applier logs what it skips (xattrs it may not set...): noise at 1000 runs/s.
    logging.disable(logging.WARNING)
    with _atheris.instrument_imports(["layerdiff"]):
        target = importlib.import_module(f"tests.fuzz.fuzz_{argv[1]}")
    # libFuzzer reruns argv[0] through the shell for -minimize_crash, -jobs and -fork:
    # make it a command line that runs this same target.
    command = shlex.join([sys.executable, "-m", "tests.fuzz", argv[1]])
    _atheris.fuzz([command, *argv[2:]], target.test_one_input)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
