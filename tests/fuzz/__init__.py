"""Coverage-guided fuzz targets (atheris); run them with ``python -m tests.fuzz TARGET``."""

#: The targets: ``tests.fuzz.fuzz_NAME`` for each NAME.
TARGETS = ("apply", "mount_options", "filters")


class Finding(Exception):
    """Code under test broke a promise without raising one of its own errors: a write
    outside the target, a failed round trip, an error message that is not one line."""


def check_message(err: Exception) -> None:
    """Raise ``Finding`` unless ``err``'s message is one non-empty printable line."""
    message = str(err)
    if not (message and message.isprintable()):
        raise Finding(f"error message is not one printable line: {message!r}") from err
