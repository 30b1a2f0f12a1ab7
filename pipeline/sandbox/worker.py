"""Sandbox worker process: isolates itself once, then runs each snippet in a forked, rlimited child.

Started by `pipeline.sandbox.pool` as ``python -I -B worker.py SETTINGS_JSON`` with a scrubbed environment; it
speaks JSON lines over stdin/stdout. Standard library only, and it imports nothing from the project: the
project's directory is not visible inside the sandbox.

Why a fork per call: the expensive part (interpreter, numpy, sympy imports, namespace setup) happens once;
each snippet gets a copy-on-write child with fresh hard rlimits that it cannot raise, and whatever it does to
its process (exit, segfault, signal handlers, monkeypatching) dies with the child. The worker itself never
runs model-written code.

Layers, each attempted and reported in the ``ready`` message (the parent logs what is missing, once):
1. namespaces: new pid, mount and network namespaces (plus a user namespace when not root); the worker
   becomes pid 1 of its pid namespace, so ``kill(-1)`` after each call reaps every process the snippet left.
2. a minimal root: a read-only tmpfs with read-only bind mounts of the Python installation, /usr and a few
   /etc files; a fresh /proc; /dev with null/zero/urandom only; a private size-capped tmpfs at /tmp (cwd);
   executable directories (/usr/bin, .../bin) covered by empty mounts.
3. credentials: as root, a per-worker unprivileged uid (so rlimits on processes apply and nothing outside
   can be signalled or read); otherwise capabilities are dropped inside the user namespace. No-new-privs.
4. Landlock (Linux >= 5.13): writes only under /tmp, reads only of the exposed tree, no execve at all; with
   newer ABIs also no TCP bind/connect and no signals to processes outside the sandbox.
5. seccomp-BPF: no execve, no nested namespaces, mounts, ptrace, keyrings, BPF, io_uring, userfaultfd or
   modules.
6. per call, in the child: hard RLIMIT_CPU/AS/NPROC/FSIZE/NOFILE/CORE, stdin from /dev/null, input() and
   the shell/exec entry points replaced by functions that raise (the kernel layers block them anyway).
"""

from __future__ import annotations

import builtins
import ctypes
import io
import json
import os
import platform
import resource
import select
import shutil
import signal
import sys
import time
import traceback

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(platform.machine())
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
SYS_CAPSET = {"x86_64": 126, "aarch64": 91}.get(platform.machine())

# Landlock access rights, by the ABI version that introduced them.
LL_EXECUTE, LL_WRITE_FILE, LL_READ_FILE, LL_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
LL_FS_V1 = (1 << 13) - 1
LL_REFER, LL_TRUNCATE, LL_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
LL_NET_BIND_TCP, LL_NET_CONNECT_TCP = 1 << 0, 1 << 1
LL_SCOPE_ABSTRACT_UNIX, LL_SCOPE_SIGNAL = 1 << 0, 1 << 1
LL_FILE_RIGHTS = LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | LL_TRUNCATE | LL_IOCTL_DEV

ROOT_UID_BASE = 1_000_000_000  # + the worker's pid: one unprivileged uid per live worker, never a real user
ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/mime.types",
)
DEV_NODES = ("null", "zero", "full", "random", "urandom")
SANDBOX_TMP = "/tmp"
READ_LIMIT = 1 << 16

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.syscall.restype = ctypes.c_long


class SetupError(OSError):
    """An isolation step failed; the worker reports it and continues with the layers that work."""


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise SetupError(err, f"{what}: {os.strerror(err)}")


def _encode(text: str | None) -> bytes | None:
    return text.encode() if text is not None else None


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = _encode
    _check(libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def _prctl(option: int, arg: int) -> None:
    _check(
        libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)),
        f"prctl {option}",
    )


# ------------------------------------------------------------------------------------------------------------
# one-time isolation


def python_paths() -> list[str]:
    """Directories the interpreter reads modules from: the prefixes (venv and base install), not sys.path
    entries added by .pth files (an editable install would otherwise expose the project's checkout)."""
    import sysconfig

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.update(
        v for k, v in sysconfig.get_paths().items() if k in ("stdlib", "platstdlib", "purelib", "platlib")
    )
    return sorted(os.path.realpath(p) for p in paths if p and os.path.isdir(p))


def readonly_paths() -> list[str]:
    """Everything the sandbox may read: system libraries, the Python installation, a few /etc files."""
    wanted = ["/usr", "/lib", "/lib64", "/lib32", *ETC_FILES, *python_paths()]
    return [p for p in wanted if os.path.lexists(p)]


class NewRoot:
    """Builds the minimal read-only root in `base` (a tmpfs), then pivots into it."""

    def __init__(self, base: str, tmp_mb: int, uid: int, gid: int) -> None:
        self.base, self.tmp_mb, self.uid, self.gid = base, tmp_mb, uid, gid
        self.bound: list[str] = []

    def target(self, path: str) -> str:
        return self.base + path

    def expose(self, path: str, depth: int = 0) -> None:
        """Make `path` resolve inside as outside (symlinked ancestors recreated), bound read-only."""
        if depth > 8 or any(path == b or path.startswith(b.rstrip("/") + "/") for b in self.bound):
            return
        parts = [p for p in path.split("/") if p]
        current = ""
        for i, part in enumerate(parts):
            current += "/" + part
            if os.path.islink(current):
                link = os.readlink(current)
                target = self.target(current)
                if not os.path.lexists(target):
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    os.symlink(link, target)
                resolved = os.path.normpath(os.path.join(os.path.dirname(current), link))
                rest = "/".join(parts[i + 1 :])
                self.expose(resolved + ("/" + rest if rest else ""), depth + 1)
                return
        if not os.path.exists(path):
            return
        target = self.target(path)
        if os.path.isdir(path):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "a").close()
        _mount(path, target, None, MS_BIND | MS_REC)
        _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        self.bound.append(path)

    def hide(self, path: str) -> None:
        """Cover an executable directory with an empty read-only mount (no programs to start)."""
        target = self.target(path)
        if os.path.isdir(target) and not os.path.islink(target):
            _mount(
                "tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555"
            )

    def build(self) -> None:
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
        _mount("tmpfs", self.base, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
        # /tmp first: a Python installed under /tmp (a CI checkout, say) is then bound inside it, read-only.
        tmp = self.target(SANDBOX_TMP)
        os.makedirs(tmp, exist_ok=True)
        _mount(
            "tmpfs",
            tmp,
            "tmpfs",
            MS_NOSUID | MS_NODEV | MS_NOEXEC,
            f"size={self.tmp_mb}m,mode=0700,uid={self.uid},gid={self.gid}",
        )
        for path in sorted(readonly_paths(), key=len):
            self.expose(path)
        for path in (
            "/usr/bin",
            "/usr/sbin",
            "/usr/local/bin",
            "/usr/local/sbin",
            *(os.path.join(p, "bin") for p in python_paths()),
        ):
            self.hide(os.path.realpath(path))
        dev = self.target("/dev")
        os.makedirs(dev, exist_ok=True)
        for name in DEV_NODES:
            if os.path.exists("/dev/" + name):
                open(os.path.join(dev, name), "a").close()
                _mount("/dev/" + name, os.path.join(dev, name), None, MS_BIND)
        for name, link in (
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ):
            os.symlink(link, os.path.join(dev, name))
        os.makedirs(self.target("/proc"), exist_ok=True)
        try:
            _mount("proc", self.target("/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        except SetupError:
            pass  # e.g. a container whose /proc has covered paths: the sandbox simply has no /proc
        os.chdir(self.base)
        os.mkdir(".old")
        _check(libc.syscall(SYS_PIVOT_ROOT, b".", b".old"), "pivot_root")
        os.chdir("/")
        _check(libc.umount2(b"/.old", MNT_DETACH), "umount old root")
        os.rmdir("/.old")
        _mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def drop_capabilities() -> None:
    """Inside a user namespace we are uid 0 there: clear every capability and the bounding set."""
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0) != 0:
            break
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(libc.syscall(SYS_CAPSET, header, data), "capset")


def isolate(settings: dict, report: dict) -> None:
    """Namespaces, new root and credentials. Forks once: the outer process only waits for the inner."""
    is_root = os.geteuid() == 0
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWPID | CLONE_NEWNS | (0 if settings["network"] else CLONE_NEWNET)
    if not is_root:
        flags |= CLONE_NEWUSER
    if not settings["namespaces"]:
        report["missing"].append("namespaces (turned off in the config)")
        return
    if SYS_PIVOT_ROOT is None or libc.unshare(flags) != 0:
        report["missing"].append(f"namespaces (unshare: {os.strerror(ctypes.get_errno())})")
        return
    if not is_root:
        for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
            with open(f"/proc/self/{name}", "w") as fh:
                fh.write(text)
    outer_pid = os.getpid()
    inner = os.fork()
    if inner:
        # Outer: holds no pipe ends (so the parent sees EOF when the inner dies) and mirrors its exit.
        for fd in (settings["_proto_in"], settings["_proto_out"]):
            os.close(fd)
        _, status = os.waitpid(inner, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    report["mechanisms"].update(
        pid_namespace=True,
        mount_namespace=True,
        network_namespace=not settings["network"],
        user_namespace=not is_root,
    )
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    sandbox_uid = ROOT_UID_BASE + outer_pid if is_root else 0
    try:
        NewRoot(settings["mountpoint"], settings["tmp_mb"], sandbox_uid, sandbox_uid).build()
        report["mechanisms"]["new_root"] = True
    except (SetupError, OSError) as exc:
        report["missing"].append(f"private root ({exc})")
    if is_root and report["mechanisms"].get(
        "new_root"
    ):  # else main() decides (the interpreter may be unreachable)
        os.setgroups([])
        os.setresgid(sandbox_uid, sandbox_uid, sandbox_uid)
        os.setresuid(sandbox_uid, sandbox_uid, sandbox_uid)
        report["mechanisms"]["uid"] = sandbox_uid
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # a uid change clears it
    elif not is_root:
        try:
            drop_capabilities()
            report["mechanisms"]["capabilities_dropped"] = True
        except SetupError as exc:
            report["missing"].append(str(exc))


def world_traversable(path: str) -> bool:
    """Whether a uid with no special rights can reach `path` (every ancestor directory is o+x)."""
    current = os.path.realpath(path)
    while True:
        if not os.stat(current).st_mode & 0o001:
            return False
        if current == "/":
            return True
        current = os.path.dirname(current)


def drop_to_unprivileged_uid(workdir: str, report: dict) -> None:
    """Fallback without namespaces, as root: become an unused uid if the interpreter stays reachable."""
    if not all(world_traversable(p) for p in python_paths()):
        return  # e.g. Python installed under /root (0700): an unprivileged uid could not import the stdlib
    uid = ROOT_UID_BASE + os.getpid()
    os.chown(workdir, uid, uid)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    report["mechanisms"]["uid"] = uid


def landlock(settings: dict, report: dict, workdir: str, in_new_root: bool) -> None:
    """Restrict filesystem access (and, on newer kernels, TCP and signals) for this process and its children."""
    abi = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        report["missing"].append(f"landlock ({os.strerror(ctypes.get_errno())})")
        return
    fs = (
        LL_FS_V1
        | (LL_REFER if abi >= 2 else 0)
        | (LL_TRUNCATE if abi >= 3 else 0)
        | (LL_IOCTL_DEV if abi >= 5 else 0)
    )
    net = (LL_NET_BIND_TCP | LL_NET_CONNECT_TCP) if abi >= 4 and not settings["network"] else 0
    scoped = (LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL) if abi >= 6 else 0
    attr = (ctypes.c_uint64 * 3)(fs, net, scoped)
    size = 8 * (3 if abi >= 6 else 2 if abi >= 4 else 1)
    ruleset = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, attr, ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        report["missing"].append(f"landlock ruleset ({os.strerror(ctypes.get_errno())})")
        return

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    read = LL_READ_FILE | LL_READ_DIR
    write_tree = fs & ~LL_EXECUTE
    rules = [(p, read) for p in (["/"] if in_new_root else readonly_paths())]
    rules += [(workdir, write_tree)] + [
        ("/dev/" + n, LL_READ_FILE | LL_WRITE_FILE | (fs & LL_IOCTL_DEV)) for n in DEV_NODES
    ]
    for path, access in rules:
        if not os.path.exists(path):
            continue
        if not os.path.isdir(path):
            access &= LL_FILE_RIGHTS
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        try:
            rule = PathBeneath(access & fs, fd)
            _check(
                libc.syscall(SYS_LANDLOCK_ADD_RULE, ruleset, 1, ctypes.byref(rule), 0),
                f"landlock rule {path}",
            )
        finally:
            os.close(fd)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _check(libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0), "landlock_restrict_self")
    os.close(ruleset)
    report["mechanisms"].update(landlock_abi=abi, landlock_net=bool(net), landlock_signal_scope=bool(scoped))


# Syscalls no math snippet needs: starting programs, and what widens the kernel's attack surface (nested
# namespaces, mounts, ptrace, keyrings, BPF, io_uring, userfaultfd, modules). clone without namespace flags
# (fork, threads) stays allowed.
# Numbered alike on every architecture (added to the kernel after the tables were unified).
SECCOMP_DENY_UNIFIED = {
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "mount_setattr": 442,
}
SECCOMP_DENY = {
    "x86_64": {
        "execve": 59,
        "execveat": 322,
        "unshare": 272,
        "setns": 308,
        "mount": 165,
        "umount2": 166,
        "pivot_root": 155,
        "ptrace": 101,
        "keyctl": 250,
        "add_key": 248,
        "request_key": 249,
        "bpf": 321,
        "perf_event_open": 298,
        "userfaultfd": 323,
        "kexec_load": 246,
        "init_module": 175,
        "finit_module": 313,
        "delete_module": 176,
        "open_by_handle_at": 304,
        "process_vm_readv": 310,
        "process_vm_writev": 311,
    },
    "aarch64": {
        "execve": 221,
        "execveat": 281,
        "unshare": 97,
        "setns": 268,
        "mount": 40,
        "umount2": 39,
        "pivot_root": 41,
        "ptrace": 117,
        "keyctl": 219,
        "add_key": 217,
        "request_key": 218,
        "bpf": 280,
        "perf_event_open": 241,
        "userfaultfd": 282,
        "kexec_load": 104,
        "init_module": 105,
        "finit_module": 273,
        "delete_module": 106,
        "open_by_handle_at": 265,
        "process_vm_readv": 270,
        "process_vm_writev": 271,
    },
}
SECCOMP_CLONE = {"x86_64": (56, 435), "aarch64": (220, 435)}  # clone, clone3
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET


def seccomp_filter(report: dict) -> None:
    """Install a seccomp-BPF filter: EPERM for SECCOMP_DENY, for clone with namespace flags, ENOSYS for clone3
    (its flags sit in memory BPF cannot read; libc falls back to clone)."""
    machine = platform.machine()
    if machine not in SECCOMP_DENY:
        report["missing"].append(f"seccomp (no syscall table for {machine})")
        return
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, deny, nosys = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38
    denied = sorted({**SECCOMP_DENY[machine], **SECCOMP_DENY_UNIFIED}.values())
    clone, clone3 = SECCOMP_CLONE[machine]
    prog: list[tuple[int, int, int, int]] = [
        (ld, 0, 0, 4),
        (jeq, 1, 0, AUDIT_ARCH[machine]),
        (ret, 0, 0, deny),
        (ld, 0, 0, 0),
    ]
    if machine == "x86_64":
        prog += [(jge, 0, 1, 0x40000000), (ret, 0, 0, deny)]  # the x32 ABI: another syscall table, refused
    for number in denied:
        prog += [(jeq, 0, 1, number), (ret, 0, 0, deny)]
    prog += [
        (jeq, 0, 1, clone3),
        (ret, 0, 0, nosys),
        (jeq, 0, 3, clone),
        (ld, 0, 0, 16),
        (jset, 0, 1, NAMESPACE_FLAGS),
        (ret, 0, 0, deny),
        (ret, 0, 0, allow),
    ]

    class SockFilter(ctypes.Structure):
        _fields_ = [
            ("code", ctypes.c_uint16),
            ("jt", ctypes.c_uint8),
            ("jf", ctypes.c_uint8),
            ("k", ctypes.c_uint32),
        ]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

    filters = (SockFilter * len(prog))(*[SockFilter(*op) for op in prog])
    fprog = SockFprog(len(prog), filters)
    PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
    _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp filter")
    report["mechanisms"]["seccomp_denied_syscalls"] = len(denied) + 2


# ------------------------------------------------------------------------------------------------------------
# refusals at the Python level (clear messages for the model; the kernel layers are what enforce)


def _refuse(what: str):
    def refused(*_args, **_kwargs):
        raise PermissionError(f"{what} is not allowed in the sandbox")

    return refused


def install_refusals() -> None:
    import subprocess

    builtins.input = _refuse("input()")
    for name in (
        "system",
        "popen",
        "execv",
        "execve",
        "execl",
        "execle",
        "execlp",
        "execlpe",
        "execvp",
        "execvpe",
        "spawnv",
        "spawnve",
        "spawnl",
        "spawnle",
        "spawnlp",
        "spawnlpe",
        "spawnvp",
        "spawnvpe",
        "posix_spawn",
        "posix_spawnp",
        "forkpty",
    ):
        if hasattr(os, name):
            setattr(os, name, _refuse(f"os.{name}"))
    subprocess.Popen._execute_child = _refuse("starting a program")  # type: ignore[method-assign]


# ------------------------------------------------------------------------------------------------------------
# one call


class Capture:
    """The first and last `cap` bytes of a stream, and how many bytes it had."""

    def __init__(self, cap: int) -> None:
        self.cap, self.head, self.tail, self.total = cap, bytearray(), bytearray(), 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.cap - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > self.cap:
                del self.tail[: len(self.tail) - self.cap]

    def text(self, limit: int) -> str:
        if self.total <= len(self.head) + len(self.tail):
            return middle_truncate((bytes(self.head) + bytes(self.tail)).decode("utf-8", "replace"), limit)
        head = bytes(self.head).decode("utf-8", "replace")
        tail = bytes(self.tail).decode("utf-8", "replace")
        omitted = self.total - len(self.head) - len(self.tail)
        return middle_truncate(head + tail, limit, extra_omitted=omitted)


def middle_truncate(text: str, limit: int, extra_omitted: int = 0) -> str:
    """Keep the start and the end (where answers and errors are), cut the middle."""
    text = text.rstrip()
    if len(text) <= limit and not extra_omitted:
        return text
    omitted = max(0, len(text) - limit) + extra_omitted
    marker = f"\n...[{omitted} characters omitted]...\n"
    keep = max(0, limit - len(marker))
    head = (keep + 1) // 2
    tail = keep - head
    return text[:head] + marker + (text[len(text) - tail :] if tail else "")


def last_traceback_line(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    return (lines[-1] if lines else type(exc).__name__).strip()


def child_main(
    request: dict, out_w: int, res_w: int, devnull: int, workdir: str, close_fds: list[int]
) -> None:
    """Runs in the forked child: limits, stdio, then the snippet (after a silent replay of earlier blocks)."""
    os.setpgid(0, 0)
    os.dup2(devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(devnull, 2)
    for fd in close_fds + [out_w, devnull]:
        os.close(fd)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL if sig != signal.SIGXFSZ else signal.SIG_IGN)
    cpu = max(1, int(request["cpu_s"] + 0.999))
    limits = {
        resource.RLIMIT_CPU: (cpu, cpu + 1),
        resource.RLIMIT_AS: (request["memory_bytes"],) * 2,
        resource.RLIMIT_FSIZE: (request["file_bytes"],) * 2,
        resource.RLIMIT_NOFILE: (256, 256),
        resource.RLIMIT_CORE: (0, 0),
    }
    if not request["_real_root"]:  # the kernel exempts uid 0 of the initial user namespace from it
        limits[resource.RLIMIT_NPROC] = (request["max_processes"],) * 2
    for kind, value in limits.items():
        resource.setrlimit(kind, value)
    os.chdir(workdir)
    stdout = io.TextIOWrapper(
        io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="replace", write_through=True
    )
    sys.stdout = sys.__stdout__ = stdout
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="replace", write_through=True
    )
    result: dict = {"status": "ok"}
    me = os.getpid()  # processes the snippet forks run on from here too; only this one reports
    if request.get("replay"):
        sys.stdout = io.StringIO()
        saved = os.dup(1)
        os.dup2(2, 1)  # replayed blocks' output goes to /dev/null
        for block in request["replay"]:
            try:
                exec(compile(block, "<code>", "exec"), request["_globals"])
            except BaseException:  # noqa: B036 — a replayed block that failed the first time fails again
                pass
        os.dup2(saved, 1)
        os.close(saved)
        sys.stdout = sys.__stdout__ = stdout
    try:
        exec(compile(request["code"], "<code>", "exec"), request["_globals"])
    except SystemExit as exc:
        if exc.code not in (None, 0):
            result = {"status": "error", "output": f"SystemExit: {exc.code}"}
    except BaseException as exc:  # noqa: B036 — anything the snippet raises is its result
        result = {"status": "error", "output": last_traceback_line(exc)}
    try:
        sys.stdout.flush()
    except BaseException:  # noqa: B036
        pass
    if os.getpid() == me:
        os.write(res_w, json.dumps(result).encode()[:READ_LIMIT])


def kill_leftovers(child: int) -> bool:
    """Kill every process the snippet left (all of the pid namespace, or the child's group); True when clean."""
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        try:
            if os.getpid() == 1:
                os.kill(-1, signal.SIGKILL)
            else:
                os.killpg(child, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            while True:
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
        except ChildProcessError:
            return True
        time.sleep(0.002)
    return False


def wipe(workdir: str, keep: frozenset[str] = frozenset()) -> None:
    """Empty the working directory after a call (`keep`: read-only Python directories bound inside it)."""
    for entry in os.scandir(workdir):
        if entry.name in keep:
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        except OSError:
            pass


def _place(cpus: list[int] | None) -> None:
    """Move the worker (and so the children it forks) to the CPUs the pool chose (pipeline/sandbox/cpus.py)."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return
    try:
        if os.sched_getaffinity(0) != set(cpus):
            os.sched_setaffinity(0, cpus)
    except OSError:  # e.g. a CPU taken offline or outside our cgroup: run where we are
        pass


def run_one(request: dict, proto_fds: list[int], devnull: int, workdir: str) -> dict:
    limit = int(request["max_output_chars"])
    out_r, out_w = os.pipe()
    res_r, res_w = os.pipe()
    if not os.path.isdir(workdir):
        os.makedirs(workdir, exist_ok=True)
    _place(request.get("cpus"))
    started = time.monotonic()
    child = os.fork()
    if child == 0:
        code = 0
        try:
            os.close(out_r)
            os.close(res_r)
            child_main(request, out_w, res_w, devnull, workdir, proto_fds)
        except BaseException:  # noqa: B036 — never return into the worker's loop from a child
            code = 70
        finally:
            os._exit(code)
    os.close(out_w)
    os.close(res_w)
    pidfd = os.pidfd_open(child) if hasattr(os, "pidfd_open") else None
    capture, result_bytes = Capture(4 * limit + 64), bytearray()
    deadline = started + float(request["timeout_s"])
    open_fds = [out_r, res_r]
    status_code: int | None = None
    cpu_used = 0.0
    timed_out = False
    while status_code is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        watch = open_fds + ([pidfd] if pidfd is not None else [])
        ready, _, _ = select.select(watch, [], [], min(remaining, 0.05 if pidfd is None else remaining))
        for fd in ready:
            if fd == pidfd:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                open_fds.remove(fd)
            elif fd == out_r:
                capture.add(chunk)
            elif len(result_bytes) < READ_LIMIT:
                result_bytes += chunk
        pid, status, usage = os.wait4(child, os.WNOHANG)
        if pid:
            status_code, cpu_used = status, usage.ru_utime + usage.ru_stime
    seconds = time.monotonic() - started
    if status_code is not None:  # the child is gone; take what it wrote, without waiting on descendants
        for fd in open_fds:
            os.set_blocking(fd, False)
            try:
                while (chunk := os.read(fd, 1 << 16)) and capture.total < 1 << 26:
                    (capture.add if fd == out_r else result_bytes.extend)(chunk)
            except BlockingIOError:
                pass
    healthy = kill_leftovers(child)
    for fd in (out_r, res_r) + ((pidfd,) if pidfd is not None else ()):
        os.close(fd)
    wipe(workdir, request["_keep"])
    if timed_out:
        return {
            "status": "timeout",
            "output": f"TimeoutError: execution took longer than {request['timeout_s']:g} s",
            "seconds": seconds,
            "healthy": healthy,
        }
    if os.WIFSIGNALED(status_code):
        sig = os.WTERMSIG(status_code)
        if sig in (signal.SIGXCPU, signal.SIGKILL) and cpu_used >= int(request["cpu_s"] + 0.999) - 0.05:
            return {
                "status": "timeout",
                "output": f"TimeoutError: CPU time limit of {request['cpu_s']:g} s exceeded",
                "seconds": seconds,
                "healthy": healthy,
            }
        return {
            "status": "killed",
            "output": f"Killed: {signal.Signals(sig).name}",
            "seconds": seconds,
            "healthy": healthy,
        }
    try:
        result = json.loads(bytes(result_bytes)) if result_bytes else None
    except ValueError:
        result = None
    if not isinstance(result, dict) or result.get("status") not in ("ok", "error"):
        code = os.WEXITSTATUS(status_code)
        result = {"status": "ok"} if code == 0 else {"status": "error", "output": f"SystemExit: {code}"}
    if result["status"] == "ok":
        output = capture.text(limit)
    else:
        output = middle_truncate(str(result.get("output", "")), limit)
    return {"status": result["status"], "output": output, "seconds": seconds, "healthy": healthy}


# ------------------------------------------------------------------------------------------------------------


def main() -> None:
    settings = json.loads(sys.argv[1])
    # No handler for SIGINT: as pid 1 of its namespace the worker then cannot be signalled from inside at all.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    proto_in, proto_out = os.dup(0), os.dup(1)
    settings["_proto_in"], settings["_proto_out"] = proto_in, proto_out
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    report: dict = {"mechanisms": {}, "missing": []}
    isolate(settings, report)
    in_new_root = bool(report["mechanisms"].get("new_root"))
    workdir = SANDBOX_TMP if in_new_root else settings["workdir"]
    if os.geteuid() == 0 and not in_new_root:
        drop_to_unprivileged_uid(workdir, report)
    os.environ.update(HOME=workdir, TMPDIR=workdir)
    os.chdir(workdir)
    if not in_new_root:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for name in settings["preload"]:
        try:
            __import__(name)
        except Exception as exc:  # a missing optional module is reported, not fatal
            report["missing"].append(f"preload {name} ({type(exc).__name__})")
    install_refusals()
    try:
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        report["mechanisms"]["no_new_privs"] = True
        landlock(settings, report, workdir, in_new_root)
        seccomp_filter(report)
    except SetupError as exc:
        report["missing"].append(str(exc))
    tmp_prefix = workdir.rstrip("/") + "/"
    keep = frozenset(p[len(tmp_prefix) :].split("/")[0] for p in python_paths() if p.startswith(tmp_prefix))
    real_root = os.geteuid() == 0 and not report["mechanisms"].get("user_namespace")
    if real_root:
        report["missing"].append(
            "unprivileged uid (still root: RLIMIT_NPROC does not apply, files are "
            "protected by Landlock alone)"
        )
    template = {"__name__": "__main__", "__builtins__": builtins}
    reader = os.fdopen(proto_in, "rb")

    def reply(message: dict) -> None:
        data = (json.dumps(message) + "\n").encode()
        view = memoryview(data)
        while view:
            view = view[os.write(proto_out, view) :]

    reply({"ready": True, **report})
    for line in reader:
        request = json.loads(line)
        request["_globals"] = dict(template)
        request["_real_root"] = real_root
        request["_keep"] = keep
        reply(run_one(request, [proto_in, proto_out], devnull, workdir))


if __name__ == "__main__":
    main()
