"""Process settings in nanochat/common.py."""

import platform
import resource
import subprocess
import sys
from pathlib import Path

import pytest

# Minor page faults (one per page touched) of each of 20 allocations of a 64 MB tensor, each freed before the next
# (as a training step frees its activations before the next step's), in a fresh process: mallopt is process-wide.
REALLOC_FAULTS = """
import resource, sys, torch
from nanochat.common import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
faults = []
for _ in range(20):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(16 << 20)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*faults)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_reuses_large_blocks_without_page_faults():
    def faults(mode: str) -> list[int]:
        env = {"PATH": "/usr/bin:/bin"}            # no MALLOC_* variables: those would switch it off
        out = subprocess.run([sys.executable, "-c", REALLOC_FAULTS, mode], capture_output=True, text=True, env=env,
                             cwd=Path(__file__).parent.parent, check=True)
        return [int(n) for n in out.stdout.split()]
    pages = (64 << 20) // resource.getpagesize()
    # glibc's default unmaps the block on free: every allocation faults all its pages in again
    assert all(n > pages // 2 for n in faults("default")[-5:])
    # kept: once the heap's free blocks have settled (a few allocations in), the freed block is reused as it is
    assert sum(faults("keep")[-5:]) < pages // 20


def test_keep_freed_memory_leaves_the_users_malloc_settings_alone(monkeypatch):
    from nanochat.common import keep_freed_memory
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert keep_freed_memory() is False
