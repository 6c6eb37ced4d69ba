"""
Shared plumbing for every script: base directory, logging, device / dtype / thread choice, DDP setup, wandb.

The one place in the project that decides which device and compute dtype are used (and says why).
Nothing here is run directly; scripts call `compute_init()` at start-up:

    compute = compute_init(args.device_type)    # .device, .dtype (bf16 or fp32, logged with its reason), .rank, ...
"""

import contextlib
import ctypes
import logging
import os
import platform
import random
import resource
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

logger = logging.getLogger("nanochat")


# -----------------------------------------------------------------------------
# Files and printing

def get_base_dir() -> str:
    """Where tokenizers, data and checkpoints live: $NANOCHAT_BASE_DIR, else ~/.cache/nanochat."""
    base = os.environ.get("NANOCHAT_BASE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "nanochat")
    os.makedirs(base, exist_ok=True)
    return base


def get_rank() -> int:
    return int(os.environ.get("RANK", 0))


def print0(*args, **kwargs):
    """print() on rank 0 only, so a multi-GPU run does not repeat every line."""
    if get_rank() == 0:
        print(*args, **kwargs, flush=True)


def setup_logging(level=logging.INFO):
    """Plain 'time level message' lines on stderr, from rank 0 only (other ranks log warnings and worse)."""
    if logger.handlers:
        return logger
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(level if get_rank() == 0 else logging.WARNING)
    logger.propagate = False
    return logger


def atomic_write(path: str, write):
    """Call write(file) on a temp file next to `path`, fsync, then rename: readers see the old file or the new one,
    never half of one, even if the process is killed mid-write."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def staged_dir(dest: Path, replace: bool = False):
    """A scratch folder next to `dest` that becomes `dest` only if the block succeeds, so a cache folder is never
    seen half-written. A `dest` that exists by then is kept (another process finished first), unless `replace`:
    then it is swapped out. (The folder counterpart of atomic_write, which cannot rename a whole tree.)"""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=dest.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is meant to be shared
    try:
        yield tmp
        if replace and dest.exists():
            old = Path(tempfile.mkdtemp(prefix=".old-", dir=dest.parent))
            dest.rename(old / dest.name)
            tmp.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
        elif not dest.exists():
            os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


HF_HUB_URL = "https://huggingface.co"
_hub_answer: bool | None = None


def hub_reachable(timeout: float = 3.0) -> bool:
    """True when the Hugging Face hub answers within `timeout` seconds; asked once per process.
    NANOCHAT_OFFLINE=1 answers False without asking the network."""
    global _hub_answer
    if os.environ.get("NANOCHAT_OFFLINE", "") not in ("", "0"):
        return False
    if _hub_answer is None:
        import urllib.request  # only this function uses the network
        try:
            urllib.request.urlopen(urllib.request.Request(HF_HUB_URL, method="HEAD"), timeout=timeout)
            _hub_answer = True
        except Exception as e:  # DNS failure, refused, timeout, HTTP error: all mean "use the offline path"
            logger.info("Hugging Face hub not reachable (%s): using offline data from packages", e)
            _hub_answer = False
    return _hub_answer


class UserError(SystemExit):
    """A problem the user can fix (bad flag, missing file). Scripts print the message, not a traceback."""

    def __init__(self, message: str):
        super().__init__(f"error: {message}")


# -----------------------------------------------------------------------------
# Device, dtype, threads

def cpu_flags() -> set[str]:
    """CPU feature flags from /proc/cpuinfo (empty where that file does not exist, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def physical_cores() -> int:
    try:
        import psutil
        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


def autodetect_device_type() -> str:
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def _dtype_choice(device: torch.device) -> tuple[torch.dtype, str]:
    override = os.environ.get("NANOCHAT_DTYPE", "").strip().lower()
    if override:
        names = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float32": torch.float32, "fp32": torch.float32}
        if override not in names:
            raise UserError(f"NANOCHAT_DTYPE={override!r} is not one of bfloat16, float32")
        return names[override], f"NANOCHAT_DTYPE={override}"
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        if major >= 8:
            return torch.bfloat16, f"CUDA compute capability {major}.x has bf16 tensor cores"
        return torch.float32, f"CUDA compute capability {major}.x has no bf16 tensor cores"
    if device.type == "cpu":
        native = sorted(cpu_flags() & {"avx512_bf16", "amx_bf16"})
        if native:
            return torch.bfloat16, f"CPU has native bf16 matmul ({', '.join(native)})"
        return torch.float32, "CPU has no native bf16 matmul (no avx512_bf16 / amx_bf16)"
    return torch.float32, f"{device.type} default"


def compute_dtype(device: torch.device) -> torch.dtype:
    """The dtype matmuls run in (autocast). Master weights and optimizer state always stay fp32."""
    return _dtype_choice(device)[0]


def dtype_reason(device: torch.device) -> str:
    dtype, why = _dtype_choice(device)
    return f"{str(dtype).removeprefix('torch.')}: {why}"


def autocast_ctx(device: torch.device, dtype: torch.dtype):
    """Autocast to bf16 where chosen; fp32 needs no context."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def get_max_memory(device: torch.device) -> int:
    """Peak accelerator memory in bytes (0 off CUDA: CPU memory is peak_rss_bytes())."""
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0


def peak_rss_bytes() -> int:
    """Peak resident memory of this process in bytes.

    Linux: VmHWM from /proc, which starts afresh at exec. getrusage's ru_maxrss does not: a child started from a
    large parent reports the parent's peak. Elsewhere ru_maxrss (KiB on Linux-likes, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


# glibc mallopt() parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing large blocks back to the OS.

    By default glibc serves each large allocation (over 32 MB, and adaptively smaller ones) with a fresh mmap and
    unmaps it on free, so a training step's tensor of the same size as the last step's page-faults its way in
    again, page by page: ~15 ms for a 50 MB tensor, ~10% of a compiled depth-6 step. With mmap off and the trim
    threshold at its maximum, freed blocks stay in the heap and are reused. The cost is memory: until the heap's
    free blocks settle, a new large block can land beside a freed one instead of in it (peak RSS of training runs
    +2-5%). The training loop turns it on (README.md, "Pretraining on a CPU"). Returns False where it does
    nothing: no glibc (macOS, musl), or MALLOC_* environment variables set, which are the user's tuning and win."""
    if platform.libc_ver()[0] != "glibc" or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def seed_everything(seed: int):
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@dataclass(frozen=True)
class Compute:
    """Where and how this process computes: what compute_init decided."""
    device: torch.device
    dtype: torch.dtype             # matmul dtype under autocast; weights and optimizer state stay fp32
    ddp: bool = False              # launched by torchrun (on CUDA)
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def master(self) -> bool:
        """Rank 0: the process that saves checkpoints and prints samples."""
        return self.rank == 0


def compute_init(device_type: str | None = None, seed: int = 42) -> Compute:
    """Pick the device and dtype, set seeds and threads, start DDP under torchrun on CUDA."""
    setup_logging()
    device_type = device_type or autodetect_device_type()
    if device_type not in ("cuda", "cpu", "mps"):
        raise UserError(f"--device-type {device_type!r}: use cuda, cpu or mps")
    if device_type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device-type cuda was asked for but torch sees no CUDA GPU; use --device-type cpu")
    if device_type == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device-type mps was asked for but this torch has no MPS backend; use --device-type cpu")

    ddp = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    if ddp and device_type != "cuda":
        # Gloo DDP on one CPU would only split its cores between processes: slower, never faster.
        raise UserError(
            f"launched by torchrun (RANK={os.environ['RANK']}, WORLD_SIZE={os.environ['WORLD_SIZE']}) but the device is "
            f"{device_type}: distributed training needs CUDA GPUs. On a CPU run a single process instead: "
            "`python -m scripts.base_train ...` (it uses every core)."
        )

    seed_everything(seed)
    if device_type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        # Hyper-threads share one core's matmul units: more threads than physical cores only adds contention.
        torch.set_num_threads(physical_cores())

    if ddp:
        import torch.distributed as dist
        rank, local_rank, world_size = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"])
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl", device_id=device)
        dist.barrier()
    else:
        rank, local_rank, world_size = 0, 0, 1
        device = torch.device(device_type)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    logger.info("device %s (%s), %d torch threads, world size %d, compute %s",
                device, device_type, torch.get_num_threads(), world_size, dtype_reason(device))
    return Compute(device, compute_dtype(device), ddp, rank, local_rank, world_size)


def compute_cleanup():
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# -----------------------------------------------------------------------------
# Experiment tracking

class DummyWandb:
    """Stands in for wandb when --run dummy (the default): same calls, does nothing."""

    def log(self, *args, **kwargs):
        pass

    def finish(self):
        pass


def get_wandb(run: str, project: str, config: dict):
    """Real wandb for a named run (rank 0 only); WANDB_MODE=offline writes a local run folder to sync later."""
    if run == "dummy" or get_rank() != 0:
        return DummyWandb()
    import wandb
    return wandb.init(project=project, name=run, config=config)
