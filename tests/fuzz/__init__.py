"""Differential fuzzing of the reloader against a restart.

A seed makes a package (:mod:`.generator`, over the program model of :mod:`.model`) and a
sequence of random but valid edits to it. A program (:mod:`.driver`, a subprocess: a crash is
a failed run, not a dead fuzzer) imports the package with a real ``AutoReloader`` watching it
and takes references to everything it defines; each edit is saved file by file (in import
order; in place or by rename, as editors do) and applied by the watcher; the program then
evaluates the probe (:mod:`.probe`) over every definition that exists, through the module
attributes, through the references taken before the first edit, through instances made
before it, and the result must equal the probe of a fresh interpreter importing the current
files. :mod:`.runner` compares; :mod:`.minimise` shrinks a failing edit to the fewest changed
lines and prints it as a diff with the seed. ``python -m fuzz`` (from ``tests/``, or
``make fuzz N=10000``) runs many seeds; ``tests/test_fuzz.py`` runs 30 seeds of 10 edits.

Not compared, because the reloader documents a difference from a restart there:

- an edit whose reload reports ``needs_restart`` (a ``__slots__`` layout, enum members or
  their order, bases CPython refuses to switch, such as ``(object,)`` to a class of ours
  before 3.15): the program is restarted on the current files and the seed goes on;
- references taken before the first edit to a definition deleted since (they keep their last
  code); one that comes back is compared again (it must come back into the same object);
- references to what a module-level call made (``v = deco(f)``, ``h = make(3)``): when the
  statement runs again it makes a new object, and references taken before keep the old one
  (``from m import v`` copies are rebound, and compared).

What the generated programs avoid, for the same reason:

- state made by mutation (``items.append``) and functions that change state: an unchanged
  statement whose inputs did not change is not run again, so its state survives, where a
  restart would make it anew;
- module-level calls whose result depends on more than the names they read (``Y = f(2)``
  where ``f`` reads ``X``): only the readers of a changed name run again;
- ``lru_cache`` functions that read anything but their argument: a cache is cleared when its
  own function changes, not when something it calls or reads does; ``lru_cache`` added to or
  removed from a function (the old object cannot become the cache wrapper in place);
- an ``__init__`` that changes, or instance state: instances made before an edit keep what
  the old ``__init__`` stored;
- a factory whose inner function starts capturing a name it did not (closures made before
  the edit have no cell for it and keep their old code, as the reload's notes say).
"""
