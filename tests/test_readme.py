"""The README's `biofed` commands run as written on a fresh clone: each is spelled
`scripts/biofed ...` (the command lives in .venv, not on PATH), names commands and options
that exist, and parses; the script itself answers every command path's --help, and the
cheap commands run for real."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import click
import pytest

from federation import PROJECT_ROOT
from federation.cli import main
from federation.settings import Settings

README = PROJECT_ROOT / "README.md"
SCRIPT = PROJECT_ROOT / "scripts" / "biofed"
# Placeholders the README writes in capitals, and a value each can be parsed with.
PLACEHOLDERS = {"N": "2", "ID": "bb1", "DIR": "out", "B": "2", "S": "7", "FILE": "x.yaml"}


def code_spans() -> list[str]:
    """Every inline code span and every line of a fenced block, whitespace collapsed."""
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M)
    inline = re.findall(
        r"`([^`\n]+(?:\n[^`\n]+)?)`", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    )
    lines = [line.split("#")[0] for block in blocks for line in block.splitlines()]
    return [" ".join(span.split()) for span in [*inline, *lines] if span.strip()]


def readme_commands() -> list[list[str]]:
    """The README's `scripts/biofed` commands as argument lists (alternatives split)."""
    commands = []
    for span in code_spans():
        if not span.startswith("scripts/biofed") or "..." in span or "COMMAND" in span:
            continue
        words = shlex.split(span.replace("[", "").replace("]", ""))[1:]
        first: list[str] = []
        for alternative in " ".join(words).split(" | "):
            args = alternative.split()
            if not first:
                first = args
            elif args[0].startswith("-"):  # `sync --all | --biobank ID`: same command
                args = [w for w in first if not w.startswith("-")][:1] + args
            commands.append([PLACEHOLDERS.get(a, a) for a in args])
    return commands


def command_path(args: list[str]) -> tuple[list[str], click.Command, list[str]]:
    """Split `args` into the command path, the command it names, and its own arguments."""
    group: click.Command = main
    path: list[str] = []
    rest = list(args)
    while isinstance(group, click.Group) and rest and not rest[0].startswith("-"):
        found = group.get_command(click.Context(main), rest[0])
        assert found is not None, f"README: `biofed {' '.join(args)}`: no command {rest[0]!r}"
        path.append(rest.pop(0))
        group = found
    return path, group, rest


def test_the_readme_has_no_bare_biofed_command() -> None:
    # `biofed ...` alone is what to type once the virtualenv is activated, as it says.
    bare = [s for s in code_spans() if re.match(r"biofed\s", s) and s != "biofed ..."]
    assert not bare, f"README commands must run as written (scripts/biofed ...): {bare}"


def test_the_readme_shows_the_commands_it_promises() -> None:
    shown = {" ".join(command_path(args)[0]) for args in readme_commands()}
    assert {"demo", "sync", "runs", "search", "serve", "demo-data", "connectors list"} <= shown


@pytest.mark.parametrize("args", readme_commands(), ids=" ".join)
def test_each_readme_command_parses(args: list[str], tmp_path: Path) -> None:
    if args == ["--help"]:  # `scripts/biofed --help`: run by the test below
        assert any("--help" in p.opts for p in main.get_params(click.Context(main)))
        return
    global_args: list[str] = []
    while args and args[0].startswith("--"):  # e.g. `--network FILE runs`: main's options
        global_args += args[:2]
        args = args[2:]
    parent = main.make_context("biofed", [*global_args, *args], resilient_parsing=True)
    parent.obj = {"settings": Settings(data_dir=tmp_path), "config_file": None}
    path, command, own = command_path(args)
    assert path, f"README: `biofed {' '.join(args)}` names no command"
    with command.make_context(path[-1], own, parent=parent) as ctx:
        assert ctx.command is command


def test_the_demo_takes_the_arguments_the_readme_gives_scripts_demo() -> None:
    demo = main.get_command(click.Context(main), "demo")
    assert demo is not None
    options = {opt for param in demo.params for opt in param.opts}
    assert {"--samples", "--port", "--fresh", "--backend"} <= options


def run_script(*args: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_scripts_biofed_answers_the_help_of_every_readme_command() -> None:
    paths = {tuple(command_path(args)[0]) for args in readme_commands()}
    for path in sorted({(), *paths}):
        done = run_script(*path, "--help")
        assert done.returncode == 0, (path, done.stderr)
        assert done.stdout.startswith(f"Usage: biofed {' '.join(path)}".rstrip()), done.stdout


def test_scripts_biofed_runs_the_cheap_readme_commands_from_any_folder(tmp_path: Path) -> None:
    listed = run_script("connectors", "list", cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout.startswith("beacon\t"), listed
    made = run_script(
        *("demo-data", "--out", "net", "--biobanks", "2", "--samples", "40", "--seed", "7"),
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    # Relative paths are the caller's: the network lands in the folder it was run from.
    assert made.stdout.strip() == "wrote net/network.yaml"
    assert (tmp_path / "net" / "network.yaml").is_file()
