# Runs one module's Python entry point for updater (see src/runner.rs, SPEC §5).
#
# Not a standalone script: updater embeds it and runs `python -u -B -c <this> MODULE_DIR FILE ARGS...`
# with the module directory as working directory. It imports MODULE_DIR as a package under a
# synthetic name (the directory name may contain "-" or "."), loads FILE (normally index.py) as a
# submodule of it, so `from . import helper` works, and calls `main(args)` with ARGS as a list of str.
#
# The fork-server (runner_forkserver.py) runs the same code: it executes this file under another
# __name__ (so the last lines do nothing), and each forked module process calls
# _finish(*_run(MODULE_DIR, FILE, ARGS)) exactly as the last lines do here.
#
# Verdict protocol, read by the runner: the shim's last line on file descriptor 2 is
#     UPDATER-RESULT: ok                    (and exit status 0), or
#     UPDATER-RESULT: fail <one-line reason>  (and exit status 1).
# main fails when it raises (the traceback goes to stderr), returns None or False, or returns a dict
# holding a falsy "success". Anything else, 0 and "" included, is success. sys.exit(0) or
# sys.exit() inside main counts as success, any other exit code as failure.
import sys

# `-c` puts the working directory (the module) first on sys.path: drop it before importing anything,
# so a module file named like a standard module (json.py, ...) cannot replace what the shim uses.
sys.path[:] = [p for p in sys.path if p not in ("", ".")]

import importlib.machinery  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import traceback  # noqa: E402

_MARKER = "UPDATER-RESULT: "
_REASON_LIMIT = 300


def _one_line(text):
    text = " ".join(str(text).split())
    if len(text) > _REASON_LIMIT:
        text = text[: _REASON_LIMIT - 3] + "..."
    return text


def _describe_exception(exc):
    name = type(exc).__name__
    try:
        text = str(exc)
    except Exception:
        text = ""
    return name + ": " + text if text else name


def _render(value):
    try:
        return json.dumps(value, ensure_ascii=False, default=repr)
    except Exception:
        return repr(value)


def _identifier(text):
    ident = "".join(c if (c.isalnum() or c == "_") and c.isascii() else "_" for c in text)
    if not ident or ident[0].isdigit():
        ident = "_" + ident
    return ident


def _package(name, directory):
    """Returns package `name`, whose submodules live in `directory`, creating it if needed."""
    if name in sys.modules:
        return sys.modules[name]
    init = os.path.join(directory, "__init__.py")
    if os.path.isfile(init):
        spec = importlib.util.spec_from_file_location(
            name, init, submodule_search_locations=[directory]
        )
    else:
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [directory]
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    if spec.loader is not None:
        spec.loader.exec_module(package)
    return package


def _load(module_dir, entry):
    """Imports `entry` as a submodule of the package made of `module_dir`; returns the module."""
    top = "_updater_module_" + _identifier(os.path.basename(module_dir))
    parent = _package(top, module_dir)
    parts = os.path.relpath(entry, module_dir).split(os.sep)
    if parts[0] == os.pardir:
        parts = [os.path.basename(entry)]
    name, directory = top, module_dir
    for part in parts[:-1]:
        directory = os.path.join(directory, part)
        name = name + "." + _identifier(part)
        package = _package(name, directory)
        setattr(parent, _identifier(part), package)
        parent = package
    stem = _identifier(os.path.splitext(parts[-1])[0])
    name = name + "." + stem
    spec = importlib.util.spec_from_file_location(name, entry)
    if spec is None or spec.loader is None:
        raise ImportError("cannot load " + entry + " as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    setattr(parent, stem, module)
    return module


def _run(module_dir, entry, args):
    """Runs main(args) of `entry`; returns (ok, reason)."""
    module_dir = os.path.abspath(module_dir)
    entry = os.path.abspath(entry)
    args = list(args)
    shown = os.path.relpath(entry, module_dir)
    sys.argv = [entry] + args
    sys.dont_write_bytecode = True
    sys.path[:] = [p for p in sys.path if p not in ("", ".")]
    for directory in (module_dir, os.path.dirname(entry)):
        if directory not in sys.path:
            sys.path.insert(0, directory)

    try:
        module = _load(module_dir, entry)
    except BaseException as exc:
        traceback.print_exc()
        return False, "importing " + shown + " raised " + _describe_exception(exc)

    main = getattr(module, "main", None)
    if main is None:
        return False, shown + " does not define main(args)"
    if not callable(main):
        return False, shown + ": main is not callable"

    try:
        result = main(args)
    except SystemExit as exc:
        if exc.code is None or exc.code == 0:
            return True, ""
        return False, "main() called sys.exit(" + repr(exc.code) + ")"
    except BaseException as exc:
        traceback.print_exc()
        return False, "main() raised " + _describe_exception(exc)

    if result is None:
        return False, "main() returned None"
    if result is False:
        return False, "main() returned False"
    if isinstance(result, dict) and "success" in result:
        try:
            succeeded = bool(result["success"])
        except BaseException as exc:
            return False, "main() returned a dict whose success cannot be tested: " + _describe_exception(exc)
        if not succeeded:
            return False, "main() returned " + _render(result)
    return True, ""


def _finish(ok, reason):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    line = _MARKER + ("ok" if ok else "fail " + _one_line(reason or "main() failed")) + "\n"
    os.write(2, line.encode("utf-8", "replace"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    _finish(*_run(sys.argv[1], sys.argv[2], sys.argv[3:]))
