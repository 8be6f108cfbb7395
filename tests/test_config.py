"""The configuration file reads containerd's ``[stream_processors.ID]`` tables and says
exactly where a bad one is wrong."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from layerdiff.config import Config, StreamProcessorConfig, load_config, parse_config
from layerdiff.errors import InvalidArgumentError, NotFoundError
from layerdiff.processors import ProcessorRegistry

REPO = Path(__file__).resolve().parent.parent

# containerd's own documented ocicrypt setup, inside a config with other sections.
CONTAINERD_CONFIG = """\
version = 2
root = "/var/lib/containerd"

[plugins."io.containerd.grpc.v1.cri".image_decryption]
  key_model = "node"

[stream_processors]
  [stream_processors."io.containerd.ocicrypt.decoder.v1.tar.gzip"]
    accepts = ["application/vnd.oci.image.layer.v1.tar+gzip+encrypted"]
    returns = "application/vnd.oci.image.layer.v1.tar+gzip"
    path = "ctd-decoder"
    args = ["--decryption-keys-path", "/etc/containerd/ocicrypt/keys"]
    env= ["OCICRYPT_KEYPROVIDER_CONFIG=/etc/containerd/ocicrypt/ocicrypt_keyprovider.conf"]
  [stream_processors."io.containerd.ocicrypt.decoder.v1.tar"]
    accepts = ["application/vnd.oci.image.layer.v1.tar+encrypted"]
    returns = "application/vnd.oci.image.layer.v1.tar"
    path = "ctd-decoder"
    timeout = 30
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_containerd_stream_processors_are_read_in_file_order(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, CONTAINERD_CONFIG))
    assert list(config.stream_processors) == [
        "io.containerd.ocicrypt.decoder.v1.tar.gzip",
        "io.containerd.ocicrypt.decoder.v1.tar",
    ]
    assert config.stream_processors["io.containerd.ocicrypt.decoder.v1.tar.gzip"] == (
        StreamProcessorConfig(
            id="io.containerd.ocicrypt.decoder.v1.tar.gzip",
            accepts=("application/vnd.oci.image.layer.v1.tar+gzip+encrypted",),
            returns="application/vnd.oci.image.layer.v1.tar+gzip",
            path="ctd-decoder",
            args=("--decryption-keys-path", "/etc/containerd/ocicrypt/keys"),
            env=("OCICRYPT_KEYPROVIDER_CONFIG=/etc/containerd/ocicrypt/ocicrypt_keyprovider.conf",),
        )
    )
    plain = config.stream_processors["io.containerd.ocicrypt.decoder.v1.tar"]
    assert (plain.args, plain.env, plain.timeout) == ((), (), 30.0)


def test_a_file_without_the_section_configures_nothing(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, "version = 2\n[plugins]\nx = 1\n")) == Config()


def test_a_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"config file '.*nope.toml' does not exist"):
        load_config(tmp_path / "nope.toml")


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="is a directory"):
        load_config(tmp_path)


@pytest.mark.parametrize("text", ["[stream_processors\n", "a = \n", b"a = '\xff'\n"])
def test_a_file_that_is_not_toml_is_named(tmp_path: Path, text: str | bytes) -> None:
    path = tmp_path / "config.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(InvalidArgumentError, match=f"^{re.escape(str(path))}: invalid TOML: "):
        load_config(path)


_GOOD = 'accepts = ["a/b+x"]\nreturns = "a/b"\npath = "/bin/cat"\n'


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('returns = "a/b"\npath = "p"\n', "accepts: must name at least one media type"),
        (
            'accepts = []\nreturns = "a/b"\npath = "p"\n',
            "accepts: must name at least one media type",
        ),
        ('accepts = "a/b"\nreturns = "a/b"\npath = "p"\n', "accepts: must be a list of strings"),
        ('accepts = [1]\nreturns = "a/b"\npath = "p"\n', "accepts: must be a list of strings"),
        ('accepts = ["a"]\npath = "p"\n', "returns: missing"),
        ('accepts = ["a"]\nreturns = ""\npath = "p"\n', "returns: must be a non-empty string"),
        ('accepts = ["a"]\nreturns = "a/b"\n', "path: missing"),
        ('accepts = ["a"]\nreturns = "a/b"\npath = 3\n', "path: must be a non-empty string"),
        (_GOOD + 'args = "-d"\n', "args: must be a list of strings"),
        (_GOOD + 'env = ["NOVALUE"]\n', "env: 'NOVALUE' is not NAME=VALUE"),
        (_GOOD + 'env = ["=x"]\n', "env: '=x' is not NAME=VALUE"),
        (_GOOD + "timeout = 0\n", "timeout: must be a positive number of seconds"),
        (_GOOD + "timeout = -1.5\n", "timeout: must be a positive number of seconds"),
        (_GOOD + "timeout = true\n", "timeout: must be a positive number of seconds"),
        (_GOOD + 'timeout = "10s"\n', "timeout: must be a positive number of seconds"),
        (_GOOD + "timeout = inf\n", "timeout: must be a positive number of seconds"),
        (_GOOD + "timeout = nan\n", "timeout: must be a positive number of seconds"),
        (_GOOD + "timout = 10\n", "timout: unknown key"),
    ],
)
def test_a_bad_key_is_named_with_its_file_and_table(
    tmp_path: Path, table: str, message: str
) -> None:
    path = _write(tmp_path, '[stream_processors."my.decoder"]\n' + table)
    with pytest.raises(InvalidArgumentError) as err:
        load_config(path)
    assert str(err.value) == f'{path}: [stream_processors."my.decoder"] {message}'


def test_tables_that_are_not_tables_are_named() -> None:
    with pytest.raises(InvalidArgumentError, match=r"^c.toml: stream_processors must be a table$"):
        parse_config({"stream_processors": []}, source="c.toml")
    with pytest.raises(InvalidArgumentError, match=r"^c.toml: \[stream_processors.dec\] must be"):
        parse_config({"stream_processors": {"dec": "x"}}, source="c.toml")


def _doc_toml_blocks() -> list[str]:
    text = (REPO / "docs" / "processors.md").read_text()
    return re.findall(r"^```toml\n(.*?)^```", text, re.S | re.M)


def test_the_documented_configs_load(tmp_path: Path) -> None:
    blocks = _doc_toml_blocks()
    assert blocks
    for block in blocks:
        config = load_config(_write(tmp_path, block))
        assert config.stream_processors
        ProcessorRegistry.from_config(config.stream_processors)
