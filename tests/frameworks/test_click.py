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
