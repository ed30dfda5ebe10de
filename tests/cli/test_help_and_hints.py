"""What cpv tells a user names only things the user has: options that exist, no files of the
source repository (a pip user has no docs/ folder), CLI words on the command line.

Every hint in the code is read (all ``hint=`` arguments, as the AST holds them) and every
``cpv COMMAND ... --option`` it names is checked against the real click command, so a renamed
or invented option fails here wherever it is written.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click
import pytest

from cpv.cli.commands import COMMANDS
from cpv.cli.main import cli
from tests.cli.conftest import Runner

ROOT = Path(__file__).resolve().parents[2]
_NAMED = re.compile(r"cpv ((?:config )?[a-z]+)\b([^'\"\n;)]*)")
_OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z-]*)")


def _strings(node: ast.AST) -> list[str]:
    """The texts an expression can produce: f-string holes read as a blank, and what fills
    them (a conditional's branches, say) as texts of their own."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        outer, inner = [], []
        for part in node.values:
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                outer.append(part.value)
            else:
                outer.append(" X ")
                inner += _strings(part)
        return ["".join(outer), *inner]
    out: list[str] = []
    for child in ast.iter_child_nodes(node):
        out += _strings(child)
    return out


def _hint_texts() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path in sorted((ROOT / "cpv").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            values: list[ast.AST] = []
            if (isinstance(node, ast.keyword) and node.arg == "hint") or (isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Attribute) and t.attr == "hint" for t in node.targets)):
                values.append(node.value)
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            found.extend((where, text) for value in values for text in _strings(value)
                         if text.strip())
    return found


def _command(name: str) -> click.Command | None:
    if name.startswith("config "):
        group = cli.commands.get("config")
        assert isinstance(group, click.Group)
        return group.commands.get(name.split(" ", 1)[1])
    return cli.commands.get(name)


def _options(command: click.Command) -> set[str]:
    names = {"--json", "-q", "--quiet", "-v", "--verbose", "--help"}
    for param in command.params:
        names.update(o for o in (*param.opts, *param.secondary_opts) if o.startswith("--"))
    return names


HINTS = _hint_texts()
ALL_OPTIONS = set().union(*(
    _options(c) for cmd in COMMANDS
    for c in ([cmd, *cmd.commands.values()] if isinstance(cmd, click.Group) else [cmd])))


def test_the_hints_were_found() -> None:
    assert len(HINTS) > 60  # the walk really reads the code


@pytest.mark.parametrize(("where", "text"), HINTS, ids=[w for w, _ in HINTS])
def test_a_hint_names_only_options_that_exist(where: str, text: str) -> None:
    assert "docs/" not in text, f"{where}: a pip user has no docs/ folder: {text!r}"
    for match in _NAMED.finditer(text):
        command = _command(match.group(1))
        if command is None:
            continue  # "cpv COMMAND" as a placeholder, or prose
        for option in _OPTION.findall(match.group(2)):
            assert option in _options(command), (
                f"{where}: 'cpv {match.group(1)}' has no {option}: {text!r}")
    # A bare --option (no "cpv COMMAND" before it) must be an option of some cpv command,
    # unless it belongs to another tool named just before it (git, aws, ssh-keygen).
    covered = {m.start(2) + o.start() for m in _NAMED.finditer(text)
               for o in _OPTION.finditer(m.group(2))}
    for option in _OPTION.finditer(text):
        before = text[max(0, option.start() - 40):option.start()]
        if option.start() in covered or re.search(r"\b(git|aws|ssh-keygen)\b", before):
            continue
        assert option.group(1) in ALL_OPTIONS, f"{where}: no cpv command has {option.group(1)}"


def test_no_help_points_at_files_a_pip_user_lacks(cpv: Runner) -> None:
    pages = [cpv("--help").stdout]
    for command in COMMANDS:
        if isinstance(command, click.Group):
            pages += [cpv(command.name or "", sub, "--help").stdout for sub in command.commands]
        pages.append(cpv(command.name or "", "--help").stdout)
    for page in pages:
        assert "docs/" not in page, page
