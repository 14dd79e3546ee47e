# Runs one module's Python entry point for updater (see src/runner/shim.rs, SPEC §5 and §10).
#
# Not a standalone script: updater embeds it and runs `python -u -B -c <this> REQUEST_JSON` with the
# module directory as working directory. The request is a JSON object:
#     dir      the module directory
#     file     the Python file whose main(args) runs (normally dir/index.py)
#     args     null (main(None)) or a list of str (main(list))
#     root     the install root when the module lives at <root>/modules/<name>, else null
#     name     the module's name (its directory name)
#     verdict  the path of the verdict file (see below)
#
# Import context. With a root, the package `updates` is the install root whatever its directory is
# called (a meta path finder maps the name; without a root __init__.py it is a namespace-like
# package), and the module is imported as the package `updates.modules.<name>` (its __init__.py
# runs). `main` is the package's, else (for index.py) the one of `updates.modules.<name>.index`; a
# declared file other than index.py is loaded as a submodule of the package. `updates` is imported
# the way `python3 -m updates.index` (runpy) does: a first ImportError whose `name` is `updates`
# (today's upstream has a circular import that fails exactly so) is tolerated once and the import
# is tried again; any other ImportError is the module's failure. A module name that is not a
# Python identifier still imports ("-" kept; "." becomes "_" in the import name only, as a dotted
# name would mean a subpackage). Without a root (a module outside an install root) the module
# directory is imported as a package under a synthetic name, as before.
#
# Before the module is imported, Python's root logger logs at DEBUG to stdout as
# `[YYYY-MM-DD HH:MM:SS] [LEVEL] message` (HOMESERVER's log_message only calls logging).
#
# Verdict: main fails when it raises (the traceback goes to stderr), returns None, returns a dict
# holding a falsy "success", or returns exactly False twice (a main that returns False is called once
# more, in the same process, after a log line saying so). Anything else, 0 and "" included, is
# success. sys.exit(0) or sys.exit() inside main counts as success, any other code as failure.
# The verdict is written, once, as one JSON object {"ok", "reason", "details"} to the verdict file,
# which the shim opens (close-on-exec, so programs the module starts do not hold it) before any
# module code runs; the runner reads it after the process ended. Nothing goes to stdout/stderr, so
# nothing the module prints can forge or hide it. `details` is what main returned in a dict, minus
# "success" (JSON values kept, others repr'd), or null; at most _DETAILS_LIMIT bytes of JSON, else
# {"truncated": true, "bytes": N}.
#
# The fork-server (forkserver/server.py) runs the same code: it executes this file under another
# __name__ (so the last lines do nothing), and each forked module process calls
# _finish(*_run(REQUEST)) exactly as the last lines do here.
import sys

# `-c` puts the working directory (the module) first on sys.path: drop it before importing anything,
# so a module file named like a standard module (json.py, ...) cannot replace what the shim uses.
sys.path[:] = [p for p in sys.path if p not in ("", ".")]

import importlib  # noqa: E402
import importlib.abc  # noqa: E402
import importlib.machinery  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import traceback  # noqa: E402

_REASON_LIMIT = 300
_DETAILS_LIMIT = 64 * 1024

# (fd, pid) of the verdict file; only that process writes it, once.
_VERDICT = [None, None]


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
        try:
            return repr(value)
        except Exception:
            return "<unrepresentable>"


def _identifier(text):
    ident = "".join(c if (c.isalnum() or c == "_") and c.isascii() else "_" for c in text)
    if not ident or ident[0].isdigit():
        ident = "_" + ident
    return ident


def _package_spec(name, directory):
    """A package spec for `name` made of `directory` (namespace-like without __init__.py)."""
    init = os.path.join(directory, "__init__.py")
    if os.path.isfile(init):
        return importlib.util.spec_from_file_location(
            name, init, submodule_search_locations=[directory]
        )
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [directory]
    return spec


def _exec_spec(spec):
    """Imports `spec` as the import statement would: in sys.modules while it runs, gone if it
    fails, bound on its parent package when it succeeds."""
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        if spec.loader is not None:
            spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    module = sys.modules.get(spec.name, module)
    parent, _, child = spec.name.rpartition(".")
    if parent and parent in sys.modules:
        setattr(sys.modules[parent], child, module)
    return module


def _package(name, directory):
    """Returns package `name`, whose submodules live in `directory`, creating it if needed."""
    if name in sys.modules:
        return sys.modules[name]
    return _exec_spec(_package_spec(name, directory))


class _UpdatesFinder(importlib.abc.MetaPathFinder):
    """Finds the package `updates` at the install root, whatever the root is called."""

    def __init__(self, root):
        self.root = root

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "updates":
            return None
        return _package_spec("updates", self.root)


def _import_updates(root):
    """Imports the package `updates` (the install root) as runpy does for `python3 -m`."""
    sys.meta_path.insert(0, _UpdatesFinder(root))
    try:
        importlib.import_module("updates")
    except ImportError as exc:
        # runpy tolerates an ImportError naming the package it initializes, then imports again:
        # today's upstream `updates` only imports on that second try (circular import).
        if exc.name != "updates":
            raise
        importlib.import_module("updates")
    # `python3 -m updates.index` then finds `updates.index` and runs it, which imports
    # `updates.utils` first (index.py's own `from .utils import ...`): only in that order does
    # today's upstream import, since `updates.utils` imports `updates.index` back. Do the same,
    # so that a module's `from updates.index import log_message` finds both already loaded.
    for name in ("updates.utils", "updates.index"):
        if _has_submodule(root, name.split(".")[1]):
            importlib.import_module(name)
    importlib.import_module("updates.modules")


def _has_submodule(root, name):
    """Whether the install root holds module or package `name` (`name.py` or `name/`)."""
    return os.path.isfile(os.path.join(root, name + ".py")) or os.path.isdir(
        os.path.join(root, name)
    )


def _load_file(package_name, module_dir, entry):
    """Imports `entry` (inside `module_dir`) as a submodule of package `package_name`."""
    parts = os.path.relpath(entry, module_dir).split(os.sep)
    if parts[0] == os.pardir:
        parts = [os.path.basename(entry)]
    name, directory = package_name, module_dir
    for part in parts[:-1]:
        directory = os.path.join(directory, part)
        name = name + "." + _identifier(part)
        _package(name, directory)
    stem = _identifier(os.path.splitext(parts[-1])[0])
    name = name + "." + stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, entry)
    if spec is None or spec.loader is None:
        raise ImportError("cannot load " + entry + " as a Python module")
    return _exec_spec(spec)


def _find_main(request, module_dir, entry):
    """Imports the module; returns (main or None, where it was looked for)."""
    shown = os.path.relpath(entry, module_dir)
    root = request.get("root")
    if not root:
        top = "_updater_module_" + _identifier(os.path.basename(module_dir))
        _package(top, module_dir)
        return getattr(_load_file(top, module_dir, entry), "main", None), shown
    root = os.path.abspath(root)
    _import_updates(root)
    name = request.get("name") or os.path.basename(module_dir)
    package_name = "updates.modules." + name.replace(".", "_")
    package = _package(package_name, module_dir)
    if entry == os.path.join(module_dir, "index.py"):
        main = getattr(package, "main", None)
        if main is not None:
            return main, package_name
        module = importlib.import_module(package_name + ".index")
        return getattr(module, "main", None), shown
    return getattr(_load_file(package_name, module_dir, entry), "main", None), shown


def _configure_logging():
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        logging.Formatter("[%(asctime)s] [%(levelname)s] %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)


def _details(result):
    """What main returned in a dict beyond "success", JSON-ready and capped; else None."""
    if not isinstance(result, dict):
        return None
    try:
        details = {str(key): value for key, value in result.items() if key != "success"}
        text = json.dumps(details, ensure_ascii=False, default=repr)
    except BaseException as exc:
        return {"unrepresentable": _describe_exception(exc)}
    size = len(text.encode("utf-8", "replace"))
    if size > _DETAILS_LIMIT:
        return {"truncated": True, "bytes": size}
    return json.loads(text)


def _call(main, args):
    """Calls main once; returns (verdict or None for "returned False", reason, result)."""
    try:
        result = main(args)
    except SystemExit as exc:
        if exc.code is None or exc.code == 0:
            return True, "", None
        return False, "main() called sys.exit(" + repr(exc.code) + ")", None
    except BaseException as exc:
        traceback.print_exc()
        return False, "main() raised " + _describe_exception(exc), None
    if result is None:
        return False, "main() returned None", None
    if result is False:
        return None, "main() returned False", None
    if isinstance(result, dict) and "success" in result:
        try:
            succeeded = bool(result["success"])
        except BaseException as exc:
            return (
                False,
                "main() returned a dict whose success cannot be tested: " + _describe_exception(exc),
                result,
            )
        if not succeeded:
            return False, "main() returned " + _render(result), result
    return True, "", result


def _run(request):
    """Runs main of the request's file; returns (ok, reason, details)."""
    module_dir = os.path.abspath(request["dir"])
    entry = os.path.abspath(request["file"])
    args = request.get("args")
    if args is not None:
        args = [str(arg) for arg in args]
    try:
        # Opened before any module code runs; os.open makes it close-on-exec.
        _VERDICT[0] = os.open(request["verdict"], os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
        _VERDICT[1] = os.getpid()
    except (KeyError, OSError) as exc:
        return False, "cannot open the verdict file: " + _describe_exception(exc), None
    sys.argv = [entry] + (args or [])
    sys.dont_write_bytecode = True
    sys.path[:] = [p for p in sys.path if p not in ("", ".")]
    if request.get("root"):
        # As under `python3 -m updates.index`, the module is not at the front of sys.path (no
        # shadowing of standard modules); at the end, plain `import sibling` still works.
        for directory in (module_dir, os.path.dirname(entry)):
            if directory not in sys.path:
                sys.path.append(directory)
    else:
        for directory in (module_dir, os.path.dirname(entry)):
            if directory not in sys.path:
                sys.path.insert(0, directory)
    _configure_logging()

    shown = os.path.relpath(entry, module_dir)
    try:
        main, where = _find_main(request, module_dir, entry)
    except BaseException as exc:
        traceback.print_exc()
        return False, "importing " + shown + " raised " + _describe_exception(exc), None
    if main is None:
        return False, shown + " does not define main(args)", None
    if not callable(main):
        return False, shown + ": main is not callable", None

    ok, reason, result = _call(main, args)
    if ok is None:
        logging.getLogger().warning("main() returned False; running it once more")
        ok, reason, result = _call(main, args)
        if ok is None:
            ok, reason = False, "main() returned False twice"
    return ok, reason, _details(result)


def _finish(ok, reason, details=None):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    fd, pid = _VERDICT
    if fd is None:
        # No verdict file: the runner counts the run as failed; say why where it can be seen.
        try:
            os.write(2, ("updater: " + _one_line(reason) + "\n").encode("utf-8", "replace"))
        except OSError:
            pass
    elif pid == os.getpid():
        verdict = {
            "ok": bool(ok),
            "reason": None if ok else _one_line(reason or "main() failed"),
            "details": details,
        }
        data = json.dumps(verdict, ensure_ascii=False, default=repr).encode("utf-8", "replace")
        try:
            while data:
                data = data[os.write(fd, data) :]
        except OSError:
            pass
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    _finish(*_run(json.loads(sys.argv[1])))
