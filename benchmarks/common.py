"""What every benchmark module shares: the error, the tool paths, running a command."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import IO

from layerdiff.errors import LayerdiffError

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = Path("/var/cache/layerdiff-bench")
# .ci/fetch-bench-tools puts pigz (and debootstrap) here; never the target's PATH.
TOOLS_DIR = DEFAULT_CACHE / "tools"


class BenchError(LayerdiffError):
    """The benchmark cannot run as asked (a missing tool, not root, a failed step)."""


def is_root() -> bool:
    """Whether this process may mount, mknod and run containerd."""
    return os.geteuid() == 0


def system_tool(name: str) -> str:
    """The absolute path of a tool of the system (never one found in a target)."""
    for directory in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    raise BenchError(f"{name} is not installed in /usr/bin or /usr/sbin")


def private_tools(tools_dir: Path = TOOLS_DIR) -> Path:
    """The bin folder of .ci/fetch-bench-tools, fetching the tools on first use."""
    bindir = tools_dir / "root/usr/bin"
    if not os.access(bindir / "pigz", os.X_OK):
        if not is_root():
            raise BenchError("pigz is missing: run .ci/fetch-bench-tools as root")
        result = subprocess.run(
            ["bash", str(REPO / ".ci/fetch-bench-tools"), str(tools_dir)],
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise BenchError(f"fetch-bench-tools failed: {result.stderr.strip()[-300:]}")
    return bindir


def run(
    argv: list[str],
    *,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | int | None = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
) -> None:
    """Run a preparation step; a failure is a ``BenchError`` with the command's stderr."""
    result = subprocess.run(argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env,
                            check=False)
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()
        raise BenchError(f"{os.path.basename(argv[0])} failed ({result.returncode}): "
                         f"{stderr[-300:]}")


def remove_tree(path: Path) -> None:
    """Remove a directory tree if it is there (rm -rf: faster than shutil on big trees)."""
    if path.exists() or path.is_symlink():
        run([system_tool("rm"), "-rf", "--one-file-system", "--", str(path)])
