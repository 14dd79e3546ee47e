#!/usr/bin/env python3
"""The in-process Python floor of bench scenarios 8 and 9: what the Python orchestrator does to
apply or run modules whose entry is `main(args)` in `index.py`, with no isolation and no fsync.

  py_floor.py copy SRC DEST NAME...   shutil.copytree each SRC/NAME to DEST/NAME, then call them
  py_floor.py call DIR NAME...        call the modules DIR/NAME one after another

Calling a module: import DIR/NAME as a package (`NAME`, its directory on sys.path through DIR),
then its `index` submodule, and call `main(None)`, all in this one interpreter. Exit status 1 when
a main raises or returns a falsy value, 2 on a usage error.
"""

import importlib
import shutil
import sys


def call(modules_dir, names):
    sys.path.insert(0, modules_dir)
    failed = 0
    for name in names:
        mod = importlib.import_module(f"{name}.index")
        if not mod.main(None):
            failed += 1
    return 1 if failed else 0


def main(argv):
    if len(argv) >= 3 and argv[0] == "copy":
        src, dest, names = argv[1], argv[2], argv[3:]
        for name in names:
            shutil.copytree(f"{src}/{name}", f"{dest}/{name}", symlinks=True)
        return call(dest, names)
    if len(argv) >= 2 and argv[0] == "call":
        return call(argv[1], argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
