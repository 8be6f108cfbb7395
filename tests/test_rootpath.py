"""Resolution inside a root follows continuity's fs.RootPath step by step."""

from __future__ import annotations

import pytest

from layerdiff.archive import rootpath
from layerdiff.errors import InvalidLayerError


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", "."),
        ("a//b/./c/", "a/b/c"),
        ("../../x", "../../x"),
        ("/../x", "/x"),
        ("a/../../b", "../b"),
        ("/", "/"),
        ("./", "."),
    ],
)
def test_clean_is_go_path_clean(path: str, expected: str) -> None:
    assert rootpath.clean(path) == expected


def test_split_and_join_are_go_path_functions() -> None:
    assert rootpath.split("a/b/c") == ("a/b/", "c")
    assert rootpath.split("c") == ("", "c")
    assert rootpath.split("a/") == ("a/", "")
    assert rootpath.join("/", "..") == "/"
    assert rootpath.join("", "") == ""
    assert rootpath.join("a", "", "b/../c") == "a/c"


def _tree(links: dict[str, str]) -> rootpath.Lookup:
    """A lookup over a tree whose only interesting entries are these symlinks."""
    return links.get


@pytest.mark.parametrize(
    ("links", "path", "expected"),
    [
        ({}, "a/b/c", "a/b/c"),
        ({}, "../../etc/passwd", "etc/passwd"),
        ({"/bin": "usr/bin"}, "bin/ls", "usr/bin/ls"),
        ({"/bin": "/usr/bin"}, "/bin/ls", "usr/bin/ls"),
        # Absolute and relative targets that try to leave the root stay inside it.
        ({"/evil": "/../../../etc"}, "evil/passwd", "etc/passwd"),
        ({"/evil": "../../../../etc"}, "evil/passwd", "etc/passwd"),
        ({"/a/evil": "../../../../tmp"}, "a/evil/x", "tmp/x"),
        # umoci CVE-2021-29136: a link to "/." is the root itself.
        ({"/dot": "/."}, "dot/x", "x"),
        # A chain of links is followed to its end.
        ({"/a": "b", "/b": "c", "/c": "/real"}, "a/f", "real/f"),
        # ".." inside a target applies after the link's directory is resolved.
        ({"/d/l": "../t"}, "d/l/f", "t/f"),
        ({"/l": "x/y", "/x": "/other"}, "l/f", "other/y/f"),
    ],
)
def test_root_path_resolves_links_inside_the_root(
    links: dict[str, str], path: str, expected: str
) -> None:
    assert rootpath.root_path(path, _tree(links)) == expected


def test_root_path_of_root_and_empty() -> None:
    assert rootpath.root_path("", _tree({})) == ""
    assert rootpath.root_path("/", _tree({})) == ""
    assert rootpath.root_path("..", _tree({})) == ""


def test_symlink_loop_is_an_error_not_a_hang() -> None:
    with pytest.raises(InvalidLayerError, match="too many levels of symbolic links"):
        rootpath.root_path("a/x", _tree({"/a": "b", "/b": "a"}))


def test_deep_paths_do_not_exhaust_the_stack() -> None:
    deep = "/".join(["d"] * 5000)
    assert rootpath.root_path(deep, _tree({})) == deep
