"""
The pieces of on-policy REINFORCE that scripts/chat_rl.py drives: sample a group of replies to one question,
advantages relative to the group's mean reward, and the token-normalised policy-gradient loss.

One RL step, for each of its questions:

    rollouts = sample_group(engine, prompt, num_samples=8, max_tokens=128, temperature=1.0, top_k=50, seed=...)
    rewards = [float(task.evaluate(conversation, r.reply)) for r in rollouts]
    advantages = group_advantages(rewards)          # r - mean(r): all equal -> all zero -> nothing to learn
    policy_gradient_backward(model, prompt, rollouts, advantages, num_tokens)   # num_tokens: the whole step's

The loss is -(sum over sampled tokens of logp(token) * advantage of its reply) / (sampled tokens in the step), as in
public nanochat: no KL term, no ratio clipping (one gradient step per batch of rollouts, so the policy that sampled
is the policy that is updated). Tokens the model did not choose (the prompt, calculator outputs forced in by the
engine) carry no gradient; the stop token it sampled does, so ending the answer is learned too.

Tests: pytest tests/test_chat_rl.py -q
"""

from dataclasses import dataclass

import torch

from nanochat.gpt import IGNORE_INDEX


@dataclass
class Rollout:
    """One sampled reply: the tokens after the prompt (the stop token included when the model chose one), a mask
    that is 1 on tokens the model sampled and 0 on forced tool output, and the reply's text (stop token excluded)."""
    tokens: list[int]
    mask: list[int]
    reply: str
    stopped: bool          # ended with <|assistant_end|> / <|bos|> (not cut at max_tokens or the context)

    @property
    def num_sampled(self) -> int:
        return sum(self.mask)


def rollout_seed(seed: int, position: int) -> int:
    """The sampler seed of the question at `position` in the run's stream of training questions: a pure function
    of (seed, position), so a resumed run samples exactly what the uninterrupted run would have."""
    return (seed * 1_000_003 + position) % (2 ** 63)


def sample_group(engine, prompt: list[int], num_samples: int, max_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, seed: int = 0) -> list[Rollout]:
    """num_samples replies to one prompt (one prefill, then a batch of num_samples rows in the KV cache).

    Engine.generate_batch drops the stop token; RL keeps it, because the stop is a choice the reward depends on
    (a reply that rambles on past its '#### N' may write another answer)."""
    tokens = [[] for _ in range(num_samples)]
    masks = [[] for _ in range(num_samples)]
    stopped = [False] * num_samples
    for column, column_masks in engine.generate(prompt, num_samples, max_tokens=max_tokens, temperature=temperature,
                                                top_k=top_k, seed=seed):
        for i, (token, mask) in enumerate(zip(column, column_masks)):
            if stopped[i]:
                continue                     # padding after this row's stop
            tokens[i].append(token)
            masks[i].append(mask)
            stopped[i] = token in engine.stop_tokens
    decode = engine.tokenizer.decode
    return [Rollout(t, m, decode(t[:-1] if s else t), s) for t, m, s in zip(tokens, masks, stopped)]


# -----------------------------------------------------------------------------
# The math

def group_advantages(rewards) -> torch.Tensor:
    """Each reply's reward minus the mean reward of its group (the replies to the same question): better than its
    siblings is pushed up, worse is pushed down, and a group whose rewards are all equal teaches nothing (zeros).
    No division by the standard deviation (as public nanochat): a group with one lucky success out of 8 then
    moves the policy as much as the reward says, not 3x more."""
    rewards = torch.as_tensor(rewards, dtype=torch.float32)
    if rewards.ndim != 1 or rewards.numel() == 0:
        raise ValueError(f"rewards must be a non-empty 1-D list, got shape {tuple(rewards.shape)}")
    return rewards - rewards.mean()


def policy_loss(logp: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor,
                num_tokens: int | None = None) -> torch.Tensor:
    """The REINFORCE loss -(sum over b, t of mask[b, t] * logp[b, t] * advantages[b]) / num_tokens.

    logp (B, T): log-probability of each target token under the model; mask (B, T): 1 where the token was sampled
    by the model (0 on the prompt, forced tool output and padding: no gradient reaches those); advantages (B,): one
    per reply. num_tokens: the normaliser, by default mask.sum(); a step that backpropagates its groups one at a time
    passes the number of sampled tokens of the whole step, so the sum of the parts is the step's loss."""
    mask = mask.to(logp.dtype)
    if num_tokens is None:
        num_tokens = int(mask.sum().item())
    weighted = logp * mask * advantages.to(logp.dtype).unsqueeze(1)
    return -weighted.sum() / max(1, num_tokens)


def pad_rollouts(prompt: list[int], rollouts: list[Rollout], device) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) of shape (B, T) for a forward pass over prompt + reply: targets are the next tokens,
    IGNORE_INDEX (-1) wherever the token was not sampled (prompt, tool output) and on the right padding."""
    sequences = [prompt + r.tokens for r in rollouts]
    trained = [[0] * len(prompt) + r.mask for r in rollouts]
    T = max(len(s) for s in sequences) - 1
    inputs = torch.zeros(len(rollouts), T, dtype=torch.long)
    targets = torch.full((len(rollouts), T), IGNORE_INDEX, dtype=torch.long)
    for row, (seq, keep) in enumerate(zip(sequences, trained)):
        n = len(seq) - 1
        inputs[row, :n] = torch.tensor(seq[:-1])
        target = torch.tensor(seq[1:])
        targets[row, :n] = torch.where(torch.tensor(keep[1:], dtype=torch.bool), target, IGNORE_INDEX)
    return inputs.to(device), targets.to(device)


def policy_gradient_backward(model, prompt: list[int], rollouts: list[Rollout], advantages: torch.Tensor,
                             num_tokens: int, device_batch_size: int, autocast) -> float:
    """Accumulate the gradient of policy_loss for one group into the model's .grad, device_batch_size replies per
    forward/backward. Returns this group's share of the step's loss (a float, for the log)."""
    device = model.get_device()
    total = 0.0
    for start in range(0, len(rollouts), device_batch_size):
        chunk = slice(start, start + device_batch_size)
        inputs, targets = pad_rollouts(prompt, rollouts[chunk], device)
        with autocast:
            nll = model(inputs, targets, loss_reduction="none")          # (B, T), 0 where targets == -1
        loss = policy_loss(-nll.float(), targets >= 0, advantages[chunk].to(device), num_tokens)
        loss.backward()
        total += loss.item()
    return total
