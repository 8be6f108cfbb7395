"""Progress of long work on standard error: a redrawn line on a terminal, log lines with
``-v`` otherwise, nothing at all else.

The work only bumps counters in a ``Meter`` (bytes through ``CountingReader`` or
``CountingWriter``, entries with ``meter.entries += 1``); a thread samples them about ten
times a second on a terminal, every few seconds in the log. So the hot loops make no extra
system call and take no lock, whether anything is shown or not.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # the image package is heavy, and only ``unpack``/``inspect`` need it
    from layerdiff.comparer import Writable
    from layerdiff.compression import Readable
    from layerdiff.image.platforms import Platform
    from layerdiff.image.source import BlobStream, Image, ImageSource, Layer

#: Seconds between redraws on a terminal, and between lines in the log.
TTY_INTERVAL = 0.1
LOG_INTERVAL = 5.0
_CLEAR = "\r\x1b[K"

log = logging.getLogger("layerdiff.progress")


class Meter:
    """Counters of the task in progress: what it is, and how far it got."""

    __slots__ = ("bytes", "entries", "label", "started", "total")

    def __init__(self) -> None:
        self.label = ""
        self.total: int | None = None
        self.bytes = 0
        self.entries = 0
        self.started = time.monotonic()

    def reset(self, label: str, total: int | None) -> None:
        """Start counting a new task of ``total`` bytes (``None``: unknown)."""
        self.label, self.total = label, total
        self.bytes = self.entries = 0
        self.started = time.monotonic()

    def describe(self, now: float, width: int) -> str:
        """The meter as one line of at most ``width`` characters."""
        elapsed = now - self.started
        rate = self.bytes / elapsed if elapsed > 0.2 else None
        parts: list[str] = []
        if self.total:
            percent = min(100, self.bytes * 100 // self.total)
            parts.append(f"{percent:3d}%  {human_bytes(self.bytes)}/{human_bytes(self.total)}")
        else:
            parts.append(human_bytes(self.bytes))
        if rate is not None:
            parts.append(f"{human_bytes(int(rate))}/s")
        if self.entries:
            parts.append(f"{self.entries} entries")
        if self.total and rate:
            parts.append(f"{_clock(max(0, self.total - self.bytes) / rate)} left")
        else:
            parts.append(_clock(elapsed))
        # Drop details from the right, then cut the label, until the line fits.
        while True:
            tail = "  ".join(parts)
            room = width - len(tail) - 2
            if room >= min(len(self.label), 12) or len(parts) == 1:
                break
            parts.pop()
        label = self.label if len(self.label) <= room else self.label[: max(room - 1, 0)] + "…"
        return f"{label}  {tail}"[:width]


class CountingReader:
    """A ``Readable`` (and ``BlobStream``) that adds the bytes read to a meter."""

    def __init__(self, raw: Readable, meter: Meter) -> None:
        self._raw = raw
        self._meter = meter

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes of the source."""
        data = self._raw.read(size)
        self._meter.bytes += len(data)
        return data

    def close(self) -> None:
        """Close the source, if it can be closed."""
        close = getattr(self._raw, "close", None)
        if close is not None:
            close()


class CountingWriter:
    """A ``Writable`` that adds the bytes written to a meter."""

    def __init__(self, out: Writable, meter: Meter) -> None:
        self._out = out
        self._meter = meter

    def write(self, data: bytes, /) -> object:
        """Write ``data`` through."""
        written = self._out.write(data)
        self._meter.bytes += len(data)
        return written

    def flush(self) -> None:
        """Flush the output, if it can be flushed."""
        flush = getattr(self._out, "flush", None)
        if flush is not None:
            flush()


class Progress:
    """Shows ``meter`` on ``stream`` while in a ``with`` block.

    On a terminal the line is redrawn in place (``\\r``) and erased at the end; elsewhere,
    with ``verbose``, a log line every ``LOG_INTERVAL`` seconds and one when each task
    ends; otherwise nothing, and no thread runs.
    """

    def __init__(self, stream: TextIO | None = None, *, verbose: bool = False) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._verbose = verbose
        self.meter = Meter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drawn = False

    @property
    def enabled(self) -> bool:
        """Whether anything is shown."""
        return self._tty or self._verbose

    def task(self, label: str, total: int | None = None) -> Meter:
        """End the current task and start counting ``label`` (``total`` bytes if known)."""
        with self._lock:
            self._finish()
            self.meter.reset(label, total)
        return self.meter

    def __enter__(self) -> Progress:
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="layerdiff-progress",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            # A failed task gets no closing log line: the error says how it ended.
            self._finish(log_it=exc is None)

    def _run(self) -> None:
        interval = TTY_INTERVAL if self._tty else LOG_INTERVAL
        while not self._stop.wait(interval):
            with self._lock:
                if self.meter.label:
                    self._show()

    def _show(self) -> None:
        if self._tty:
            line = self.meter.describe(time.monotonic(), _width(self._stream))
            self._stream.write("\r" + line + "\x1b[K")
            self._stream.flush()
            self._drawn = True
        else:
            log.info("%s", self.meter.describe(time.monotonic(), 200))

    def _finish(self, *, log_it: bool = True) -> None:
        if self._drawn:
            self._stream.write(_CLEAR)
            self._stream.flush()
            self._drawn = False
        elif self._verbose and not self._tty and self.meter.label and log_it:
            log.info("%s: done", self.meter.describe(time.monotonic(), 200))


class MeteredImageSource:
    """An ``ImageSource`` whose layer streams count into ``progress``, one task a layer."""

    def __init__(self, source: ImageSource, progress: Progress) -> None:
        self._source = source
        self._progress = progress
        self._layers = 0

    @property
    def name(self) -> str:
        """The wrapped source's name."""
        return self._source.name

    def resolve(self, platform: Platform, *, strict: bool) -> Image:
        """Resolve through the wrapped source."""
        image = self._source.resolve(platform, strict=strict)
        self._layers = len(image.layers)
        return image

    def open_layer(self, layer: Layer) -> BlobStream:
        """The layer's stream, counted as a new task."""
        label = f"layer {layer.index + 1}/{self._layers} {_short(layer.digest or layer.diff_id)}"
        meter = self._progress.task(label, layer.size)
        return CountingReader(self._source.open_layer(layer), meter)

    def close(self) -> None:
        """Close the wrapped source."""
        self._source.close()


def human_bytes(count: int) -> str:
    """``count`` bytes in binary units: ``512 B``, ``1.5 KiB``, ``12.0 MiB``."""
    if count < 1024:
        return f"{count} B"
    value = count / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def file_total(source: object) -> int | None:
    """The size of ``source`` if it is a regular file (a path or an open file), else ``None``."""
    try:
        if isinstance(source, (str, os.PathLike)):
            st = os.stat(source)
        else:
            fileno = getattr(source, "fileno", None)
            if fileno is None:
                return None
            st = os.fstat(fileno())
    except (OSError, ValueError):
        return None
    return st.st_size if st.st_size and stat.S_ISREG(st.st_mode) else None


def _short(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:12]}" if hexpart else digest


def _clock(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _width(stream: TextIO) -> int:
    try:
        return max(os.get_terminal_size(stream.fileno()).columns - 1, 20)
    except (OSError, ValueError):
        return 79
