# Fork-server for updater's Python entry points (see src/runner/forkserver/, and SPEC §5).
#
# Not a standalone script: updater runs
#     python -u -B -c <this> SHIM_SOURCE SOCKET_PATH BASE_ENV_JSON
# with the clean environment BASE_ENV_JSON describes (the variables updater passes to every program),
# stdin from /dev/null, stdout and stderr on pipes, in a process group of its own, and with the parent
# directory of the modules as working directory. It loads the shim (../shim.py) without running
# it, binds SOCKET_PATH and keeps a few module processes forked ahead of their runs. One connection
# to SOCKET_PATH is one run; lines both ways (the Rust side: protocol.rs, Request and Reply):
#
#   updater -> {"dir", "file", "args", "root", "name", "verdict", "env", "out", "err"}
#                                        the run (JSON): the shim's request (../shim.py) plus
#                                        its variables and where its stdout/stderr go (the
#                                        module's log file, opened for appending)
#   updater <- "ready" | "error <why>"   set up (nothing of the module ran yet; on error it exits)
#   updater -> "go"
#   updater <- "pid <n>"                 the module process's pid (and process group); it waits
#   updater -> "start"                   updater recorded that group (RunSpec::pgid_file): run
#                                        the module (end of file instead: exit, nothing ran)
#   updater <- "status <wait status>"    it ended; it stays unreaped (so its process group id stays
#                                        its own, for updater's timeout kill) until updater closes
#
# The server: forks module processes (its children, each in a process group of its own), watches
# them through pidfds, receives from each the connection it takes (SCM_RIGHTS), reports its wait
# status there when it ends, and reaps it when updater closes that connection. It never imports
# module code. It exits when updater goes away: its stdout is a pipe whose only reader is updater,
# and poll() reports an error on it once that reader is gone; waiting module processes do the same.
#
# A module process, forked ahead: waits for and accepts a connection (one process per connection:
# the kernel wakes one accept), hands a duplicate to the server, reads the run, gets ready in its
# own process (working directory, environment, stdin /dev/null, stdout and stderr on the module's
# log file, no other descriptor open but those the server inherited from updater, as a fresh
# interpreter would inherit them; the server's own modules forgotten), answers "ready", on "go"
# answers its pid, and on "start" (its process group is recorded by then) does exactly what the shim's last lines do in a fresh interpreter: _finish(*_run(request)),
# whose SystemExit ends the process as interpreter shutdown would (_shut_down explains the
# difference).
#
# The server imports nothing before the shim, so the modules a module process finds loaded are those
# of a fresh interpreter running the shim.
import os
import sys


def _open_fds():
    """The descriptors above 2 open now, or None when /proc cannot tell."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return None
    fds = set()
    for name in names:
        fd = int(name)
        try:
            if fd > 2:
                os.fstat(fd)  # the one listdir() used is closed by now
                fds.add(fd)
        except OSError:
            pass
    return fds


# Descriptors updater let the server inherit: a fresh interpreter would inherit the same ones.
_INHERITED_FDS = _open_fds()

_SHIM = {"__name__": "_updater_shim", "__builtins__": __builtins__}
exec(compile(sys.argv[1], "<string>", "exec"), _SHIM)
_BASELINE = frozenset(sys.modules)

import atexit  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402  (already loaded by the shim)
import select  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import traceback  # noqa: E402  (already loaded by the shim)

_SOCKET = sys.argv[2]
_BASE_ENV = json.loads(sys.argv[3])
# What the interpreter was started with, after any launcher (a pyenv shim, ...) had its say.
_START_ENV = dict(os.environ)
_START_CWD = os.getcwd()

# Module processes kept waiting for runs (between runs; see _Server.wanted).
_SPARES = 2

_FD_SIZE = struct.calcsize("i")

# Set by the server before it forks: the modules it loaded beyond the shim's, and how many remain.
_PURGE = []
_KEPT = 0


# ---- the module process --------------------------------------------------------------------------


def _child_environ(request_env):
    """The environment a fresh interpreter started in the current directory would have."""
    cwd = os.getcwd()
    env = {}
    for name, value in _START_ENV.items():
        # A launcher recorded its working directory (PWD, PYENV_DIR): a fresh interpreter would
        # have seen the module directory there.
        if value == _START_CWD and _BASE_ENV.get(name) != value:
            value = cwd
        env[name] = value
    env.update(request_env)
    return env


def _set_environ(env):
    """Makes os.environ (and the process environment) `env`, changing only what differs."""
    for name in [name for name in os.environ if name not in env]:
        del os.environ[name]
    for name, value in env.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


def _send(conn, text):
    conn.sendall((text + "\n").encode("utf-8", "replace"))


def _recv_line(conn):
    """One line from updater (which sends nothing more until answered); b"" at EOF."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    return data


def _close_other_fds(keep):
    """Closes every descriptor above 2 but `keep` and those the server inherited."""
    fds = _open_fds()
    if fds is None or _INHERITED_FDS is None:
        fds = set(range(3, 1024))
        inherited = set()
    else:
        inherited = _INHERITED_FDS
    for fd in fds - inherited - set(keep):
        try:
            os.close(fd)
        except OSError:
            pass


def _module_process(listener, server):
    """In a module process forked ahead of its run. Returns the request once told to go."""
    # What does not depend on the run is done before it comes.
    for name in _PURGE:
        sys.modules.pop(name, None)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    _close_other_fds(keep=(listener.fileno(), server.fileno(), null_fd))
    # Wait for a run; give up when updater is gone (error on our stdout) or the server is.
    poller = select.poll()
    poller.register(listener.fileno(), select.POLLIN)
    poller.register(1, select.POLLERR | select.POLLHUP)
    poller.register(server.fileno(), select.POLLIN)
    conn = None
    while conn is None:
        for fd, _ in poller.poll():
            if fd != listener.fileno():
                os._exit(0)
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            continue
    listener.close()
    conn.setblocking(True)
    # The server reports how this process ends on the same connection.
    server.sendmsg(
        [b"c"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", conn.fileno()))]
    )
    server.close()
    line = _recv_line(conn)
    if not line:
        os._exit(0)
    try:
        request = json.loads(line.decode("utf-8"))
        os.chdir(request["dir"])
        _set_environ(_child_environ(request["env"]))
        # The module's log file (appended to), as for a fresh interpreter.
        out_fd = os.open(request["out"], os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
        err_fd = os.open(request["err"], os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
        os.set_blocking(out_fd, True)
        os.set_blocking(err_fd, True)
        os.dup2(null_fd, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        for fd in (null_fd, out_fd, err_fd):
            os.close(fd)
    except Exception as exc:
        _send(conn, "error " + " ".join(("%s: %s" % (type(exc).__name__, exc)).split()))
        os._exit(0)
    _send(conn, "ready")
    if _recv_line(conn).strip() != b"go":
        os._exit(0)
    _send(conn, "pid %d" % os.getpid())
    # updater records the process group before any module code runs (a SIGKILLed updater must
    # leave nothing the next run cannot kill).
    if _recv_line(conn).strip() != b"start":
        os._exit(0)
    conn.close()
    return request


def _shut_down(code):
    """Ends the module process as interpreter shutdown would, and returns no more.

    A fresh interpreter's shutdown also frees everything the interpreter holds; in a forked process
    that means writing to every page inherited from the server (copy-on-write), which costs more
    than the rest of the run. So: what shutdown does that a module can notice, in its order, then
    os._exit. Non-daemon threads are waited for, atexit functions run, the standard streams are
    flushed, and the module's own modules are torn down as shutdown would (globals set to None,
    newest module first, then garbage collected), so __del__ methods run and files left open in
    module globals are flushed and closed. When daemon threads are still running they are left
    alone, as shutdown leaves them (they would otherwise see their globals vanish).
    """
    if code is None:
        code = 0
    elif not isinstance(code, int):
        try:
            print(code, file=sys.stderr)
        except BaseException:
            pass
        code = 1
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException:
            traceback.print_exc()
    atexit._run_exitfuncs()
    _flush_std()
    if threading is None or threading.active_count() <= 1:
        # The module's own modules are the newest entries (the server's were dropped).
        new = len(sys.modules) - _KEPT
        names = [name for _, name in zip(range(new), reversed(sys.modules))]
        for name in names:
            if name in _BASELINE:
                continue
            namespace = getattr(sys.modules.get(name), "__dict__", None)
            if not isinstance(namespace, dict):
                continue
            names = [key for key in namespace if key != "__builtins__"]
            for key in sorted(names, key=lambda key: not key.startswith("_")):
                namespace[key] = None
        gc.collect()
        _flush_std()
    os._exit(code & 0xFF)


def _flush_std():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


# ---- the server ----------------------------------------------------------------------------------


def _wait_status(info):
    """A waitid() result as a wait status (what waitpid() would report)."""
    if info.si_code == os.CLD_EXITED:
        return (info.si_status & 0xFF) << 8
    if info.si_code == os.CLD_DUMPED:
        return (info.si_status & 0x7F) | 0x80
    return info.si_status & 0x7F


class _Child:
    """A module process, as the server sees it."""

    def __init__(self, pid, pidfd, server_end):
        self.pid = pid
        self.pidfd = pidfd
        self.server_end = server_end  # until it takes a run
        self.conn = None  # once it took one
        self.ended = False


class _Server:
    def __init__(self):
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(_SOCKET)
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.poller = select.poll()
        self.poller.register(1, select.POLLERR | select.POLLHUP)
        self.children = {}  # pid -> _Child
        self.watched = {}  # fd -> (what, _Child)

    def spares(self):
        return sum(1 for child in self.children.values() if child.server_end is not None)

    def wanted(self):
        """Spares to have now: one while runs are in progress (a fork then competes with them
        for the CPU), _SPARES between runs."""
        running = any(child.server_end is None for child in self.children.values())
        return 1 if running else _SPARES

    def watch(self, fd, what, child):
        self.poller.register(fd, select.POLLIN)
        self.watched[fd] = (what, child)

    def unwatch(self, fd):
        if self.watched.pop(fd, None) is not None:
            self.poller.unregister(fd)

    def fork_spare(self):
        """Forks a module process. Returns (only in it) the listener and its end of the pair."""
        server_end, child_end = socket.socketpair()
        try:
            pid = os.fork()
        except OSError:
            server_end.close()
            child_end.close()
            raise
        if pid == 0:
            # Never back into the server loop from here.
            try:
                os.setpgid(0, 0)
                server_end.close()
                for child in self.children.values():
                    os.close(child.pidfd)
                    for sock in (child.server_end, child.conn):
                        if sock is not None:
                            sock.close()
            except BaseException:
                traceback.print_exc()
                os._exit(70)
            return self.listener, child_end
        child_end.close()
        try:
            os.setpgid(pid, pid)  # also done by the child; whichever runs first wins the race
        except OSError:
            pass
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            # A module process nobody watches must not take runs.
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            server_end.close()
            raise
        child = _Child(pid, pidfd, server_end)
        self.children[pid] = child
        self.watch(server_end.fileno(), "took", child)
        self.watch(child.pidfd, "ended", child)
        return None

    def took(self, child):
        """The child sent the connection it accepted (or ended without one)."""
        sock = child.server_end
        try:
            _, ancillary, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(_FD_SIZE))
        except OSError:
            ancillary = []
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fd = struct.unpack("i", data[:_FD_SIZE])[0]
                child.conn = socket.socket(fileno=fd)
        self.unwatch(sock.fileno())
        sock.close()
        child.server_end = None

    def ended(self, child):
        """The child ended: report its status (it stays unreaped until updater closes)."""
        self.unwatch(child.pidfd)
        child.ended = True
        if child.conn is None:
            self.reap(child)
            return
        info = os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
        try:
            _send(child.conn, "status %d" % _wait_status(info))
        except OSError:
            self.reap(child)
            return
        self.watch(child.conn.fileno(), "closed", child)

    def closed(self, child):
        """updater closed (or wrote to) a finished run's connection."""
        try:
            if child.conn.recv(4096):
                return
        except OSError:
            pass
        self.reap(child)

    def reap(self, child):
        for fd in (child.pidfd,) + tuple(
            sock.fileno() for sock in (child.server_end, child.conn) if sock is not None
        ):
            self.unwatch(fd)
        for sock in (child.server_end, child.conn):
            if sock is not None:
                sock.close()
        os.close(child.pidfd)
        os.waitpid(child.pid, 0)
        del self.children[child.pid]

    def quit(self):
        for child in self.children.values():
            if child.server_end is not None:  # still waiting: not running anything
                try:
                    os.kill(child.pid, signal.SIGKILL)
                except OSError:
                    pass
        directory = os.path.dirname(_SOCKET)
        try:
            for name in os.listdir(directory):
                os.unlink(os.path.join(directory, name))
            os.rmdir(directory)
        except OSError:
            pass
        os._exit(0)

    def serve(self):
        """The server loop. Returns (only in a module process) what fork_spare returned."""
        global _PURGE, _KEPT
        # The modules a module process forgets: all the server loaded beyond the shim's.
        _PURGE = [name for name in sys.modules if name not in _BASELINE]
        _KEPT = len(sys.modules) - len(_PURGE)
        # Forked processes' collections then leave the server's objects (and their pages) alone.
        gc.collect()
        gc.freeze()
        announced = False
        while True:
            while self.spares() < self.wanted():
                try:
                    forked = self.fork_spare()
                except OSError:
                    traceback.print_exc()
                    break
                if forked is not None:
                    return forked
            if not announced:
                os.write(1, b"ready\n")
                announced = True
            events = self.poller.poll(1000 if self.spares() < self.wanted() else None)
            if any(fd == 1 for fd, _ in events):
                self.quit()
            # A child's connection comes before its end, which may be in the same batch.
            order = {"took": 0, "ended": 1, "closed": 2}
            todo = [self.watched[fd] for fd, _ in events if fd in self.watched]
            for what, child in sorted(todo, key=lambda item: order[item[0]]):
                try:
                    if what == "took" and child.server_end is not None:
                        self.took(child)
                    elif what == "ended" and not child.ended:
                        self.ended(child)
                    elif what == "closed" and child.pid in self.children:
                        self.closed(child)
                except Exception:
                    traceback.print_exc()


def _main():
    for needed in ("fork", "pidfd_open", "waitid", "WNOWAIT", "setpgid", "set_blocking"):
        if not hasattr(os, needed):
            raise SystemExit("fork-server: os." + needed + " is missing")
    listener, server = _Server().serve()
    try:
        return _module_process(listener, server)
    except BaseException:
        # In a module process, before the module's code ran.
        try:
            traceback.print_exc()
        finally:
            os._exit(70)


_request = _main()
try:
    _SHIM["_finish"](*_SHIM["_run"](_request))
except SystemExit as _exit:
    _shut_down(_exit.code)
