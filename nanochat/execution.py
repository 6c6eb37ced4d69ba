"""
A sandbox for untrusted Python (a model's HumanEval completion plus the problem's tests), built from the
operating system's isolation rather than Python-level patches. Used by tasks/humaneval.py:

    from nanochat.execution import execute_python
    result = execute_python("print(sum(range(10)))", timeout=5.0)
    result.success, result.stdout, result.layers     # True, '45\\n', ('session', 'wall-clock', ..., 'mount')

    python -m nanochat.execution                     # which layers this machine enforces, and why not the others

Every run: a new session (the process group is killed at the end), a wall-clock timeout, limits on CPU seconds,
address space, file size and open files (rlimits), at most MAX_OUTPUT_BYTES per stream (read incrementally, the
run is killed beyond it), an environment of our own (nothing of the parent's), stdin from /dev/null, and an empty
temporary working directory removed afterwards. Where the machine allows (probed once per process by running a
trivial program under each layer, see available_layers()):
  uid    as root: a fresh unprivileged uid per run, so RLIMIT_NPROC counts (root is exempt from it), the program
         owns nothing outside its work dir, and its signals reach only its own processes
  nproc  at most MAX_PROCESSES processes + threads (needs uid, or a caller that is not root)
  net    a new network namespace: a loopback that is down, no route anywhere
  pid    a new PID namespace: the program is PID 1; when it ends, every process it started is killed
  mount  a new mount namespace: every mount read-only and nosuid, empty /tmp, /var/tmp, /dev/shm and home
         (the interpreter's own directory bound back in), the work dir a WORK_DIR_BYTES tmpfs
Namespaces come from `unshare` (util-linux, on every Debian), which execs this file as a small launcher: it sets
up the mounts and limits as root, forks the program as PID 1, drops it to the run's uid and waits for it. A caller
that is not root gets the namespaces through a user namespace where the kernel allows one. The result's `layers`
says exactly what held the run; a layer that fails to set up fails the run (never less isolation than reported).

It fails closed: execute_python raises SandboxRefused unless the layers of required_layers() hold (as root: uid,
nproc and mount; as another user: nproc and mount, since the program runs as that user). NANOCHAT_ALLOW_WEAK_SANDBOX=1
(chat_eval --allow-weak-sandbox) runs without uid or mount, and the result says so; never without nproc, because a
fork bomb takes down the machine, not just the evaluation.
Tests: pytest tests/test_execution.py -q
"""

import ctypes
import functools
import json
import math
import os
import re
import resource
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

TIMEOUT_S = 10.0                # wall clock per run
MEMORY_BYTES = 1 << 30          # address space per process (RLIMIT_AS)
MAX_PROCESSES = 8               # processes + threads of the sandbox uid; with MEMORY_BYTES, at most 8 GiB in all
MAX_OUTPUT_BYTES = 1 << 20      # kept per stream (stdout, stderr); one byte more and the run is killed
WORK_DIR_BYTES = 64 << 20       # size of the work dir's tmpfs (mount layer) and of the largest file (RLIMIT_FSIZE)
MAX_OPEN_FILES = 64             # RLIMIT_NOFILE
SANDBOX_UID_BASE = 2_000_000_000  # run uids are drawn from [BASE, BASE + SANDBOX_UIDS): no passwd entry, no files
SANDBOX_UIDS = 1_000_000
PROBE_TIMEOUT_S = 10.0
KILL_GRACE_S = 2.0              # after the kill, how long to wait for the run's processes to close their pipes
POLL_S = 0.05                   # how often the reader checks the clock and whether the program has ended
PROGRAM = "program.py"
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1",
       "OPENBLAS_NUM_THREADS": "1"}  # plus HOME and TMPDIR = the work dir
HIDDEN_DIRS = ("/tmp", "/var/tmp", "/dev/shm")  # + the caller's home: each covered by an empty read-only tmpfs
ALLOW_WEAK_ENV = "NANOCHAT_ALLOW_WEAK_SANDBOX"   # "1": run without the uid or mount layer (never without nproc)

BASE_LAYERS = {
    "session": "own session and process group, killed at the end",
    "wall-clock": "killed at the timeout",
    "cpu": "RLIMIT_CPU: timeout + 1 CPU seconds",
    "memory": f"RLIMIT_AS: {MEMORY_BYTES >> 20} MiB of address space per process",
    "files": f"RLIMIT_FSIZE {WORK_DIR_BYTES >> 20} MiB per file, RLIMIT_NOFILE {MAX_OPEN_FILES}, no core dumps",
    "output-cap": f"{MAX_OUTPUT_BYTES >> 10} KiB kept per stream, killed beyond it",
    "clean-env": "only PATH, LANG, HOME, TMPDIR and thread counts; nothing of the parent's environment",
    "no-stdin": "stdin is /dev/null",
    "temp-dir": "an empty working directory, removed afterwards",
}
OPTIONAL_LAYERS = {
    "uid": "a fresh unprivileged uid per run (needs a root caller)",
    "nproc": f"RLIMIT_NPROC: at most {MAX_PROCESSES} processes and threads",
    "net": "new network namespace: no network at all",
    "pid": "new PID namespace: every process the program starts dies with it",
    "mount": "new mount namespace: all read-only but a private tmpfs work dir; /tmp, /var/tmp, /dev/shm, home empty",
}
NEVER_WAIVED = ("nproc",)   # the opt-in may run without uid or mount, never without a process cap
REMEDIES = {
    "uid": "as root it needs the interpreter where other users can read it (a virtual environment outside /root, "
           "e.g. python3 -m venv /opt/nanochat-venv) or the mount layer",
    "nproc": "root is exempt from RLIMIT_NPROC: it needs the uid layer, or run as a user other than root",
    "mount": "it needs `unshare` (util-linux) and permission to make namespaces (in a container: "
             "--security-opt seccomp=unconfined or --privileged; as a user: unprivileged user namespaces allowed)",
}


class SandboxRefused(RuntimeError):
    """This machine lacks isolation layers that untrusted code needs here (see required_layers)."""


@dataclass(frozen=True)
class SandboxCheck:
    """What untrusted code runs under on this machine: the optional layers that hold, the required ones missing
    (with why) and whether it runs anyway because the weak sandbox was allowed."""
    layers: tuple[str, ...]
    missing: dict
    weak: bool

    def line(self) -> str:
        held = ", ".join(self.layers) or "none"
        if not self.weak:
            return f"sandbox: isolation layers {held} (plus the base limits)"
        gone = "; ".join(f"{name} ({why})" for name, why in self.missing.items())
        return f"sandbox: WEAK ({ALLOW_WEAK_ENV}=1): layers {held}; without {gone}"

    def note(self) -> str:
        """The mark every HumanEval figure carries when the sandbox was weak ("" when it was not)."""
        return f"weak sandbox: without {', '.join(self.missing)}" if self.weak else ""


@dataclass
class ExecutionResult:
    success: bool            # exit status 0, within the time and output limits
    stdout: str
    stderr: str
    timed_out: bool
    memory_exceeded: bool    # ended by a MemoryError (the address-space limit)
    output_exceeded: bool    # printed more than MAX_OUTPUT_BYTES on a stream and was killed
    returncode: int | None   # negative: killed by that signal
    layers: tuple[str, ...]  # the isolation layers enforced on this run (BASE_LAYERS + those of OPTIONAL_LAYERS)
    weak: bool = False       # run without a required layer, because the weak sandbox was allowed


def execute_python(code: str, timeout: float = TIMEOUT_S, memory_bytes: int = MEMORY_BYTES,
                   cpu_seconds: int | None = None, skip_layers: tuple[str, ...] = (),
                   allow_weak: bool | None = None) -> ExecutionResult:
    """Run `code` as a Python program in the sandbox, or raise SandboxRefused (check_sandbox) if this machine
    cannot isolate it. allow_weak None reads NANOCHAT_ALLOW_WEAK_SANDBOX. skip_layers leaves optional layers out
    on purpose (for tests' controls and debugging, never for untrusted code); the result's layers name the ones
    that held."""
    unknown = set(skip_layers) - set(OPTIONAL_LAYERS)
    if unknown:
        raise ValueError(f"unknown layers {sorted(unknown)}; optional layers are {list(OPTIONAL_LAYERS)}")
    check = check_sandbox(allow_weak)
    layers = _usable_layers(skip_layers)
    result = _run(code, layers, timeout, memory_bytes, cpu_seconds)
    result.weak = check.weak
    return result


def required_layers() -> tuple[str, ...]:
    """The optional layers untrusted code needs before it runs. As root: its own uid (it then owns nothing, and
    RLIMIT_NPROC counts), the process cap and the read-only mounts. As another user the program runs as that
    user, so: the process cap, and the mounts that keep it from the user's files."""
    return ("uid", "nproc", "mount") if os.geteuid() == 0 else ("nproc", "mount")


def weak_sandbox_allowed() -> bool:
    return os.environ.get(ALLOW_WEAK_ENV, "").strip().lower() in ("1", "true", "yes")


def check_sandbox(allow_weak: bool | None = None) -> SandboxCheck:
    """The layers untrusted code gets on this machine; raises SandboxRefused, naming each missing required layer,
    why it is off and what to do, unless they all hold (or the weak sandbox is allowed and nproc holds)."""
    allow_weak = weak_sandbox_allowed() if allow_weak is None else allow_weak
    usable = _usable_layers()
    why = available_layers()
    missing = {name: why[name] or _lost_because(name) for name in required_layers() if name not in usable}
    if missing and (not allow_weak or any(name in missing for name in NEVER_WAIVED)):
        lines = [f"the sandbox will not run untrusted code on this machine: "
                 f"{'as root ' if os.geteuid() == 0 else ''}it needs the layers {', '.join(required_layers())}, "
                 f"and {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} off:"]
        lines += [f"  {name}: {reason}. To fix: {REMEDIES[name]}." for name, reason in missing.items()]
        if not any(name in missing for name in NEVER_WAIVED):
            lines.append(f"Or, knowing that the program may then write files or reach the network as this user, "
                         f"set {ALLOW_WEAK_ENV}=1 (chat_eval --allow-weak-sandbox) to run with the layers that hold.")
        lines.append("`python -m nanochat.execution` lists every layer of this machine.")
        raise SandboxRefused("\n".join(lines))
    return SandboxCheck(tuple(usable), missing, bool(missing))


def _usable_layers(skip_layers: tuple[str, ...] = ()) -> list[str]:
    """The optional layers a run gets: those this machine enforces, less skip_layers and what they take with them
    (uid cannot start an interpreter in a closed dir without the mount layer; root ignores RLIMIT_NPROC)."""
    layers = [name for name, why in available_layers().items() if not why and name not in skip_layers]
    if "uid" in layers and "mount" not in layers and _closed_dirs():
        layers.remove("uid")
    if "uid" not in layers and os.geteuid() == 0 and "nproc" in layers:
        layers.remove("nproc")
    return layers


def _lost_because(name: str) -> str:
    """Why uid or nproc is off when the layer it rests on is (mount for a closed interpreter dir, uid for root)."""
    if name == "uid":
        return f"the interpreter is under {_closed_dirs()[0]}, closed to other users, and the mount layer is off"
    return "root is exempt from RLIMIT_NPROC and uid is off"


@functools.lru_cache(maxsize=None)
def available_layers() -> dict[str, str]:
    """Optional layer -> "" if this machine enforces it, else why not. Each is probed with a real run."""
    if sys.platform != "linux":
        return {name: "needs Linux" for name in OPTIONAL_LAYERS}
    why = {}
    for name in ("net", "pid", "mount"):
        why[name] = machine_lacks(name) or _probe([name])
    closed = _closed_dirs()  # e.g. /root (0700) holding pyenv's python: the mount layer binds it back
    if os.geteuid() != 0:
        why["uid"] = "caller is not root: the program runs as the caller"
    elif closed and why["mount"]:
        why["uid"] = _lost_because("uid")
    else:
        why["uid"] = _probe(["uid", "mount"] if closed else ["uid"])
    why["nproc"] = "" if os.geteuid() != 0 or not why["uid"] else _lost_because("nproc")
    return {name: why[name] for name in OPTIONAL_LAYERS}


@functools.lru_cache(maxsize=None)
def machine_lacks(name: str) -> str:
    """Why this machine itself cannot give an optional layer ("" if it can): not Linux, no unshare, namespaces
    refused by the kernel or the container, not root. A layer that is off for any other reason is lost to this
    module's own setup: a bug to fix, never a layer to do without."""
    if sys.platform != "linux":
        return "needs Linux"
    if name in ("net", "pid", "mount"):
        if not shutil.which("unshare"):
            return "no unshare binary (util-linux)"
        r = subprocess.run(_unshare_argv([name]) + ["true"], capture_output=True, text=True,
                           timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL)
        detail = (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[-1][:200]
        return "" if r.returncode == 0 else f"this machine refuses {name} namespaces ({detail})"
    if os.geteuid() != 0:
        return "caller is not root: the program runs as the caller" if name == "uid" else ""
    if name == "uid" and _closed_dirs() and machine_lacks("mount"):
        return f"the interpreter is under {_closed_dirs()[0]}, closed to other users, and {machine_lacks('mount')}"
    return machine_lacks("uid") if name == "nproc" else ""


def describe_layers() -> str:
    """This machine's sandbox, one line per layer (for README and evaluation logs)."""
    lines = [f"  {name:<10} on   {what}" for name, what in BASE_LAYERS.items()]
    for name, why in available_layers().items():
        state = f"off  {OPTIONAL_LAYERS[name]} -- {why}" if why else f"on   {OPTIONAL_LAYERS[name]}"
        lines.append(f"  {name:<10} {state}")
    return "sandbox layers:\n" + "\n".join(lines)


def _probe(layers: list[str]) -> str:
    r = _run("print('ok')", layers, PROBE_TIMEOUT_S, MEMORY_BYTES, None)
    if r.success and r.stdout == "ok\n":
        return ""
    return (r.stderr.strip().splitlines() or [f"probe exited with {r.returncode}"])[-1][:200]


# -----------------------------------------------------------------------------
# The parent side: start, read, kill, clean up

def _run(code: str, layers: list[str], timeout: float, memory_bytes: int,
         cpu_seconds: int | None) -> ExecutionResult:
    uid = SANDBOX_UID_BASE + secrets.randbelow(SANDBOX_UIDS) if "uid" in layers else None
    with tempfile.TemporaryDirectory(prefix="nanochat-sandbox-") as work:
        with open(os.path.join(work, PROGRAM), "w") as f:
            f.write(code)
        if uid is not None:
            os.chown(work, uid, uid)
            os.chmod(work, 0o700)
        limits = {"AS": memory_bytes, "CPU": cpu_seconds or math.ceil(timeout) + 1, "FSIZE": WORK_DIR_BYTES,
                  "NOFILE": MAX_OPEN_FILES, "CORE": 0} | ({"NPROC": MAX_PROCESSES} if "nproc" in layers else {})
        config = {"python": _interpreter(), "work": work, "uid": uid, "limits": limits, "pid": "pid" in layers,
                  "mount": _mount_plan() if "mount" in layers else None,
                  "host_mount_ns": os.readlink("/proc/self/ns/mnt")}
        argv = _unshare_argv(layers) + [sys.executable, "-I", "-S", os.path.abspath(__file__), "--launch",
                                         json.dumps(config)]
        proc = subprocess.Popen(argv, cwd=work, env={**ENV, "HOME": work, "TMPDIR": work}, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            stdout, stderr, timed_out, output_exceeded = _read_until_done(proc, uid, time.monotonic() + timeout)
        except BaseException:  # e.g. Ctrl-C while reading
            _kill(proc, uid)
            raise
        finally:
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
    out, err = stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")
    ok = proc.returncode == 0 and not timed_out and not output_exceeded
    memory_exceeded = not ok and re.search(r"^MemoryError\b", err, re.M) is not None
    return ExecutionResult(ok, out, err, timed_out, memory_exceeded, output_exceeded, proc.returncode,
                           tuple(BASE_LAYERS) + tuple(name for name in OPTIONAL_LAYERS if name in layers))


def _read_until_done(proc: subprocess.Popen, uid: int | None, deadline: float):
    """Read both pipes as data comes, keeping at most MAX_OUTPUT_BYTES of each. Once the program ends, runs out
    of time or prints too much, everything of the run is killed; reading goes on until the pipes close (no
    process of the run is left) or KILL_GRACE_S has passed."""
    buffers = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    timed_out = output_exceeded = False
    killed_at = None
    with selectors.DefaultSelector() as selector:
        for pipe in buffers:
            selector.register(pipe, selectors.EVENT_READ)
        while selector.get_map():
            now = time.monotonic()
            if killed_at is None:
                ended = _exited(proc)
                if ended or output_exceeded or now >= deadline:
                    timed_out = not ended and not output_exceeded
                    _kill(proc, uid)
                    killed_at = now
            elif now > killed_at + KILL_GRACE_S:
                break
            for key, _ in selector.select(POLL_S):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                buffer = buffers[key.fileobj]
                room = MAX_OUTPUT_BYTES - len(buffer)
                buffer += chunk[:room]
                output_exceeded |= len(chunk) > room
    return bytes(buffers[proc.stdout]), bytes(buffers[proc.stderr]), timed_out, output_exceeded


def _exited(proc: subprocess.Popen) -> bool:
    """Has the child ended? Unlike proc.poll() this leaves the zombie, so its pid (the group id we kill) cannot
    be reused by an unrelated process before _kill."""
    return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _kill(proc: subprocess.Popen, uid: int | None):
    """SIGKILL every process of the run's uid (this reaches those that left the process group), give the launcher
    a moment to reap the namespace's PID 1 (so no zombie is left to init), then SIGKILL the process group."""
    if uid is not None:  # kill(-1) as that uid: all of its processes, nothing else on the machine
        subprocess.run(["/bin/sh", "-c", "kill -KILL -1"], user=uid, group=uid, extra_groups=[], env={},
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        give_up = time.monotonic() + KILL_GRACE_S
        while not _exited(proc) and time.monotonic() < give_up:
            time.sleep(0.01)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _unshare_argv(layers: list[str]) -> list[str]:
    """unshare makes the namespaces and execs the launcher (the PID namespace holds the launcher's children)."""
    flags = [flag for name, flag in (("net", "--net"), ("pid", "--pid"), ("mount", "--mount")) if name in layers]
    if not flags:
        return []
    user = ["--user", "--map-root-user"] if os.geteuid() != 0 else []
    return [shutil.which("unshare"), *flags, *user, "--"]


def _mount_plan() -> dict:
    """Directories the mount layer covers with an empty tmpfs, and the interpreter's directories it binds back."""
    needed = _interpreter_dirs()
    hide = set(HIDDEN_DIRS) | {os.path.realpath(os.path.expanduser("~"))} | set(_closed_dirs())
    hide = {d for d in hide if d != "/" and os.path.isdir(d)}
    hide = sorted(d for d in hide if not any(_is_under(d, other) for other in hide if other != d))
    keep = sorted(p for p in needed if any(_is_under(p, d) for d in hide))
    keep = [p for p in keep if not any(_is_under(p, other) for other in keep if other != p)]
    return {"hide": hide, "keep": keep}


def _interpreter() -> str:
    """The interpreter's path with its directory resolved: a virtual environment reached through a symbolic link
    (~/.cache/venv -> the real one) is started from where it really is, which the mount layer binds back, and
    still finds its pyvenv.cfg beside it."""
    return os.path.join(os.path.realpath(os.path.dirname(sys.executable)), os.path.basename(sys.executable))


def _interpreter_dirs() -> set[str]:
    """What the interpreter needs: its prefixes and the directory of every link on the way from _interpreter()
    to the binary (venv/bin/python -> python3 -> /root/.pyenv/.../bin/python3.11)."""
    dirs = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)}
    path, seen = _interpreter(), set()
    while path not in seen:
        seen.add(path)
        dirs.add(os.path.realpath(os.path.dirname(path)))
        if not os.path.islink(path):
            break
        path = os.path.join(os.path.dirname(path), os.readlink(path))
    return dirs


def _closed_dirs() -> list[str]:
    """Directories on the way to the interpreter that other users cannot enter (no o+x)."""
    return sorted({d for d in map(_first_closed_dir, _interpreter_dirs()) if d})


def _first_closed_dir(path: str) -> str | None:
    """The outermost ancestor of path that other users cannot enter (no o+x), if any."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        d = "/" + "/".join(parts[:i])
        if os.path.isdir(d) and not os.stat(d).st_mode & 0o001:
            return d
    return None


def _is_under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


# -----------------------------------------------------------------------------
# The child side: runs in the new namespaces as root (of the host or of a user namespace), sets up the mounts
# and limits, drops to the run's uid and becomes the program.

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
SETUP_FAILED = 125
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
KEPT_MOUNT_FLAGS = os.ST_NODEV | os.ST_NOEXEC | os.ST_NOATIME | os.ST_NODIRATIME | os.ST_RELATIME  # = MS_ values


def _launch(config: dict):
    """The child's entry (execution.py --launch CONFIG). With the pid layer it forks the program as PID 1 of the
    new namespace, waits for it and ends the way it ended (so the caller sees the program's exit code or signal);
    without, it becomes the program."""
    if not config["pid"]:
        _become_program(config)
    child = os.fork()
    if child == 0:
        _become_program(config)
    code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
    if code >= 0:
        sys.exit(code)
    if -code not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)


def _become_program(config: dict):
    """Mounts, rlimits, the run's uid, then exec of the program. A failure ends the run (exit SETUP_FAILED):
    it never runs with less isolation than the caller reports."""
    try:
        if config["mount"]:
            _build_mounts(config)
        for name, value in config["limits"].items():
            resource.setrlimit(getattr(resource, f"RLIMIT_{name}"), (value, value))
        uid = config["uid"]
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # dies with its parent (set after the uid change, which clears it)
        _prctl(PR_SET_NO_NEW_PRIVS, 1)            # no setuid or file-capability binary gives privileges back
        os.chdir(config["work"])
        os.execv(config["python"], [config["python"], "-I", PROGRAM])
    except OSError as e:
        print(f"nanochat sandbox: setup failed: {e}", file=sys.stderr, flush=True)
        os._exit(SETUP_FAILED)


def _prctl(option: int, value: int):
    _libc("prctl", f"prctl option {option}", option, value, 0, 0, 0)


def _build_mounts(config: dict):
    """Empty tmpfs over the hidden dirs (the interpreter bound back in), every mount read-only, then a private
    writable tmpfs as the work dir with the program copied in."""
    if os.readlink("/proc/self/ns/mnt") == config["host_mount_ns"]:  # never remount the host's filesystems
        raise OSError("not in a new mount namespace")
    work, uid = config["work"], config["uid"]
    with open(os.path.join(work, PROGRAM), "rb") as f:
        program = f.read()
    keep = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in config["mount"]["keep"]]
    for d in config["mount"]["hide"]:
        _mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for path, fd in keep:
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)
    os.makedirs(work, exist_ok=True)  # re-created when a hidden dir (/tmp) held it
    if config["pid"]:  # a /proc that shows only the new PID namespace (mounted by its PID 1)
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for target in _mount_points():
        try:
            flags = os.statvfs(target).f_flag & KEPT_MOUNT_FLAGS
        except FileNotFoundError:  # under a covered dir: unreachable already
            continue
        _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | flags)
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    _mount("tmpfs", work, "tmpfs", MS_NOSUID | MS_NODEV, f"size={WORK_DIR_BYTES},mode=700{owner}")
    with open(os.path.join(work, PROGRAM), "wb") as f:
        f.write(program)


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:  # field 5 is the mount point, with octal escapes (\040 = space)
        return [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4]) for line in f]


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None):
    encode = lambda text: text.encode() if text is not None else None
    _libc("mount", f"mount {target}", encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags),
          encode(data))


def _libc(function: str, what: str, *args):
    if getattr(ctypes.CDLL(None, use_errno=True), function)(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def main(argv: list[str] | None = None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--launch"]:
        _launch(json.loads(argv[1]))
    else:
        print(describe_layers())


if __name__ == "__main__":
    main()
