"""
Data-parallel tests without a GPU: two CPU processes on the gloo backend run the same code base_train runs under
torchrun (NCCL on GPUs), and their results are compared with one process that sees both ranks' batches.

- train_step + wrap_data_parallel: the parameters after a few optimizer steps with gradient accumulation equal,
  to rounding, those of a single process stepping on the union of the batches with the same total batch; both
  ranks hold identical weights; there is one all-reduce per optimizer step (no_sync on the other micro-steps).
  A control run without DDP on the same batches ends far from them, so the comparison can fail.
- evaluate_bpb under 2 ranks equals the single-process bpb over the union of the batches.
- agree_across_ranks (Ctrl-C on one rank stops all; the slowest clock wins), and the checkpoint's per-rank
  loader states round-trip through gather_loader_states / loader_state_for_rank.
- base_train.main end to end under 2 ranks: a run resumed from its step-3 checkpoint repeats the straight run's
  losses, val bpb and every rank's loader position; one process may not resume that checkpoint.

compute_init refuses torchrun on a CPU by design, so the workers start the gloo process group themselves (and
stand in for compute_init in the end-to-end run).

    pytest tests/test_ddp.py -q
"""

import datetime
import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from nanochat.common import Compute, UserError, seed_everything
from conftest import byte_tokenizer, tiny_gpt, write_corpus
from nanochat.loss_eval import evaluate_bpb
from nanochat.optim import set_schedule
from nanochat.train import (agree_across_ranks, gather_loader_states, loader_state_for_rank, train_step,
                            wrap_data_parallel)
from scripts import base_train

pytestmark = pytest.mark.subprocess     # spawns gloo worker processes

WORLD, STEPS, ACCUM, B, T, VOCAB = 2, 3, 2, 2, 16, 64     # per rank: ACCUM micro-batches of B x T per step


def tiny_model():
    return tiny_gpt(VOCAB, seq_len=T, perturb=0.02)     # perturbed: every gradient non-trivial


def batch(step, rank, micro):
    """The micro-batch `micro` of `rank` at `step`: fixed by its coordinates, so any process can rebuild it."""
    g = torch.Generator().manual_seed(1000 * step + 10 * rank + micro)
    x = torch.randint(0, VOCAB, (B, T), generator=g)
    y = torch.randint(0, VOCAB, (B, T), generator=g)
    return x, y, {"step": step, "rank": rank, "micro": micro}


def train(train_model, model, ranks):
    """STEPS optimizer steps of base_train's train_step; each step takes ACCUM micro-batches from each of `ranks`."""
    optimizers = model.setup_optimizers(ns_dtype=torch.float32)
    losses = []
    for step in range(STEPS):
        set_schedule(optimizers, step, step / STEPS)
        batches = iter([batch(step, r, m) for r in ranks for m in range(ACCUM)])
        loss, state, _ = train_step(train_model, optimizers, batches, ACCUM * len(ranks), "cpu", torch.float32)
        assert state["step"] == step and next(batches, None) is None      # every micro-batch used, in order
        losses.append(loss)
    return losses


def eval_batches(rank):
    g = torch.Generator().manual_seed(77 + rank)
    for _ in range(3):
        x = torch.randint(0, VOCAB, (B, T), generator=g)
        y = torch.randint(0, VOCAB, (B, T), generator=g)
        y[0, :3] = -1                                       # ignored targets count in neither sum
        yield x, y


def token_bytes():
    return torch.arange(VOCAB) % 4                          # some 0-byte (special) tokens too


def end_to_end(rank, root):
    """base_train.main twice under this process group: straight 6 steps (saving at 3), then resumed from 3."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), NANOCHAT_BASE_DIR=f"{root}/base",
                      NANOCHAT_DTYPE="float32", OMP_NUM_THREADS="1")

    def torchrun_init(device_type="", seed=42):     # compute_init under torchrun, but gloo on the CPU
        seed_everything(seed)
        return Compute(torch.device("cpu"), torch.float32, ddp=True, rank=rank, local_rank=rank, world_size=WORLD)

    base_train.compute_init = torchrun_init
    base_train.compute_cleanup = lambda: None       # the worker owns the process group
    args = ["--depth", "2", "--head-dim", "64", "--max-seq-len", "64", "--device-batch-size", "4", "--eval-tokens",
            "1024", "--compile", "off", "--data", f"{root}/corpus.txt", "--total-batch-size", "1024",   # 2 micro-steps
            "--num-iterations", "6"]
    straight = base_train.main(args + ["--save-every", "3"])
    resumed = base_train.main(args + ["--resume", "3"])
    return straight, resumed


def worker(rank, port, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=60))
    try:
        result = {}
        # data-parallel training, exactly as base_train wraps and steps the model
        model = tiny_model()
        result["losses"] = train(wrap_data_parallel(model), model, [rank])
        result["params"] = {k: v.clone() for k, v in model.state_dict().items()}

        # one all-reduce per optimizer step: count the rounds in which bucket 0 is reduced
        rounds = []

        def counting_hook(state, bucket):
            if bucket.index() == 0:
                rounds.append(1)
            return default_hooks.allreduce_hook(None, bucket)

        model = tiny_model()
        ddp_model = wrap_data_parallel(model)
        ddp_model.register_comm_hook(None, counting_hook)
        train(ddp_model, model, [rank])
        result["allreduce_rounds"] = len(rounds)

        # evaluate_bpb sums over ranks
        result["bpb"] = evaluate_bpb(tiny_model(), eval_batches(rank), 3, token_bytes())

        # Ctrl-C on rank 1 only, different clocks: both ranks stop, both take the slower clock
        result["agreed"] = agree_across_ranks(rank == 1, 10.0 + rank, "cpu")

        # checkpoint loader states: a list by rank, each rank gets its own back
        saved = gather_loader_states({"doc_index": 5 + rank}, WORLD)
        result["saved_states"] = saved
        result["own_state"] = loader_state_for_rank(saved, WORLD, rank, WORLD, "meta_000001.json")

        result["straight"], result["resumed"] = end_to_end(rank, out_dir)      # last: it patches base_train
        torch.save(result, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("ddp")
    write_corpus(out_dir / "corpus.txt")
    byte_tokenizer().save(str(out_dir / "base" / "tokenizer"))
    mp.spawn(worker, args=(free_port(), str(out_dir)), nprocs=WORLD, join=True)
    return [{**torch.load(out_dir / f"rank{r}.pt"), "root": out_dir} for r in range(WORLD)]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_ddp_training_equals_one_process_on_the_union(ranks):
    model = tiny_model()
    losses = train(model, model, list(range(WORLD)))          # one process, grad accumulation over both ranks
    reference = model.state_dict()
    for r in ranks:
        assert r["losses"] == pytest.approx(losses, rel=1e-5)   # logged loss = mean over ranks
        for name, p in reference.items():     # (AdamW's tiny eps turns rounding in the embedding into ~1e-5)
            torch.testing.assert_close(r["params"][name], p, rtol=1e-4, atol=1e-4, msg=name)
    for name in reference:                                     # every rank applied the same update
        assert torch.equal(ranks[0]["params"][name], ranks[1]["params"][name]), name
    # Control: rank 0 alone (no gradient sync) ends far from the reference in every parameter (the smallest gap
    # is ~1e-2), so the comparison above can fail, e.g. if DDP missed the lm_head gradient of the fused loss.
    alone = tiny_model()
    train(alone, alone, [0])
    for name, p in reference.items():
        assert (alone.state_dict()[name] - p).abs().max() > 1e-3, name


def test_one_allreduce_per_optimizer_step(ranks):
    assert [r["allreduce_rounds"] for r in ranks] == [STEPS] * WORLD     # not STEPS * ACCUM


def test_evaluate_bpb_sums_over_ranks(ranks):
    def union():
        for r in range(WORLD):
            yield from eval_batches(r)

    expected = evaluate_bpb(tiny_model(), union(), 3 * WORLD, token_bytes())
    alone = evaluate_bpb(tiny_model(), eval_batches(0), 3, token_bytes())
    assert alone != pytest.approx(expected, rel=1e-6)              # the ranks' batches really differ
    for r in ranks:
        assert r["bpb"] == pytest.approx(expected, rel=1e-9)


def test_ranks_agree_on_stop_and_clock(ranks):
    assert [r["agreed"] for r in ranks] == [(True, 11.0)] * WORLD


def test_loader_states_saved_per_rank(ranks):
    assert ranks[0]["saved_states"] == [{"doc_index": 5}, {"doc_index": 6}]
    assert [r["own_state"] for r in ranks] == [{"doc_index": 5}, {"doc_index": 6}]
    # one process keeps the original format (a dict), and a different process count is refused
    assert gather_loader_states({"doc_index": 3}, 1) == {"doc_index": 3}
    assert loader_state_for_rank({"doc_index": 3}, 1, 0, 1, "m.json") == {"doc_index": 3}
    with pytest.raises(UserError, match="m.json was saved by 2 process.*this run has 1.*nproc_per_node=2"):
        loader_state_for_rank(ranks[0]["saved_states"], WORLD, 0, 1, "m.json")


def test_base_train_resumes_exactly_under_ddp(ranks, monkeypatch):
    for r in ranks:
        straight, resumed = r["straight"], r["resumed"]
        assert straight["step"] == resumed["step"] == 6
        assert resumed["losses"] == pytest.approx(straight["losses"][3:], rel=1e-5)
        assert resumed["loader_state"] == straight["loader_state"]
        assert resumed["val_bpb"] == pytest.approx(straight["val_bpb"], rel=1e-5)
    assert ranks[0]["straight"]["losses"] == ranks[1]["straight"]["losses"]             # logged: mean over ranks
    assert ranks[0]["straight"]["loader_state"] != ranks[1]["straight"]["loader_state"]  # each its own documents
    root = ranks[0]["root"]
    meta = json.loads((root / "base" / "base_checkpoints" / "d2" / "meta_000003.json").read_text())
    assert meta["world_size"] == WORLD and len(meta["loop_state"]["loader_state"]) == WORLD
    # One process cannot take over the two ranks' data positions.
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(root / "base"))
    monkeypatch.setenv("NANOCHAT_DTYPE", "float32")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with pytest.raises(UserError, match="meta_000003.json was saved by 2 process.*this run has 1"):
        base_train.main(["--depth", "2", "--head-dim", "64", "--max-seq-len", "64", "--data", str(root / "corpus.txt"),
                         "--resume", "3", "--compile", "off"])
