"""``layerdiff completion``: shell completion scripts, generated from the parser itself.

The parser is walked once into a table of commands (their subcommands, options, the
choices of options that have some); each shell's script is that table in its idiom, so
a new command or option completes without anyone editing a script.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field

from layerdiff.cli import COMMANDS
from layerdiff.cli.output import EXIT_OK

SHELLS = ("bash", "zsh", "fish")
#: An option whose metavar holds one of these takes a path (complete file names).
_PATH_METAVARS = ("FILE", "DIR", "OUT", "PATH")

EXAMPLES = """\
examples:
  source <(layerdiff completion bash)                  # this bash session
  layerdiff completion bash > /etc/bash_completion.d/layerdiff
  layerdiff completion zsh > "${fpath[1]}/_layerdiff"  # then: compinit
  layerdiff completion fish > ~/.config/fish/completions/layerdiff.fish
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``completion`` command."""
    completion = commands.add_parser(
        "completion",
        help=COMMANDS["completion"][1],
        description="Print the completion script for SHELL on standard output.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    completion.set_defaults(run=run)
    completion.add_argument("shell", metavar="SHELL", choices=SHELLS, help="bash, zsh or fish")


def run(args: argparse.Namespace) -> int:
    """Print the script."""
    # Imported here: the parser is built by the package that imports this module.
    from layerdiff.cli import build_parser  # noqa: PLC0415

    commands = walk(build_parser())
    script = {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}[args.shell]
    print(script(commands), end="")
    return EXIT_OK


@dataclass
class Option:
    """One option: its flags, whether it takes a value (a path?), the values it accepts."""

    flags: list[str]
    takes_value: bool
    choices: list[str]
    help: str
    paths: bool = False


@dataclass
class Command:
    """A command (``()`` is ``layerdiff`` itself): its options and subcommands."""

    path: tuple[str, ...]
    options: list[Option] = field(default_factory=list)
    subcommands: dict[str, str] = field(default_factory=dict)  # name: help


def walk(parser: argparse.ArgumentParser) -> list[Command]:
    """Every command of ``parser``, parents before their subcommands."""
    found: list[Command] = []
    todo: list[tuple[tuple[str, ...], argparse.ArgumentParser]] = [((), parser)]
    while todo:
        path, current = todo.pop(0)
        command = Command(path)
        found.append(command)
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help or "" for a in action._choices_actions}
                for name, sub in action.choices.items():
                    command.subcommands[name] = helps.get(name, "")
                    todo.append(((*path, name), sub))
            elif action.option_strings:
                choices = [str(c) for c in action.choices] if action.choices else []
                metavar = str(action.metavar or "")
                command.options.append(Option(
                    list(action.option_strings), action.nargs != 0, choices,
                    "" if action.help in (None, argparse.SUPPRESS) else str(action.help),
                    paths=any(word in metavar for word in _PATH_METAVARS),
                ))
    return found


def bash_script(commands: list[Command]) -> str:
    """A bash completion script: ``complete -F _layerdiff layerdiff``."""
    enter: list[str] = []
    value_options: list[str] = []
    values: list[str] = []
    words: list[str] = []
    for command in commands:
        key = " ".join(command.path)
        for name in command.subcommands:
            target = _q(" ".join((*command.path, name)))
            enter.append(f"            {_q(key + '|' + name)}) path={target} ;;")
        for option in command.options:
            if not option.takes_value:
                continue
            patterns = "|".join(_q(f"{key}|{flag}") for flag in option.flags)
            value_options.append(patterns)
            if option.choices:
                reply = f'COMPREPLY=($(compgen -W {_q(" ".join(option.choices))} -- "$cur"))'
            elif option.paths:
                reply = 'COMPREPLY=($(compgen -f -- "$cur"))'
            else:
                reply = "COMPREPLY=()"  # free text: nothing to offer
            values.append(f"        {patterns}) {reply}; return ;;")
        flags = " ".join(f for o in command.options for f in o.flags)
        subs = " ".join(command.subcommands)
        words.append(f'        {_q(key)}) opts={_q(flags)}; subs={_q(subs)} ;;')
    skip = "|".join(value_options) or "''"
    return f"""\
# bash completion for layerdiff; generated by `layerdiff completion bash`.
_layerdiff() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}
    local path="" word i skip=0 opts subs
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${{COMP_WORDS[i]}}
        if ((skip)); then skip=0; continue; fi
        case "$path|$word" in
            {skip}) skip=1; continue ;;
        esac
        case "$path|$word" in
{chr(10).join(enter)}
        esac
    done
    case "$path|$prev" in
{chr(10).join(values)}
    esac
    case "$path" in
{chr(10).join(words)}
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [[ -n $subs ]]; then
        COMPREPLY=($(compgen -W "$subs" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}
complete -o filenames -o bashdefault -F _layerdiff layerdiff
"""


def zsh_script(commands: list[Command]) -> str:
    """A zsh completion script: the bash one through zsh's ``bashcompinit``."""
    return (
        "#compdef layerdiff\n"
        "# zsh completion for layerdiff; generated by `layerdiff completion zsh`.\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + bash_script(commands)
    )


def fish_script(commands: list[Command]) -> str:
    """A fish completion script: one ``complete`` line per subcommand and option."""
    lines = [
        "# fish completion for layerdiff; generated by `layerdiff completion fish`.",
        "complete -c layerdiff -f",
    ]
    for command in commands:
        condition = _fish_condition(command, commands)
        for name, text in command.subcommands.items():
            lines.append(
                f"complete -c layerdiff -n {_fq(condition)} -a {_fq(name)} -d {_fq(text)}"
            )
        for option in command.options:
            spec = []
            for flag in option.flags:
                if flag.startswith("--"):
                    spec.append(f"-l {_fq(flag[2:])}")
                elif len(flag) == 2:
                    spec.append(f"-s {_fq(flag[1:])}")
                else:
                    spec.append(f"-o {_fq(flag[1:])}")
            if option.choices:
                spec.append(f"-x -a {_fq(' '.join(option.choices))}")
            elif option.paths:
                spec.append("-r -F")
            elif option.takes_value:
                spec.append("-x")
            lines.append(
                f"complete -c layerdiff -n {_fq(condition)} {' '.join(spec)} -d {_fq(option.help)}"
            )
        if not command.subcommands and command.path:
            lines.append(f"complete -c layerdiff -n {_fq(condition)} -F")
    return "\n".join(lines) + "\n"


def _fish_condition(command: Command, commands: list[Command]) -> str:
    if not command.path:
        return "__fish_use_subcommand"
    seen = [f"__fish_seen_subcommand_from {name}" for name in command.path]
    # Not inside one of this command's own subcommands.
    below = [n for c in commands if c.path == command.path for n in c.subcommands]
    if below:
        seen.append("not __fish_seen_subcommand_from " + " ".join(below))
    return "; and ".join(seen)


def _q(text: str) -> str:
    return shlex.quote(text)


def _fq(text: str) -> str:
    """``text`` in fish's single quotes, where only ``\\`` and ``\'`` are escapes."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
