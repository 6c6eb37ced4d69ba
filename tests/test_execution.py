"""
Tests for nanochat/execution.py, the sandbox HumanEval runs completions in: each hostile program is stopped or
contained while this test process is unharmed, and each containment is checked by its effect (the file is not
there, the server saw no connection, no process of the run is left), not by the return value. Controls run the
same program with the layer skipped and see the effect happen, so the checks can fail.

The fork bomb runs only after a bounded probe has shown the process cap working on this machine.
A test that needs a layer the machine itself cannot give (execution.machine_lacks: not Linux, no unshare,
namespaces refused, not root) is skipped with that reason; a layer lost to the sandbox's own setup fails it.
The hostile programs also run from an interpreter reached through a symbolic link and from a venv under /tmp,
and the refusals (a required layer off) and the weak opt-in are checked on their own.

    pytest tests/test_execution.py -q
"""

import ast
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

import pytest

from nanochat import execution
from nanochat.execution import (ALLOW_WEAK_ENV, BASE_LAYERS, KILL_GRACE_S, MAX_OUTPUT_BYTES, MAX_PROCESSES,
                                OPTIONAL_LAYERS, SANDBOX_UID_BASE, SANDBOX_UIDS, SandboxRefused, available_layers,
                                check_sandbox, describe_layers, execute_python)

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.subprocess     # every case runs a sandboxed process


def need(*layers):
    """Skip if this machine cannot give any of these layers; fail if it can and the sandbox lost one."""
    lacks = {name: execution.machine_lacks(name) for name in layers}
    if all(lacks.values()):
        pytest.skip("; ".join(f"{name} layer off: {why}" for name, why in lacks.items()))
    why = available_layers()
    lost = {name: why[name] for name in layers if not lacks[name] and why[name]}
    assert not lost, f"layers this machine can give are off: {lost}"


def sandbox_processes() -> list[tuple[int, str]]:
    """Live (not zombie) processes on the machine owned by a sandbox uid."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:  # ended while we looked
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        uid, state = int(fields["Uid"].split()[0]), fields["State"].split()[0]
        if SANDBOX_UID_BASE <= uid < SANDBOX_UID_BASE + SANDBOX_UIDS and state != "Z":
            found.append((int(pid), fields["Name"].strip()))
    return found


# --- ordinary programs ---

def test_normal_program_succeeds_with_its_stdout():
    r = execute_python("import sys\nprint('hello', 6 * 7)\nprint('to stderr', file=sys.stderr)")
    assert r.success and r.returncode == 0 and not (r.timed_out or r.memory_exceeded or r.output_exceeded)
    assert r.stdout == "hello 42\n" and r.stderr == "to stderr\n"
    enforced = tuple(name for name, why in available_layers().items() if not why)
    assert r.layers == tuple(BASE_LAYERS) + enforced


def test_exception_fails_with_traceback_in_stderr():
    r = execute_python("def f():\n    raise ValueError('boom')\nf()")
    assert not r.success and r.returncode == 1 and not r.timed_out
    assert "Traceback (most recent call last)" in r.stderr and r.stderr.rstrip().endswith("ValueError: boom")
    r = execute_python("import sys; sys.exit(3)")
    assert not r.success and r.returncode == 3


def test_work_dir_is_empty_writable_and_removed():
    r = execute_python("import os\nprint(os.getcwd())\nprint(sorted(os.listdir('.')))\n"
                       "open('scratch.txt', 'w').write('x' * 1000)\nprint(os.path.getsize('scratch.txt'))")
    assert r.success, r.stderr
    cwd, listing, size = r.stdout.splitlines()
    assert listing == "['program.py']" and size == "1000"
    assert os.path.isabs(cwd) and not os.path.exists(cwd)  # removed afterwards


def test_layers_are_described_and_can_be_skipped():
    text = describe_layers()
    assert all(name in text for name in [*BASE_LAYERS, *OPTIONAL_LAYERS])
    r = execute_python("print(1)", skip_layers=("net",))
    assert r.success and "net" not in r.layers and set(BASE_LAYERS) <= set(r.layers)
    with pytest.raises(ValueError, match="unknown layers"):
        execute_python("print(1)", skip_layers=("seccomp",))


# --- hostile programs ---

def test_infinite_loop_times_out():
    start = time.monotonic()
    r = execute_python("while True:\n    pass", timeout=1.0)
    assert r.timed_out and not r.success and r.returncode == -signal.SIGKILL
    assert time.monotonic() - start < 1.0 + KILL_GRACE_S


def test_cpu_limit_stops_a_busy_program_before_the_wall_clock():
    start = time.monotonic()
    r = execute_python("while True:\n    pass", timeout=20.0, cpu_seconds=1)
    assert not r.success and not r.timed_out and r.returncode in (-signal.SIGKILL, -signal.SIGXCPU)
    assert time.monotonic() - start < 5


def test_memory_hog_hits_the_address_space_limit():
    hog = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))"
    r = execute_python(hog, memory_bytes=128 << 20)
    assert r.memory_exceeded and not r.success and "MemoryError" in r.stderr
    r = execute_python("x = bytearray(1 << 30)\nprint('allocated')", memory_bytes=128 << 20)
    assert r.memory_exceeded and "allocated" not in r.stdout
    assert not execute_python("print('MemoryError')").memory_exceeded  # printed, not raised


def test_50_mb_of_output_is_capped_and_never_buffered():
    flood = "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(50):\n    sys.stdout.write(chunk)\nprint('end')"
    tracemalloc.start()
    try:
        start = time.monotonic()
        r = execute_python(flood, timeout=20.0)
        elapsed = time.monotonic() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert r.output_exceeded and not r.success and not r.timed_out
    assert len(r.stdout) == MAX_OUTPUT_BYTES and set(r.stdout) == {"x"}
    assert peak < 4 * MAX_OUTPUT_BYTES, f"the parent held {peak >> 20} MiB"  # 50 MB buffered would show here
    assert elapsed < 10


def test_parent_environment_is_not_visible(monkeypatch):
    secret = f"secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("NANOCHAT_TEST_SECRET", secret)
    snoop = (f"import os\nprint(sorted(os.environ))\nprint(os.environ.get('NANOCHAT_TEST_SECRET'))\n"
             f"for path in ['/proc/{os.getpid()}/environ', '/proc/{os.getppid()}/environ']:\n"
             f"    try:\n        print(open(path, 'rb').read())\n    except OSError as e:\n        print('no', e)\n"
             f"import sys; sys.stdout.flush(); os.system('env; cat /proc/*/environ')")
    r = execute_python(snoop)
    assert secret not in r.stdout and secret not in r.stderr
    assert ast.literal_eval(r.stdout.splitlines()[0]) == sorted({*execution.ENV, "HOME", "TMPDIR"})


def test_writes_outside_the_work_dir_fail():
    need("mount")
    name = f"nanochat-escape-{uuid.uuid4().hex}"
    targets = [Path("/tmp") / name, Path.home() / name, Path("/var/tmp") / name, Path("/dev/shm") / name,
               Path(__file__).parent / name]
    code = (f"for path in {[str(t) for t in targets]!r}:\n"
            f"    try:\n        open(path, 'w').write('escaped')\n        print('wrote', path)\n"
            f"    except OSError as e:\n        print('blocked', path, e.strerror)\n")
    try:
        r = execute_python(code)
        assert r.success, r.stderr
        assert r.stdout.count("blocked") == len(targets) and "wrote" not in r.stdout
        assert not any(t.exists() for t in targets)
        # control: without the mount and uid layers the same program does write to /tmp
        control = execute_python(code.replace(repr([str(t) for t in targets]), repr([str(targets[0])])),
                                 skip_layers=("mount", "uid"))
        assert control.stdout.startswith(f"wrote {targets[0]}") and targets[0].exists()
    finally:
        for t in targets:
            t.unlink(missing_ok=True)


def test_no_network_even_to_localhost():
    need("net")
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        port = server.getsockname()[1]
        code = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
                f"    print('connected')\nexcept OSError as e:\n    print('failed', e)")
        r = execute_python(code)
        assert r.stdout.startswith("failed")
        with pytest.raises(BlockingIOError):  # the server saw no connection
            server.accept()
        # control: without the net layer the connection reaches the server
        control = execute_python(code, skip_layers=("net",))
        assert control.stdout.startswith("connected")
        server.accept()[0].close()


@pytest.mark.slow
def test_fork_bomb_is_contained():
    need("nproc")
    # First a bounded probe: MAX_PROCESSES * 3 sleepers, linear, harmless if the cap fails.
    spawn = (f"import subprocess\nprocs = []\ntry:\n    for _ in range({3 * MAX_PROCESSES}):\n"
             f"        procs.append(subprocess.Popen(['sleep', '30']))\nexcept OSError as e:\n    print(e.errno)\n"
             f"print(len(procs))")
    probe = execute_python(spawn)
    assert probe.success and int(probe.stdout.split()[-1]) < MAX_PROCESSES, probe.stdout + probe.stderr
    assert sandbox_processes() == []
    # Now the bomb: every process forks forever.
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    start = time.monotonic()
    r = execute_python(bomb, timeout=2.0)
    assert r.timed_out and time.monotonic() - start < 2.0 + KILL_GRACE_S + 1
    assert sandbox_processes() == []
    assert subprocess.run(["true"]).returncode == 0  # this machine can still start processes


def test_subprocesses_run_unprivileged_and_die_with_the_run():
    need("uid", "pid")
    marker = Path("/tmp") / f"nanochat-system-{uuid.uuid4().hex}"
    code = (f"import os, subprocess\nos.system('id -u; touch {marker}')\n"
            f"subprocess.Popen(['sleep', '60'], start_new_session=True)\nprint('detached')")
    try:
        r = execute_python(code)
        assert r.success and r.stdout.endswith("detached\n")
        if "uid" in r.layers:
            assert int(r.stdout.split()[0]) >= SANDBOX_UID_BASE  # not root
        assert sandbox_processes() == []  # the detached sleep did not outlive the run
        if "mount" in r.layers:
            assert not marker.exists()
    finally:
        marker.unlink(missing_ok=True)


def test_cannot_kill_its_parent_or_this_process():
    need("uid", "pid")  # without either, the kill would reach this test process
    code = (f"import os, signal\n"
            f"for name, target in [('ppid', lambda: os.kill(os.getppid(), signal.SIGKILL)),\n"
            f"                     ('test', lambda: os.kill({os.getpid()}, signal.SIGKILL)),\n"
            f"                     ('group', lambda: os.killpg({os.getpgid(0)}, signal.SIGKILL))]:\n"
            f"    try:\n        target()\n        print(name, 'sent')\n"
            f"    except OSError as e:\n        print(name, type(e).__name__)\n"
            f"print('still here')")
    r = execute_python(code)
    assert r.stdout.endswith("still here\n"), r.stdout + r.stderr
    assert "test sent" not in r.stdout and "group sent" not in r.stdout
    os.kill(os.getpid(), 0)  # and we are alive to check it


# --- other interpreters: a venv reached through a symbolic link, a venv under /tmp ---

# Runs in a child interpreter: checks the sandbox, runs each program (DRIVER_PID in a program is this driver's
# pid) and prints one JSON line. With "mount_off", the mount layer is reported off, as on a machine without it.
DRIVER = r"""
import json, os, subprocess, sys
sys.path.insert(0, sys.argv[1])
from nanochat import execution
cfg = json.loads(sys.argv[2])
if cfg.get("mount_off"):
    real = execution.available_layers()
    execution.available_layers = lambda: {**real, "mount": "switched off by the test"}
out = {"executable": sys.executable}
try:
    out["check"] = execution.check_sandbox().line()
except execution.SandboxRefused as e:
    print(json.dumps({**out, "refused": str(e)}))
    sys.exit(0)
out["results"] = {}
for name, code in cfg["programs"].items():
    r = execution.execute_python(code.replace("DRIVER_PID", str(os.getpid())), timeout=cfg.get("timeout", 5.0))
    out["results"][name] = {"stdout": r.stdout, "stderr": r.stderr[-300:], "layers": r.layers, "weak": r.weak,
                            "timed_out": r.timed_out}
out["can_fork"] = subprocess.run(["true"]).returncode == 0
print(json.dumps(out))
"""

FORK_BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"


def run_driver(python: str, programs: dict, env: dict | None = None, **cfg) -> dict:
    proc = subprocess.run([python, "-c", DRIVER, str(REPO), json.dumps({"programs": programs, **cfg})],
                          capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(params=["symlinked-venv", "venv-under-tmp"])
def other_python(request, tmp_path_factory) -> str:
    """This interpreter reached through a symbolic link under /tmp, or a new venv under /tmp."""
    where = tmp_path_factory.mktemp(request.param)
    assert str(where).startswith("/tmp/")  # inside a directory the mount layer hides
    if request.param == "symlinked-venv":
        (where / "venv").symlink_to(Path(sys.prefix))
        python = where / "venv" / "bin" / Path(sys.executable).name
    else:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where / "venv")], check=True)
        python = where / "venv" / "bin" / "python"
    return str(python)


@pytest.mark.slow
def test_hostile_programs_are_contained_from_other_interpreters(other_python):
    need("mount")
    m = uuid.uuid4().hex
    files = {k: Path(p) for k, p in [("open", f"/tmp/nanochat-open-{m}"), ("home", f"{Path.home()}/nanochat-{m}"),
                                      ("system", f"/tmp/nanochat-system-{m}"), ("sub", f"/tmp/nanochat-sub-{m}")]}
    secret = f"secret-{m}"
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        port = server.getsockname()[1]
        programs = {
            "open": f"open({str(files['open'])!r}, 'w').write('x')",
            "home": f"open({str(files['home'])!r}, 'w').write('x')",
            "system": f"import os\nos.system('touch {files['system']}')",
            "subprocess": f"import subprocess\nsubprocess.run(['sh', '-c', 'echo x > {files['sub']}'])",
            "network": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)\nprint('connected')",
            "environ": "import os\nprint(dict(os.environ))\nos.system('cat /proc/*/environ')",
            "kill": f"import os, signal\nfor pid in (DRIVER_PID, {os.getpid()}):\n"
                    f"    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\nprint('alive')",
            "fork_bomb": FORK_BOMB,
        }
        try:
            out = run_driver(other_python, programs, env={"NANOCHAT_TEST_SECRET": secret}, timeout=3.0)
            escaped = [str(f) for f in files.values() if f.exists()]
            with pytest.raises(BlockingIOError):   # no connection reached the server
                server.accept()
        finally:
            for f in files.values():
                f.unlink(missing_ok=True)
    assert "refused" not in out, out
    assert out["executable"].startswith("/tmp/")
    for name, r in out["results"].items():
        assert {"uid", "nproc", "mount"} <= set(r["layers"]) and not r["weak"], (name, r)
    assert escaped == []
    assert "connected" not in out["results"]["network"]["stdout"]
    assert secret not in json.dumps(out["results"]["environ"])
    assert out["results"]["fork_bomb"]["timed_out"] and out["can_fork"]
    assert sandbox_processes() == []


# --- failing closed ---

def test_refuses_when_a_required_layer_is_off(monkeypatch):
    real = available_layers()
    monkeypatch.setattr(execution, "available_layers", lambda: {**real, "mount": "switched off by the test"})
    monkeypatch.delenv(ALLOW_WEAK_ENV, raising=False)
    with pytest.raises(SandboxRefused) as refused:
        execute_python("open('/tmp/never', 'w')")
    message = str(refused.value)
    assert "mount: switched off by the test" in message and "To fix:" in message
    if os.geteuid() == 0 and execution._closed_dirs():   # uid cannot start this interpreter, so nproc goes too
        assert "nproc:" in message and ALLOW_WEAK_ENV not in message   # never waived: no opt-in offered
    # the opt-in never runs without a process cap
    if "nproc:" in message:
        with pytest.raises(SandboxRefused):
            execute_python("print(1)", allow_weak=True)


def test_what_is_required_as_root_and_as_another_user(monkeypatch):
    real = available_layers()
    monkeypatch.setattr(execution, "available_layers", lambda: {**real, "mount": "off", "uid": "off"})
    monkeypatch.setattr(execution, "_closed_dirs", lambda: [])
    monkeypatch.setattr(execution.os, "geteuid", lambda: 1000)
    assert execution.required_layers() == ("nproc", "mount")
    with pytest.raises(SandboxRefused, match="mount: off"):
        check_sandbox(allow_weak=False)
    weak = check_sandbox(allow_weak=True)      # a user's process cap holds: the opt-in may run without mounts
    assert weak.weak and list(weak.missing) == ["mount"] and "WEAK" in weak.line() and "mount" in weak.note()
    monkeypatch.setattr(execution.os, "geteuid", lambda: 0)
    assert execution.required_layers() == ("uid", "nproc", "mount")
    with pytest.raises(SandboxRefused, match="(?s)uid: off.*nproc: root is exempt"):
        check_sandbox(allow_weak=True)          # root without uid has no process cap: refused even opted in


@pytest.mark.slow
def test_weak_opt_in_runs_and_says_so_and_still_caps_processes():
    """A venv of the system's Python (readable by every user) with the mount layer off: refused, then run under
    the opt-in with uid and nproc holding; a fork bomb is contained and the machine can fork afterwards."""
    need("uid")
    if not os.path.exists("/usr/bin/python3"):
        pytest.skip("no system Python (/usr/bin/python3) to build a venv readable by every user")
    with tempfile.TemporaryDirectory(prefix="nanochat-venv-") as where:   # pytest's tmp_path is closed (0700)
        os.chmod(where, 0o755)
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", f"{where}/venv"], check=True)
        python = f"{where}/venv/bin/python"
        refused = run_driver(python, {"hello": "print('hello')"}, env={ALLOW_WEAK_ENV: "0"}, mount_off=True)
        out = run_driver(python, {"hello": "print('hello')", "fork_bomb": FORK_BOMB}, env={ALLOW_WEAK_ENV: "1"},
                         mount_off=True, timeout=2.0)
    assert "mount: switched off by the test" in refused["refused"] and ALLOW_WEAK_ENV in refused["refused"]
    hello, bomb = out["results"]["hello"], out["results"]["fork_bomb"]
    assert hello["stdout"] == "hello\n" and hello["weak"] and "mount" not in hello["layers"]
    assert {"uid", "nproc"} <= set(hello["layers"]) and "WEAK" in out["check"]
    assert bomb["timed_out"] and out["can_fork"] and sandbox_processes() == []
