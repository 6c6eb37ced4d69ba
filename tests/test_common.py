"""compute_init's process settings (nanochat/common.py)."""

import platform
import subprocess
import sys
from pathlib import Path

import pytest

# Page faults of a second 64 MB tensor, allocated after the first was freed (in a fresh process: mallopt is global).
REALLOC_FAULTS = """
import resource, sys, torch
from nanochat.common import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
torch.ones(16 << 20)                           # 64 MB of float32, touched, then freed
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.ones(16 << 20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_reuses_large_blocks_without_page_faults():
    def faults(mode: str) -> int:
        env = {"PATH": "/usr/bin:/bin"}            # no MALLOC_* variables: those would switch it off
        out = subprocess.run([sys.executable, "-c", REALLOC_FAULTS, mode], capture_output=True, text=True, env=env,
                             cwd=Path(__file__).parent.parent, check=True)
        return int(out.stdout.strip())
    pages = (64 << 20) // 4096
    assert faults("default") > pages // 2          # glibc unmapped the block; every page faults in again
    assert faults("keep") < pages // 20            # the freed block is reused as it is


def test_keep_freed_memory_leaves_the_users_malloc_settings_alone(monkeypatch):
    from nanochat.common import keep_freed_memory
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert keep_freed_memory() is False
