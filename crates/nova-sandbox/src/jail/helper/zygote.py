# The jail's zygote: started once per jail with `-I -S -B`, it imports nothing of any program and waits on
# fd 3 (a Unix socket to the jail's init). For each run it receives the run's descriptors (stdin, stdout,
# stderr, code, report; `done`; the run's ipc, uts, net, pid and mount namespaces; and Landlock rulesets when
# the kernel has them: files, then no TCP), forks the program into the run's pid namespace (made by the run's
# init, `run.rs`), writes `forked` on `done`, answers `f`, waits for the program and writes
# `STATUS CPU_US MAX_RSS_BYTES` on `done`. The program, pid 2 of the run, joins the run's other namespaces and confines itself (the run's init
# sets its rlimits) before reading its code. Every run is a fresh fork of this untouched process.
import gc, os, sys, atexit, errno, _socket, ctypes

# No collection in the zygote, and every object it made frozen before each fork: a collection in the program
# would otherwise touch (and so copy) every page of the zygote's heap.
gc.disable()


def _check(rc):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


class _Kernel:
    """The calls the program makes on itself, resolved and built once here, so that each fork only makes them
    (a fork that built them would spend its time creating ctypes types and copying pages)."""

    def __init__(self, filters):
        libc = ctypes.CDLL(None, use_errno=True)
        ulong = ctypes.c_ulong
        self.setns = libc.setns
        self.setns.argtypes = (ctypes.c_int, ctypes.c_int)
        self.prctl = libc.prctl
        self.prctl.argtypes = (ctypes.c_int, ulong, ulong, ulong, ulong)
        self.syscall = libc.syscall
        self.syscall.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_long)
        self.capset = libc.capset
        self.capset.argtypes = (ctypes.c_void_p, ctypes.c_void_p)
        self.cap_header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
        self.cap_data = (ctypes.c_uint32 * 6)()
        with open("/proc/sys/kernel/cap_last_cap") as f:
            self.last_cap = int(f.read())

        class Program(ctypes.Structure):  # struct sock_fprog
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        self.filter_code = [ctypes.create_string_buffer(code, len(code)) for code in filters]
        self.filters = [Program(len(code) // 8, ctypes.addressof(b)) for code, b in zip(filters, self.filter_code)]


def _report_failure(report, step, e):
    """The line of a failed step, as the helper reads it (`protocol.rs`'s `Failure`): `error: CODE ERRNO DETAIL`,
    the step by its code (`error.rs`), the errno of an `OSError`, else the exception in words."""
    errno = getattr(e, "errno", None) or 0
    detail = "" if errno else " ".join(f"{type(e).__name__}: {e}".split())
    os.write(report, f"error: {step} {errno} {detail}\n".encode())


def _confine(fds, kernel):
    """In the program, forked into the run's pid namespace: join the run's other namespaces, then confine."""
    step = "join_namespaces"
    report = fds[4]
    try:
        program, spaces, rulesets = fds[:5], fds[6:11], fds[11:]
        for fd in spaces[:3] + spaces[4:]:  # ipc, uts, net, then mnt (the pid namespace is ours already)
            _check(kernel.setns(fd, 0))
        step = "new_session"
        os.setsid()
        step = "program_descriptors"
        # Out of the way first, so that no descriptor is overwritten before it has been placed.
        kept = [os.dup2(fd, 100 + i) for i, fd in enumerate(program + rulesets)]
        for slot, fd in enumerate(kept):
            os.dup2(fd, slot)
        report = 4
        for name in os.listdir("/proc/self/fd"):
            if int(name) >= len(kept):
                try:
                    os.close(int(name))
                except OSError:
                    pass
        step = "enter_work"
        os.chdir("/work")
        step = "no_new_privs"
        _check(kernel.prctl(38, 1, 0, 0, 0))  # PR_SET_NO_NEW_PRIVS
        if rulesets:
            step = "apply_landlock"
            _check(kernel.syscall(446, 5, 0))  # landlock_restrict_self(5, 0): the files ruleset
            os.close(5)
        step = "drop_capabilities"
        for cap in range(kernel.last_cap + 1):
            if kernel.prctl(24, cap, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EINVAL:
                _check(-1)  # PR_CAPBSET_DROP
        _check(kernel.prctl(47, 4, 0, 0, 0))  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL
        # SECBIT_NOROOT, SECBIT_NO_SETUID_FIXUP and SECBIT_KEEP_CAPS, each locked.
        _check(kernel.prctl(28, 0x2F, 0, 0, 0))
        _check(kernel.capset(ctypes.addressof(kernel.cap_header), ctypes.addressof(kernel.cap_data)))
        step = "install_seccomp"
        for fprog in kernel.filters:
            _check(kernel.prctl(22, 2, ctypes.addressof(fprog), 0, 0))  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        os.close(4)
    except BaseException as e:
        try:
            _report_failure(report, step, e)
        finally:
            os._exit(125)


def _program(python_path, kernel, no_tcp):
    # fd 3 holds `<network: 0 or 1><10-digit env length><env as K=V\0...><code>`.
    with open(3, "rb") as f:
        frame = f.read()
    if no_tcp:
        # Landlock's no-TCP ruleset (fd 6), applied when the request has no network access.
        if frame[:1] != b"1":
            try:
                _check(kernel.syscall(446, 6, 0))  # landlock_restrict_self(6, 0)
            except OSError as e:
                os.write(2, f"sandbox: applying Landlock's network ruleset: {e}\n".encode())
                os._exit(125)
        os.close(6)
    frame = frame[1:]
    n = int(frame[:10])
    os.environ.clear()
    for kv in frame[10:10 + n].split(b"\0"):
        if kv:
            k, _, v = kv.partition(b"=")
            os.environ[k.decode()] = v.decode()
    sys.argv = ["main.py"]
    sys.path[:0] = ["/work"]
    sys.path += [p for p in python_path.split(":") if p]
    g = {"__name__": "__main__", "__file__": "/work/main.py", "__builtins__": __builtins__}
    gc.enable()
    try:
        code = compile(frame[10 + n:], "/work/main.py", "exec")
        del frame
        exec(code, g)
        status = 0
    except SystemExit as x:
        status = x.code if isinstance(x.code, int) else (0 if x.code is None else 1)
        if not isinstance(x.code, int) and x.code is not None:
            print(x.code, file=sys.stderr)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        status = 1
    # A normal exit's work (threads joined, atexit handlers, flushed output) without tearing the interpreter
    # down object by object, which is most of a short program's exit time.
    if "threading" in sys.modules:
        sys.modules["threading"]._shutdown()
    atexit._run_exitfuncs()
    # Drop the program's globals so objects it left open (files, buffered writers) are finalised and flushed.
    try:
        g.clear()
    except BaseException:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(status & 0xFF)


def _run(fds, kernel, own_pids, control, python_path):
    """Forks the program into the run's pid namespace (its pid 2), then waits for it and reports on `done`."""
    report, done = fds[4], fds[5]
    pid = -1
    try:
        _check(kernel.setns(fds[9], 0))  # the run's pid namespace, for our next child only
        gc.freeze()
        try:
            pid = os.fork()
        finally:
            if pid != 0:
                _check(kernel.setns(own_pids, 0))
    except OSError as e:
        if pid > 0:
            os._exit(1)  # the zygote would fork into a run's namespace from now on: end the jail
        step = "fork_program"
        _report_failure(report, step, e)
    if pid == 0:
        control.detach()
        _confine(fds, kernel)
        _program(python_path, kernel, len(fds) > 12)
    if pid > 0:
        os.write(done, b"forked\n")
    for fd in fds:
        if fd != done:
            os.close(fd)
    control.send(b"f")
    if pid > 0:
        _, status, usage = os.wait4(pid, 0)
        cpu = int((usage.ru_utime + usage.ru_stime) * 1e6)
        try:
            os.write(done, f"{status} {cpu} {usage.ru_maxrss * 1024}\n".encode())
        except OSError:
            pass  # the run's init is gone: the jail is being torn down
    os.close(done)


def _recv_fds(control, most):
    """One message and the descriptors sent with it (`_socket` rather than `socket`, whose import is slow)."""
    message, ancillary, _, _ = control.recvmsg(256, _socket.CMSG_SPACE(most * 4))
    fds = []
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [int.from_bytes(data[i:i + 4], sys.byteorder, signed=True) for i in range(0, len(data) - 3, 4)]
    return message, fds


def _zygote():
    kernel = _Kernel([bytes.fromhex(h) for h in os.environ.pop("NOVA_SECCOMP_").split(",")])
    python_path = os.environ.pop("NOVA_PYTHONPATH_", "")
    own_pids = os.open("/proc/self/ns/pid", os.O_RDONLY)
    control = _socket.socket(fileno=3)
    control.send(b"r")
    while True:
        try:
            message, fds = _recv_fds(control, 13)
        except OSError:
            message = b""
        if not message:
            os._exit(0)
        try:
            _run(fds, kernel, own_pids, control, python_path)
        except BaseException:
            # A pipe of the run broke: the jail is being torn down (its init or helper is gone). End quietly,
            # as the EOF above does: a traceback would land on the stderr the server logs to.
            os._exit(1)


_zygote()
