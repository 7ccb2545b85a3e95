"""Click, in a running program under the real watcher: a command's body edit, a new option and
a new command take effect at the next invocation, on the command objects the program holds."""

from __future__ import annotations

from conftest import require
from live import write

CLI = '''
import click

@click.group()
def cli():
    pass

@cli.command()
@click.option("--n", default=1)
def status(n):
    """Show the status."""
    click.echo(f"status {n}")
'''


def test_a_command_body_a_new_option_and_a_new_command_work_at_the_next_invocation(
    program, tmp_path
):
    try:
        import click  # noqa: F401
    except ImportError:
        require(False, "click is not installed")
    write(tmp_path / "tool.py", CLI)
    p = program(
        """
        import tool
        from click.testing import CliRunner
        def run(*args):
            result = CliRunner().invoke(tool.cli, list(args))
            return result.output
        held = tool.status
        """
    )
    assert p.eval("run('status', '--n', '2')") == "status 2\n"

    write(tmp_path / "tool.py", CLI.replace('f"status {n}"', 'f"STATUS {n}!"'))
    (report,) = p.wait_reload()
    assert report["patched"] == ["status"] and report["notes"] == []
    assert p.eval("run('status', '--n', '2')") == "STATUS 2!\n"

    with_option = (
        CLI.replace(
            '@click.option("--n", default=1)',
            '@click.option("--n", default=1)\n@click.option("--loud", is_flag=True)',
        )
        .replace("def status(n):", "def status(n, loud):")
        .replace('click.echo(f"status {n}")', 'click.echo(f"status {n}" + ("!!" if loud else ""))')
    )
    write(tmp_path / "tool.py", with_option)
    (report,) = p.wait_reload()
    assert report["ok"] and report["patched"] == ["status"] and report["notes"] == []
    assert p.eval("run('status', '--loud')") == "status 1!!\n"
    assert p.eval("(tool.status is held, tool.cli.commands['status'] is held)") == (True, True)

    write(
        tmp_path / "tool.py",
        with_option + '\n@cli.command()\ndef stop():\n    click.echo("stopped")\n',
    )
    (report,) = p.wait_reload()
    assert report["added"] == ["stop"]
    assert p.eval("run('stop')") == "stopped\n"
    assert "Usage" in p.eval("run('--help')") and "stop" in p.eval("run('--help')")


GROUP = """
import click

@click.group()
def cli():
    pass

@cli.command()
def a():
    click.echo("a ran")

@cli.command()
def b():
    click.echo("b ran")
"""

#: The program calls its group as a loop of a command-line tool does.
RUNS = """
import click
import tool
def run(*args):
    try:
        tool.cli.main(list(args), prog_name="tool", standalone_mode=False)
    except click.UsageError as exc:
        click.echo(f"usage error: {exc.format_message()}")
    except SystemExit:
        pass
"""


def _need_click() -> None:
    try:
        import click  # noqa: F401
    except ImportError:
        require(False, "click is not installed")


def _output(p, *args: str) -> str:
    p.exec(
        "import contextlib, io\n"
        "_out = io.StringIO()\n"
        f"with contextlib.redirect_stdout(_out):\n    run(*{list(args)!r})\n"
    )
    return p.eval("_out.getvalue()")


def test_a_command_deleted_from_its_group_is_gone_at_the_next_invocation(program, tmp_path):
    # (found by trying the product as a user: "deleted a" was reported, and `a` still ran)
    _need_click()
    write(tmp_path / "tool.py", GROUP)
    p = program(RUNS)
    assert _output(p, "a") == "a ran\n"

    write(
        tmp_path / "tool.py",
        GROUP.replace('@cli.command()\ndef a():\n    click.echo("a ran")\n', ""),
    )
    (report,) = p.wait_reload()
    assert report["deleted"] == ["a"] and report["needs_restart"] == []
    assert _output(p, "a") == "usage error: No such command 'a'.\n"
    assert _output(p, "b") == "b ran\n"
    assert _output(p, "--help").split("Commands:")[1].split() == ["b"]


def test_a_command_renamed_by_its_decorator_leaves_its_old_name(program, tmp_path):
    # (found by trying the product as a user: both the old and the new name ran it)
    _need_click()
    write(tmp_path / "tool.py", GROUP)
    p = program(RUNS + "held = tool.b\n")
    assert _output(p, "b") == "b ran\n"

    write(
        tmp_path / "tool.py",
        GROUP.replace("@cli.command()\ndef b", '@cli.command(name="c")\ndef b'),
    )
    (report,) = p.wait_reload()
    assert report["patched"] == ["b"] and report["needs_restart"] == []
    assert _output(p, "c") == "b ran\n"
    assert _output(p, "b") == "usage error: No such command 'b'.\n"
    assert sorted(p.eval("list(tool.cli.commands)")) == ["a", "c"]
    assert p.eval("tool.cli.commands['c'] is held is tool.b")
    assert _output(p, "--help").split("Commands:")[1].split() == ["a", "c"]

    # Back to its old name: the group holds it as before.
    write(tmp_path / "tool.py", GROUP)
    (report,) = p.wait_reload()
    assert _output(p, "b") == "b ran\n" and sorted(p.eval("list(tool.cli.commands)")) == ["a", "b"]
