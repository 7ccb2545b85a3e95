"""A program patched while it runs: a loop keeps calling the same function objects while
new versions of their source are compiled and patched in, in place, with no restart.

(The file-watching live demo, where an editor saves the source, arrives with the reloader;
this one drives the native patcher directly.)
"""

import textwrap

import mighty_patcher as mp

GREETING = """
def greet(name):
    return "hello, " + name
"""

EDITS = [
    (
        "greet now shouts",
        """
        def greet(name):
            return ("hello, " + name).upper() + "!"
        """,
    ),
    (
        "greet gets a default and a helper",
        """
        def greet(name="stranger", punctuation="?"):
            return polite(name) + punctuation

        def polite(name):
            return "good day, " + name.title()
        """,
    ),
]


def new_version(source, namespace):
    """Compile a new version in the program's own namespace without rebinding anything."""
    fresh = {}
    exec(textwrap.dedent(source), namespace, fresh)
    return fresh


def main():
    program = {"__name__": "program"}
    exec(GREETING, program)
    greet = program["greet"]  # a reference taken before any edit, like `from m import greet`
    callbacks = [program["greet"]]  # and one kept in a registry

    def tick(n):
        print(
            f"[tick {n}] greet('world') -> {greet('world')!r}; callbacks[0]('you') -> "
            f"{callbacks[0]('you')!r}"
        )

    tick(1)
    for n, (what, source) in enumerate(EDITS, start=2):
        fresh = new_version(source, program)
        for name, value in fresh.items():
            if name in program and callable(program[name]):
                mp.patch_function(program[name], value)  # in place: every reference follows
            else:
                program[name] = value  # a new definition
        print(f"   patched: {what}")
        tick(n)
    assert greet is program["greet"], "the function object never changed identity"
    print("same function object throughout; no restart")


if __name__ == "__main__":
    main()
