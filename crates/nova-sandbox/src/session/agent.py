# A session's agent: the program a session's jail runs for its whole life (see `session/mod.rs`). It keeps a
# Python interpreter state per code context, starts commands, and reads and writes files, on requests from
# the host. It is confined like any program of the jail, and the host trusts nothing it says beyond the
# session itself.
#
# The protocol is JSON lines. The host writes requests on fd 0, `{"id": N, "op": ..., ...}`; the agent
# answers on fd 1 with events `{"id": N, "ev": ..., ...}`, any number of them, the last of each request being
# `done` (with the request's result fields) or `fail` (`kind` and `message`). Id 0 is the agent's own: `ready`
# once it serves. Bytes travel base64-encoded (`b64`); code output as text.
#
# Code runs take turns in the main thread (so that `interrupt` can raise KeyboardInterrupt in them); every
# other request is served at once by the reader thread. Output written to fds 1 and 2 by the code or by
# processes it starts (`os.system`) goes to the code run in progress, never onto the protocol channel.
import os, sys, _thread, _queue, _signal, binascii

# Only C modules at start: `json`, `threading`, `queue`, `base64` and `signal` would pull in `re`, `enum` and
# `collections`, most of a session's start-up time and a megabyte of every idle session's memory. The code
# a session runs imports what it wants.
try:
    import _json

    class _Parsing:
        strict, object_hook, object_pairs_hook = True, None, None
        parse_float, parse_int, parse_constant = float, int, float
        memo = {}

    def _unencodable(o):
        raise TypeError(f"{type(o).__name__} is not JSON serializable")

    _scan = _json.make_scanner(_Parsing())
    _encode = _json.make_encoder(None, _unencodable, _json.encode_basestring_ascii, None, ":", ",", False, False, False)

    def loads(text):
        text = text.decode() if isinstance(text, bytes) else text
        text = text.strip()
        value, end = _scan(text, 0)
        if end != len(text):
            raise ValueError("extra data after the JSON value")
        return value

    def dumps(value):
        return "".join(_encode(value, 0))
except Exception:  # an interpreter without the C accelerator
    import json

    loads = json.loads

    def dumps(value):
        return json.dumps(value, separators=(",", ":"))


def spawn(target, *args):
    """Starts a thread that ends with the process (as a daemon thread does)."""
    _thread.start_new_thread(target, args)

IN = os.dup(0)
OUT = os.dup(1)  # os.dup's copies are not inherited by processes the code or a command starts
_devnull = os.open("/dev/null", os.O_RDWR)
os.dup2(_devnull, 0)
HOME = os.environ.get("HOME") or "/work"
MAX_CHUNK = 1 << 20
MAX_TEXT = 1 << 20  # the most of a result's repr, and of a traceback, that is sent
MAX_ENTRIES = 10000  # the most entries a listing sends
_outbox = _queue.SimpleQueue()


def send(message):
    """Queues one event. A writer thread writes them, so that an interrupt (a KeyboardInterrupt in the main
    thread) can never leave half a line on the channel."""
    _outbox.put((dumps(message) + "\n").encode())


def writer():
    while True:
        data = _outbox.get()
        while data:
            data = data[os.write(OUT, data):]


def b64(data):
    return binascii.b2a_base64(data, newline=False).decode()


def unb64(text):
    return binascii.a2b_base64(text or "")


def resolve(path, cwd=HOME):
    if not isinstance(path, str) or not path or "\0" in path:
        raise ValueError("a path must be a non-empty string without NUL")
    return os.path.normpath(os.path.join(cwd, os.path.expanduser(path)))


class Failed(Exception):
    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def failure(e):
    if isinstance(e, Failed):
        return e.kind, str(e)
    if isinstance(e, FileNotFoundError) and e.filename is None:
        return "not_found", str(e)
    if isinstance(e, FileNotFoundError):
        return "not_found", f"{e.filename or ''}: no such file or directory".lstrip(": ")
    if isinstance(e, FileExistsError):
        return "exists", f"{e.filename}: already exists"
    if isinstance(e, (NotADirectoryError, IsADirectoryError)):
        return "invalid", str(e.strerror or e)
    if isinstance(e, PermissionError):
        return "permission", f"{e.filename or ''}: permission denied".lstrip(": ")
    if isinstance(e, BrokenPipeError):
        return "invalid", "the process no longer reads its input"
    if isinstance(e, OSError) and e.errno == 28:
        return "no_space", "the sandbox's work area is full"
    if isinstance(e, OSError) and e.errno == 30:
        return "permission", f"{e.filename or ''}: read-only file system (only /work and /tmp are writable)".lstrip(": ")
    if isinstance(e, OSError) and e.errno in (1, 13):
        return "permission", f"{e.filename or ''}: {e.strerror}".lstrip(": ")
    if isinstance(e, OSError) and e.errno is not None:
        # A path too long, a loop of links, a bad argument: the request's own problem.
        return "invalid", f"{e.filename or ''}: {e.strerror}".lstrip(": ")
    if isinstance(e, (ValueError, KeyError, TypeError)):
        return "invalid", str(e)
    return "internal", f"{type(e).__name__}: {e}"


# ---- Output of code runs -----------------------------------------------------------------------------------

_current = [None]  # the id of the code run in progress


class Stream:
    """`sys.stdout` / `sys.stderr` of code runs: text goes to fd 1 or 2 line by line (the rest at flush or the
    end), where the pump of that descriptor sends it to the run in progress."""

    encoding, errors = "utf-8", "replace"

    def __init__(self, name, fd):
        self.name, self._fd, self._buf, self._lock = name, fd, [], _thread.allocate_lock()

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            self._buf.append(text)
            if "\n" in text or sum(map(len, self._buf)) > 8192:
                self._emit(final=False)
        return len(text)

    def _emit(self, final):
        text = "".join(self._buf)
        cut = len(text) if final or len(text) > 8192 else text.rfind("\n") + 1
        out, rest = text[:cut], text[cut:]
        self._buf = [rest] if rest else []
        # Through the descriptor, as the output of processes the code starts goes: one pipe, one order.
        data = out.encode("utf-8", "replace")
        while data:
            data = data[os.write(self._fd, data):]

    def flush(self):
        with self._lock:
            self._emit(final=True)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def fileno(self):
        return self._fd

    def isatty(self):
        return False

    def writable(self):
        return True

    def readable(self):
        return False


# Written after each code run on fds 1 and 2: once the pump has passed it, everything the run (and what it
# started) wrote before is sent, and the run can end. Random, so no output holds it by chance.
MARK = b"\0nova-end-" + os.urandom(8).hex().encode() + b"\0"
_captures = []  # (fd, lock released when the pump passes the mark)


def capture(fd, name):
    """Points `fd` at a pipe whose text goes to the code run in progress."""
    r, w = os.pipe()
    os.dup2(w, fd)
    os.close(w)
    seen = _thread.allocate_lock()
    seen.acquire()
    _captures.append((fd, seen))

    def pump():
        import codecs  # loaded with the interpreter already
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        held = b""
        while True:
            data = os.read(r, 65536)
            if not data:
                return
            data, held, marked = held + data, b"", False
            at = data.find(MARK)
            if at >= 0:
                data, marked = data[:at] + data[at + len(MARK):], True
            else:
                # A mark cut by the end of this read waits for its rest.
                for k in range(len(MARK) - 1, 0, -1):
                    if data.endswith(MARK[:k]):
                        data, held = data[:-k], data[-k:]
                        break
            text = decoder.decode(data)
            run = _current[0]
            if run is not None and text:
                send({"id": run, "ev": name, "text": text})
            if marked and seen.locked():
                seen.release()

    spawn(pump)


def drain_captures():
    """Waits (a second at most) until what was written on fds 1 and 2 so far has been sent."""
    for fd, seen in _captures:
        try:
            os.write(fd, MARK)
        except OSError:
            continue
        seen.acquire(timeout=1.0)


# ---- Code contexts ----------------------------------------------------------------------------------------

class Context:
    def __init__(self, cwd):
        self.cwd = cwd
        self.count = 0
        self.globals = {"__name__": "__main__", "__builtins__": __builtins__}


contexts = {"default": Context(HOME)}
_runs = _queue.SimpleQueue()


def run_code(rid, request):
    import _ast  # the C module: `ast` would import `enum` and `re` on the first run
    context = contexts.get(request.get("context") or "default")
    if context is None:
        return send({"id": rid, "ev": "fail", "kind": "not_found", "message": "no such code context"})
    context.count += 1
    saved_env = dict(os.environ)
    _current[0] = rid
    done = {"id": rid, "ev": "done", "execution_count": context.count}
    try:
        os.environ.update({str(k): str(v) for k, v in (request.get("env") or {}).items()})
        os.chdir(context.cwd)
        name = f"<cell {context.count}>"
        tree = compile(request.get("code", ""), name, "exec", _ast.PyCF_ONLY_AST)
        last = None
        if tree.body and isinstance(tree.body[-1], _ast.Expr):
            last = _ast.Expression(tree.body.pop().value)
        exec(compile(tree, name, "exec"), context.globals)
        if last is not None:
            value = eval(compile(last, name, "eval"), context.globals)
            if value is not None:
                context.globals["_"] = value
                # What the run printed comes first, as it did.
                drain_captures()
                text = repr(value)
                if len(text) > MAX_TEXT:
                    text = text[:MAX_TEXT] + "... (cut)"
                send({"id": rid, "ev": "result", "text": text})
    except BaseException as e:
        import traceback
        try:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            drain_captures()
        except BaseException:
            pass
        tb = e.__traceback__
        # The agent's own frames are not the user's business: start at the cell.
        while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<cell "):
            tb = tb.tb_next
        lines = traceback.format_exception(type(e), e, tb)
        text = "".join(lines)[-MAX_TEXT:]
        try:
            value = str(e)[:MAX_TEXT]
        except BaseException:
            value = "(unprintable)"
        send({"id": rid, "ev": "error", "name": type(e).__name__, "value": value, "traceback": text})
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        try:
            context.cwd = os.getcwd()
        except OSError:
            pass
        os.environ.clear()
        os.environ.update(saved_env)
        try:
            drain_captures()
        except BaseException:
            pass
        _current[0] = None
        send(done)


def code_loop():
    while True:
        rid, request = _runs.get()
        try:
            _running[0] = rid
            run_code(rid, request)
        except BaseException:
            pass  # an interrupt that arrived between two runs
        finally:
            _running[0] = None


_running = [None]


# ---- Commands ---------------------------------------------------------------------------------------------

processes = {}  # pid -> Command
_proc_lock = _thread.allocate_lock()


class Command:
    def __init__(self, rid, request):
        import subprocess
        self.rid = rid
        self.cmd = request["cmd"]
        args = request.get("args")
        if not isinstance(self.cmd, str) or "\0" in self.cmd or not self.cmd:
            raise ValueError("a command must be a non-empty string without NUL")
        if args is not None and (not isinstance(args, list) or any(not isinstance(a, str) or "\0" in a for a in args)):
            raise ValueError("arguments must be strings without NUL")
        self.args = args
        self.cwd = resolve(request.get("cwd") or HOME)
        self.tag = request.get("tag")
        self.env = {str(k): str(v) for k, v in (request.get("env") or {}).items()}
        env = dict(os.environ)
        env.update(self.env)
        if args is None:
            argv = ["/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh", "-c", self.cmd]
        else:
            argv = [self.cmd] + args
        self.proc = subprocess.Popen(
            argv, cwd=self.cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True, close_fds=True)
        self.pid = self.proc.pid
        self.input_lock = _thread.allocate_lock()
        if not request.get("stdin"):
            self.proc.stdin.close()
        # Each reader holds its lock until its pipe ends.
        self.readers = [(f, n, _thread.allocate_lock()) for f, n in ((self.proc.stdout, "stdout"), (self.proc.stderr, "stderr"))]

    def start(self):
        send({"id": self.rid, "ev": "started", "pid": self.pid})
        for f, name, done in self.readers:
            done.acquire()
            spawn(self.pump, f, name, done)
        spawn(self.wait)

    def pump(self, f, name, done):
        fd = f.fileno()
        try:
            while True:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    return
                if not data:
                    return
                send({"id": self.rid, "ev": name, "b64": b64(data)})
        finally:
            done.release()

    def wait(self):
        status = self.proc.wait()
        # What the process wrote before it ended; a descendant that keeps the pipes open is not waited for.
        for _, _, done in self.readers:
            if done.acquire(timeout=0.2):
                done.release()
        with _proc_lock:
            processes.pop(self.pid, None)
        end = {"id": self.rid, "ev": "done"}
        if status < 0:
            end["signal"] = -status
        else:
            end["exit_code"] = status
        send(end)

    def feed(self, rid, data):
        """Writes `data` to the process's input (or closes it, for `None`), then answers request `rid`."""
        with self.input_lock:
            try:
                if self.proc.stdin.closed:
                    raise Failed("invalid", "the process's input is closed")
                if data is None:
                    self.proc.stdin.close()
                else:
                    self.proc.stdin.write(data)
                    self.proc.stdin.flush()
                send({"id": rid, "ev": "done"})
            except BaseException as e:
                kind, message = failure(e)
                send({"id": rid, "ev": "fail", "kind": kind, "message": message})

    def info(self):
        return {"pid": self.pid, "cmd": self.cmd, "args": self.args, "cwd": self.cwd, "env": self.env, "tag": self.tag}


def find(pid):
    with _proc_lock:
        command = processes.get(pid)
    if command is None:
        raise Failed("not_found", f"no process {pid}")
    return command


# ---- Requests ---------------------------------------------------------------------------------------------

def entry(path, name=None):
    import stat
    st = os.lstat(path)
    kind = "dir" if stat.S_ISDIR(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode) else "file"
    info = {"name": name or os.path.basename(path) or "/", "path": path, "type": kind, "size": st.st_size,
            "mode": st.st_mode & 0o7777, "modified": st.st_mtime}
    if kind == "symlink":
        info["target"] = os.readlink(path)
        if os.path.isdir(path):
            info["type"] = "dir"
        elif os.path.exists(path):
            info["type"] = "file"
    return info


def serve(rid, op, r):
    if op == "code":
        _runs.put((rid, r))
        return None
    if op == "interrupt":
        if _running[0] is not None and _running[0] == r.get("target"):
            # A real SIGINT, so that a run blocked in a system call (a sleep, a read) wakes up too.
            _signal.pthread_kill(MAIN_THREAD, _signal.SIGINT)
        return {}
    if op == "context":
        key = os.urandom(8).hex()
        contexts[key] = Context(resolve(r.get("cwd") or HOME))
        return {"context": key, "cwd": contexts[key].cwd}
    if op == "contexts":
        return {"contexts": [{"context": k, "cwd": c.cwd} for k, c in contexts.items()]}
    if op == "drop_context":
        if r.get("context") == "default" or contexts.pop(r.get("context"), None) is None:
            raise Failed("not_found", "no such code context")
        return {}
    if op == "reset_context":
        key = r.get("context") or "default"
        if key not in contexts:
            raise Failed("not_found", "no such code context")
        contexts[key] = Context(contexts[key].cwd)
        return {}
    if op == "spawn":
        command = Command(rid, r)
        with _proc_lock:
            processes[command.pid] = command
        command.start()
        return None
    if op == "ps":
        with _proc_lock:
            return {"processes": [c.info() for c in processes.values()]}
    if op == "signal":
        command = find(r["pid"])
        try:
            os.killpg(command.pid, int(r.get("signal", 9)))
        except ProcessLookupError:
            os.kill(command.pid, int(r.get("signal", 9)))
        return {}
    if op in ("input", "close_input"):
        # On a thread of its own, in turn with the command's other inputs: a command that does not read would
        # otherwise hold up every request of the session.
        command = find(r["pid"])
        data = unb64(r.get("b64")) if op == "input" else None
        spawn(command.feed, rid, data)
        return None
    if op == "write":
        path = resolve(r["path"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "ab" if r.get("append") else "wb") as f:
            f.write(unb64(r.get("b64")))
        return {"entry": entry(path)}
    if op == "read":
        path = resolve(r["path"])
        spawn(read_file, rid, path)
        return None
    if op == "stat":
        return {"entry": entry(resolve(r["path"]))}
    if op == "list":
        path = resolve(r["path"])
        depth = max(1, int(r.get("depth") or 1))
        out = []

        def walk(d, level):
            with os.scandir(d) as it:
                for e in sorted(it, key=lambda e: e.name):
                    if len(out) >= MAX_ENTRIES:
                        return
                    out.append(entry(e.path, e.name))
                    if level < depth and e.is_dir(follow_symlinks=False):
                        walk(e.path, level + 1)

        walk(path, 1)
        return {"entries": out, "truncated": len(out) >= MAX_ENTRIES}
    if op == "mkdir":
        path = resolve(r["path"])
        if os.path.isdir(path):
            return {"created": False, "entry": entry(path)}
        os.makedirs(path)
        return {"created": True, "entry": entry(path)}
    if op == "remove":
        import shutil
        path = resolve(r["path"])
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
        return {}
    if op == "rename":
        source, target = resolve(r["path"]), resolve(r["to"])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        import shutil
        shutil.move(source, target)  # a copy where a rename across folders is refused (EXDEV under Landlock)
        return {"entry": entry(target)}
    raise Failed("invalid", f"unknown operation {op!r}")


def read_file(rid, path):
    """Sends a regular file in chunks (a FIFO or a device could block for ever), then `done`."""
    import stat
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise Failed("invalid", f"{path} is not a regular file")
            os.set_blocking(fd, True)
            while True:
                chunk = os.read(fd, MAX_CHUNK)
                if not chunk:
                    break
                send({"id": rid, "ev": "data", "b64": b64(chunk)})
        finally:
            os.close(fd)
        send({"id": rid, "ev": "done"})
    except BaseException as e:
        kind, message = failure(e)
        send({"id": rid, "ev": "fail", "kind": kind, "message": message})


def reader():
    with os.fdopen(IN, "rb") as requests:
        for line in requests:
            rid = None
            try:
                r = loads(line)
                rid, op = r["id"], r["op"]
                result = serve(rid, op, r)
                if result is not None:
                    send({"id": rid, "ev": "done", **result})
            except BaseException as e:
                kind, message = failure(e)
                send({"id": rid, "ev": "fail", "kind": kind, "message": message})
    # The host closed the channel: the session ends.
    os._exit(0)


MAIN_THREAD = _thread.get_ident()
_signal.signal(_signal.SIGINT, _signal.default_int_handler)
spawn(writer)
sys.stdout, sys.stderr = Stream("stdout", 1), Stream("stderr", 2)
capture(1, "stdout")
capture(2, "stderr")
sys.path[:0] = [HOME]
os.chdir(HOME)
spawn(reader)
send({"id": 0, "ev": "ready", "pid": os.getpid()})
while True:
    try:
        code_loop()
    except BaseException:
        pass  # an interrupt between two runs
