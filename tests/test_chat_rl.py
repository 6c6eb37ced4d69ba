"""
RL tests: the advantage and the policy-gradient loss on hand-made groups (value and gradient, masked tokens get
none), padding of rollouts into targets, sampling against the engine's own generate_batch, chunked backward ==
one-shot backward, and scripts.chat_rl in-process on a tiny sft checkpoint with a hand-made reward: it trains and
saves, a resumed run ends with the same weights as the uninterrupted one (and a run with another seed does not:
the control), bad flags give one line. Hermetic: conftest's base_dir (byte tokenizer, fp32), one thread.

    pytest tests/test_chat_rl.py -q
"""

from dataclasses import asdict

import pytest
import torch

from conftest import tiny_gpt
from nanochat import chat_eval
from nanochat.checkpoint_manager import load_checkpoint, save_checkpoint
from nanochat.engine import Engine
from nanochat.rl import (Rollout, group_advantages, pad_rollouts, policy_gradient_backward, policy_loss,
                         rollout_seed, sample_group)
from scripts import chat_rl
from tasks.common import Task, TaskMixture


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py


# -----------------------------------------------------------------------------
# The math, by hand

def test_group_advantages():
    assert group_advantages([1, 0, 0, 1]).tolist() == [0.5, -0.5, -0.5, 0.5]
    assert group_advantages([1, 0, 0, 0]).tolist() == [0.75, -0.25, -0.25, -0.25]
    assert group_advantages([1, 1, 1]).tolist() == [0, 0, 0] and group_advantages([0, 0]).tolist() == [0, 0]
    with pytest.raises(ValueError):
        group_advantages([])


def test_policy_loss_value_and_gradient():
    logp = torch.tensor([[-1.0, -2.0, -3.0],
                         [-0.5, -4.0, -1.5]], requires_grad=True)
    mask = torch.tensor([[0, 1, 1],          # row 0: first token is prompt
                         [1, 0, 1]])         # row 1: middle token was forced (tool output)
    adv = torch.tensor([0.5, -0.5])
    loss = policy_loss(logp, mask, adv)
    # -( 0.5 * (-2 - 3) + (-0.5) * (-0.5 - 1.5) ) / 4 sampled tokens = -(-2.5 + 1.0) / 4
    assert loss.item() == pytest.approx(0.375)
    loss.backward()
    assert logp.grad.tolist() == [[0.0, -0.125, -0.125], [0.125, 0.0, 0.125]]   # -a / 4 where sampled, else 0
    # The step-wide normaliser: the same group in a step of 10 sampled tokens.
    assert policy_loss(logp, mask, adv, num_tokens=10).item() == pytest.approx(0.15)
    assert policy_loss(logp, mask, torch.zeros(2)).item() == 0.0


def test_pad_rollouts_targets_only_sampled_tokens():
    prompt = [1, 2, 3]
    rollouts = [Rollout([4, 5, 6], [1, 0, 1], "", True), Rollout([7], [1], "", False)]
    inputs, targets = pad_rollouts(prompt, rollouts, "cpu")
    assert inputs.tolist() == [[1, 2, 3, 4, 5], [1, 2, 3, 0, 0]]
    assert targets.tolist() == [[-1, -1, 4, -1, 6], [-1, -1, 7, -1, -1]]


def test_rollout_seed_is_a_function_of_seed_and_position():
    assert rollout_seed(42, 7) == rollout_seed(42, 7)
    assert len({rollout_seed(s, p) for s in (0, 1, 42) for p in range(100)}) == 300


# -----------------------------------------------------------------------------
# Against the engine and a full backward

@pytest.fixture
def engine(byte_tok):
    return Engine(tiny_gpt(byte_tok.get_vocab_size(), depth=1, seq_len=64, perturb=0.5), byte_tok)


def test_sample_group_matches_generate_batch_and_keeps_the_stop(engine, byte_tok):
    prompt = byte_tok.render_for_completion({"messages": [{"role": "user", "content": "hi"}]})
    # A stop token that is likely enough to be sampled within 12 tokens by some of the rows.
    with torch.no_grad():
        engine.model.lm_head.weight[engine.assistant_end] += 0.3
    rollouts = sample_group(engine, prompt, 6, max_tokens=12, temperature=1.0, seed=3)
    rows, masks = engine.generate_batch(prompt, num_samples=6, max_tokens=12, temperature=1.0, seed=3)
    assert any(r.stopped for r in rollouts) and not all(r.stopped for r in rollouts)
    for rollout, row, mask in zip(rollouts, rows, masks):
        assert rollout.stopped == (rollout.tokens[-1] in engine.stop_tokens)     # <|assistant_end|> or <|bos|>
        kept = rollout.tokens[:-1] if rollout.stopped else rollout.tokens
        assert prompt + kept == row and rollout.mask[:len(kept)] == mask[len(prompt):]
        assert rollout.reply == byte_tok.decode(kept) and len(rollout.tokens) <= 12


def test_chunked_backward_equals_one_shot(engine):
    model = engine.model
    prompt = [5, 6, 7, 8]
    rollouts = [Rollout([10, 11, 12], [1, 1, 1], "", False), Rollout([13], [1], "", False),
                Rollout([14, 15, 16, 17], [1, 0, 0, 1], "", False)]
    adv = torch.tensor([0.6, -0.3, -0.3])
    grads = []
    for batch in (3, 1):
        model.zero_grad(set_to_none=True)
        policy_gradient_backward(model, prompt, rollouts, adv, 20, batch, torch.autocast("cpu", enabled=False))
        grads.append([p.grad.clone() for p in model.parameters()])
    # The reference: logp from full logits, by hand.
    model.zero_grad(set_to_none=True)
    inputs, targets = pad_rollouts(prompt, rollouts, "cpu")
    logp = torch.log_softmax(model(inputs), dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    policy_loss(logp, targets >= 0, adv, 20).backward()
    for chunked, one_shot, reference in zip(*grads, [p.grad for p in model.parameters()]):
        torch.testing.assert_close(chunked, one_shot, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(one_shot, reference, rtol=1e-4, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in grads[0])


# -----------------------------------------------------------------------------
# The script, in-process, on a tiny sft checkpoint and a hand-made reward

class Parity(Task):
    """Questions 'q0', 'q1', ...; a reply earns 1 when the sum of its UTF-8 bytes is even: about half the replies
    of a random model, so groups have mixed rewards and the policy gradient is not zero."""
    name = "Parity"
    eval_split = None

    def __init__(self, split, size):
        super().__init__(split)
        self.size = size

    def num_examples(self):
        return self.size

    def get_example(self, index):
        return {"messages": [{"role": "user", "content": f"q{index}"}, {"role": "assistant", "content": "x"}]}

    def evaluate(self, conversation, completion):
        return sum(completion.encode()) % 2 == 0


@pytest.fixture
def sft_checkpoint(base_dir, byte_tok, monkeypatch):
    model = tiny_gpt(byte_tok.get_vocab_size(), depth=1, seq_len=64, perturb=0.5)
    directory = base_dir / "base" / "chatsft_checkpoints" / "d1"
    save_checkpoint(str(directory), 5, model.state_dict(), None, {"step": 5, "model_config": asdict(model.config)})
    monkeypatch.setattr(chat_rl, "build_tasks",
                        lambda args: (TaskMixture([Parity("train", 50)], seed=args.seed), [Parity("test", 3)]))
    return model


TINY = ["--max-tokens", "6", "--num-samples", "4", "--examples-per-step", "2", "--eval-problems", "3",
        "--eval-samples", "2", "--eval-every", "-1", "--device-type", "cpu", "--init-lr-frac", "1"]


def rl_weights(base_dir, step):
    model_data, optim_data, meta = load_checkpoint(str(base_dir / "base" / "chatrl_checkpoints" / "d1"), step, "cpu",
                                                   load_optimizer=True)
    return model_data, optim_data, meta


def test_script_trains_and_saves(sft_checkpoint, base_dir, capsys):
    out = chat_rl.main(TINY + ["--num-iterations", "2", "--eval-every", "1", "--eval-greedy"])
    assert out["step"] == 2 and len(out["rewards"]) == 2 and out["loader_state"] == {"next_example": 4}
    assert [e["step"] for e in out["evals"]] == [0, 1, 2] and out["final"] == out["evals"][-1:]
    assert {"pass@1", "pass@2", "greedy pass@1"} <= set(out["final"][0]) and out["final"][0]["n"] == 3
    model_data, optim_data, meta = rl_weights(base_dir, 2)
    assert meta["loop_state"]["step"] == 2 and meta["loop_state"]["loader_state"] == {"next_example": 4}
    assert meta["evals"] == out["evals"] and meta["source"]["stage"] == "sft" and meta["source"]["step"] == 5
    assert len(optim_data) == 2
    changed = [not torch.equal(model_data[k], v) for k, v in sft_checkpoint.state_dict().items()]
    assert any(changed), "two RL steps with mixed rewards left every weight as it was"
    log = capsys.readouterr().out
    assert "rollouts/s" in log and "held-out Parity (n 3): pass@1" in log and "chatrl_checkpoints/d1" in log


def test_time_budget(sft_checkpoint, base_dir):
    out = chat_rl.main(TINY + ["--time-budget", "0.003"])         # 0.18 s of RL steps, however many that is
    assert out["step"] >= 1 and out["train_time"] >= 0.18 and [e["step"] for e in out["evals"]] == [out["step"]]
    assert rl_weights(base_dir, out["step"])[2]["num_iterations"] is None
    with pytest.raises(SystemExit, match="from a --time-budget run: resume it with --time-budget"):
        chat_rl.main(TINY + ["--num-iterations", "9", "--resume", "latest"])


def test_resume_equals_straight_run(sft_checkpoint, base_dir):
    straight = chat_rl.main(TINY + ["--num-iterations", "4", "--save-every", "2"])
    final_weights, final_optim, _ = rl_weights(base_dir, 4)
    resumed = chat_rl.main(TINY + ["--num-iterations", "4", "--resume", "2"])
    assert resumed["step"] == 4 and resumed["rewards"] == straight["rewards"][2:]
    assert resumed["loader_state"] == straight["loader_state"] and resumed["final"] == straight["final"]
    weights, _, meta = rl_weights(base_dir, 4)
    for name, tensor in final_weights.items():
        torch.testing.assert_close(weights[name], tensor, rtol=0, atol=0, msg=name)
    # The control: another sampling seed from the same checkpoint ends elsewhere, so the comparison can fail.
    chat_rl.main(TINY + ["--num-iterations", "4", "--resume", "2", "--seed", "7"])
    other, _, _ = rl_weights(base_dir, 4)
    assert any(not torch.equal(other[k], v) for k, v in final_weights.items())


def one_line_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        chat_rl.main(argv)
    if stop.value.code == 2:                               # a flag: argparse's one line on stderr
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]
    return str(stop.value.code)                            # a UserError: its message is the exit code


def test_bad_input_gives_one_line(base_dir, capsys):
    assert "--num-samples must be at least 2" in one_line_error(["--num-samples", "1"], capsys)
    assert "--temperature 0 samples the same reply" in one_line_error(["--temperature", "0"], capsys)
    assert "no run length" in one_line_error(["--time-budget", "-1"], capsys)
    assert "--arithmetic-scale must be at least 1" in one_line_error(["--arithmetic-scale", "0.5"], capsys)
    assert "--source: invalid choice: 'final'" in one_line_error(["--source", "final"], capsys)
    line = one_line_error(["--device-type", "cpu"], capsys)             # no sft checkpoint in the temp base dir
    assert line.startswith("error: no checkpoints in ") and "chatsft_checkpoints" in line


def test_training_arithmetic_is_the_larger_scale_and_both_scales_are_held_out():
    """RL trains on problems with numbers up to 3x larger than SFT's (where SFT is sometimes right) and checks both."""
    mixture, held_out = chat_rl.build_tasks(chat_rl.parse_args(["--no-spelling-bee", "--gsm8k", "off"]))
    assert [t.name for t in mixture.tasks] == ["Arithmetic-x3"] and not mixture.tasks[0].is_evaluated_split
    assert [(t.name, t.split) for t in held_out] == [("Arithmetic-x3", "test"), ("Arithmetic", "test")]
    assert chat_eval.TASKS["Arithmetic-x3"]().name == "Arithmetic-x3"     # chat_eval scores what RL trains on
    _, held_out = chat_rl.build_tasks(chat_rl.parse_args(["--no-spelling-bee", "--gsm8k", "off",
                                                          "--arithmetic-scale", "1"]))
    assert [t.name for t in held_out] == ["Arithmetic"]
