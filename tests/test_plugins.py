"""The plugin registry: dependency order, failures kept per plugin, entry points."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from layerdiff.errors import InvalidArgumentError, NotFoundError
from layerdiff.plugins import InitContext, PluginError, PluginSet, Registration


def recorder(order: list[str], value: object = None) -> Callable[[InitContext], object]:
    def init(ctx: InitContext) -> object:
        order.append(ctx.registration.uri)
        return value if value is not None else dict(ctx.config)

    return init


def test_plugins_follow_the_types_they_require() -> None:
    order: list[str] = []
    plugins = PluginSet([
        Registration("svc", "diff", recorder(order), requires=("differ",)),
        Registration("differ", "b", recorder(order), requires=("content",)),
        Registration("differ", "a", recorder(order)),
        Registration("content", "local", recorder(order)),
    ])
    plugins.initialize()
    assert order.index("svc.diff") > max(order.index("differ.a"), order.index("differ.b"))
    assert order.index("differ.b") > order.index("content.local")


def test_init_sees_its_section_over_defaults_and_earlier_plugins() -> None:
    seen: dict[str, object] = {}

    def service(ctx: InitContext) -> object:
        seen.update(ctx.get_all("differ"))
        seen["config"] = dict(ctx.config)
        return "service"

    plugins = PluginSet([
        Registration("differ", "walking", lambda ctx: "walker"),
        Registration("svc", "diff", service, requires=("differ",),
                     defaults={"order": ["walking"], "keep": 1}),
    ])
    done = plugins.initialize({"svc.diff": {"order": ["other", "walking"]}})
    assert seen == {"walking": "walker", "config": {"order": ["other", "walking"], "keep": 1}}
    assert done.get("svc", "diff") == "service"


def test_a_failed_init_is_reported_to_whoever_needs_it() -> None:
    def broken(ctx: InitContext) -> object:
        raise OSError("no such socket")

    done = PluginSet([
        Registration("content", "remote", broken),
        Registration("content", "local", lambda ctx: "local"),
    ]).initialize()
    assert done.get_all("content") == {"local": "local"}
    with pytest.raises(PluginError, match=r"content\.remote failed to initialise: no such socket"):
        done.get("content", "remote")
    with pytest.raises(NotFoundError):
        done.get("content", "nope")


def test_disabled_plugins_are_skipped_and_unknown_names_refused() -> None:
    plugins = PluginSet([Registration("differ", "a", lambda ctx: 1)])
    assert plugins.initialize(disabled=["differ.a"]).get_all("differ") == {}
    with pytest.raises(InvalidArgumentError, match=r"unknown plugins: differ\.zz"):
        plugins.initialize({"differ.zz": {}})


def test_duplicates_and_cycles_are_refused() -> None:
    with pytest.raises(PluginError, match="twice"):
        PluginSet([Registration("t", "a", lambda ctx: 1)] * 2)
    cycle = PluginSet([
        Registration("x", "1", lambda ctx: 1, requires=("y",)),
        Registration("y", "1", lambda ctx: 1, requires=("x",)),
    ])
    with pytest.raises(PluginError, match="cycle"):
        cycle.initialize()


def test_entry_points_of_installed_packages_are_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "thirdparty_differ.py").write_text(textwrap.dedent("""
        from layerdiff.plugins import Registration
        PLUGINS = [Registration("layerdiff.differ", "thirdparty", lambda ctx: "theirs")]
        """))
    dist = tmp_path / "thirdparty_differ-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-differ\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[layerdiff.plugins]\nthirdparty = thirdparty_differ:PLUGINS\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins = PluginSet()
    plugins.load_entry_points()
    assert plugins.initialize().get("layerdiff.differ", "thirdparty") == "theirs"
