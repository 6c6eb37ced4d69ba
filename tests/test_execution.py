"""
Tests for nanochat/execution.py, the sandbox HumanEval runs completions in: each hostile program is stopped or
contained while this test process is unharmed, and each containment is checked by its effect (the file is not
there, the server saw no connection, no process of the run is left), not by the return value. Controls run the
same program with the layer skipped and see the effect happen, so the checks can fail.

The fork bomb runs only after a bounded probe has shown the process cap working on this machine.
Tests that need a layer the machine lacks are skipped, with the reason from available_layers().

    pytest tests/test_execution.py -q
"""

import ast
import os
import signal
import socket
import subprocess
import time
import tracemalloc
import uuid
from pathlib import Path

import pytest

from nanochat import execution
from nanochat.execution import (BASE_LAYERS, KILL_GRACE_S, MAX_OUTPUT_BYTES, MAX_PROCESSES, OPTIONAL_LAYERS,
                                SANDBOX_UID_BASE, SANDBOX_UIDS, available_layers, describe_layers, execute_python)

pytestmark = pytest.mark.subprocess     # every case runs a sandboxed process


def need(*layers):
    """Skip unless this machine enforces one of these layers."""
    why = available_layers()
    if all(why[name] for name in layers):
        pytest.skip("; ".join(f"{name} layer off: {why[name]}" for name in layers))


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
