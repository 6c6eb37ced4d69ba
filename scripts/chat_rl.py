"""
Reinforcement learning on math word problems: on-policy REINFORCE from the SFT model (as public nanochat's chat_rl).
Each step samples --num-samples replies to each of --examples-per-step training questions with the KV-cache engine,
rewards a reply 1 if its final number ('#### N') is right, and takes one gradient step on
-(sum of logp(sampled token) * (reward - the group's mean reward)) / (tokens sampled in the step). Held-out pass@1
and pass@k are measured every --eval-every steps and at the end.

CPU, a depth-4 SFT model, 5 minutes of RL steps (evals excluded), then a look at the result:
    python -m scripts.chat_rl
    python -m scripts.chat_eval -i rl -a Arithmetic-x3,Arithmetic --temperature 1 --max-tokens 128
A fixed number of steps, more samples per question, from the mid-training checkpoint instead of SFT:
    python -m scripts.chat_rl --num-iterations 200 --num-samples 16 --source mid
Resume the latest RL checkpoint of the same model (or --resume 120 for a given step):
    python -m scripts.chat_rl --resume latest
One GPU: python -m scripts.chat_rl --device-type cuda --examples-per-step 16 --max-tokens 256

RL runs in one process (no torchrun: under torchrun it stops with an error). Rollouts are batch-k decoding of one
prompt, which a single process keeps busy on every core.

Data: training questions are tasks.arithmetic.ArithmeticProblems('train', scale=3) (generated; a question is train
or test by a hash of its text, so held-out questions never appear in training; scale 3: numbers up to three times
larger than mid and SFT train on, which a small SFT model solves only sometimes, while a group whose replies all pass
or all fail teaches nothing) and SpellingBee('train') letter counting (its test words are never trained on;
--no-spelling-bee leaves it out), mixed with GSM8K's train split when the Hugging Face hub answers (--gsm8k auto;
offline GSM8K has no train split and RL goes on without it, and says so). Held out: ArithmeticProblems('test') at
scale 3 and at scale 1, SpellingBee('test'), and GSM8K test when GSM8K trains. pass@1 is the mean over the k samples
per problem, pass@k whether any passed; --eval-greedy adds greedy pass@1.

Checkpoints: <base>/chatrl_checkpoints/<model tag>/ (model tag = the source's, e.g. d4); their meta holds the loop
state (step, train time, position in the shuffled training questions) and every held-out evaluation so far.
Ctrl-C saves one and exits. Sampling is seeded by (--seed, position of the question in the run), so a resumed run
samples exactly what the uninterrupted run would have.
"""

import argparse
import os
import time
from dataclasses import asdict

import torch

from nanochat import cli, report
from nanochat.chat_eval import run_generative
from nanochat.checkpoint_manager import STAGE_DIRS, locate_checkpoint, load_model
from nanochat.common import (UserError, autocast_ctx, compute_cleanup, compute_init, dtype_reason, get_base_dir,
                             get_wandb, peak_rss_bytes, print0)
from nanochat.engine import Engine
from nanochat.optim import set_schedule
from nanochat.rl import group_advantages, policy_gradient_backward, rollout_seed, sample_group
from nanochat.train import CtrlC, LoopState, RunLength, every, resume, save_training_checkpoint
from tasks.arithmetic import LARGE_NUMBERS_SCALE


def parse_args(argv=None):
    p = cli.parser("Reinforcement learning (REINFORCE) of a chat model on math word problems", __doc__)
    cli.add_checkpoint_args(p, default_source="sft")
    # length
    p.add_argument("--num-iterations", type=cli.int_or_off, default=-1,
                   help="RL steps (-1 = run for --time-budget minutes instead)")
    p.add_argument("--time-budget", type=cli.float_or_off, default=5,
                   help="minutes of RL steps (evals excluded) when --num-iterations is -1; the LR decay follows "
                        "the clock")
    # rollouts
    p.add_argument("--examples-per-step", type=cli.positive_int, default=4, help="training questions per step")
    p.add_argument("--num-samples", type=cli.positive_int, default=8,
                   help="replies sampled per question (the group whose mean reward is the baseline; >= 2)")
    cli.add_sampling_args(p, temperature_default=1.0)
    p.set_defaults(max_tokens=128)
    p.add_argument("--device-batch-size", type=cli.positive_int, default=8,
                   help="replies per forward/backward of the policy-gradient pass")
    p.add_argument("--train-problems", type=cli.positive_int, default=20000,
                   help="generated training questions per task (the stream wraps around after all of them)")
    p.add_argument("--arithmetic-scale", type=float, default=LARGE_NUMBERS_SCALE,
                   help="the training arithmetic's given numbers range up to this many times larger than those mid "
                        "and SFT train on (1 = the same problems): SFT solves those only sometimes, which is what RL "
                        "learns from; held out: this scale and scale 1")
    p.add_argument("--spelling-bee", action=argparse.BooleanOptionalAction, default=True,
                   help="mix SpellingBee letter counting into the training questions (and the held-out ones)")
    p.add_argument("--gsm8k", choices=["auto", "on", "off"], default="auto",
                   help="mix GSM8K's train split into the training questions: auto = when the hub answers, on = "
                        "required, off = arithmetic only")
    cli.add_learning_rate_args(p, init_lr_frac=0.05)
    # evaluation, saving
    p.add_argument("--eval-every", type=cli.int_or_off, default=50,
                   help="held-out pass@1/pass@k at step 0, every N steps and at the end (-1 = at the end only)")
    p.add_argument("--eval-problems", type=cli.positive_int, default=32,
                   help="held-out problems per task and evaluation (a fixed seeded subset: the same ones each time)")
    p.add_argument("--eval-samples", type=cli.positive_int, default=4,
                   help="k of pass@k: replies sampled per held-out problem at --temperature")
    p.add_argument("--eval-greedy", action="store_true", help="also measure greedy pass@1 at each evaluation")
    p.add_argument("--save-every", type=cli.int_or_off, default=-1, help="checkpoint every N steps (-1 = end only)")
    p.add_argument("--resume", default="", help="resume from 'latest' or a step number of this model's RL checkpoints")
    p.add_argument("--run", default="dummy", help="wandb run name ('dummy' = no wandb)")
    cli.add_system_args(p)
    args = p.parse_args(argv)
    if args.num_samples < 2:
        p.error("--num-samples must be at least 2: the advantage is a reply's reward relative to its group's mean")
    if args.arithmetic_scale < 1:
        p.error(f"--arithmetic-scale must be at least 1, got {args.arithmetic_scale:g}")
    if args.temperature == 0:
        p.error("--temperature 0 samples the same reply num_samples times: every advantage would be 0")
    if args.num_iterations == -1 and args.time_budget == -1:
        p.error("no run length: give --num-iterations or --time-budget")
    return args


# -----------------------------------------------------------------------------
# Tasks (a function, so tests can put hand-made tasks in)

def build_tasks(args) -> tuple:
    """-> (training mixture, held-out tasks): arithmetic at --arithmetic-scale, SpellingBee, GSM8K train when available;
    held out: their test splits, and arithmetic at scale 1 too."""
    from tasks.arithmetic import ArithmeticProblems
    from tasks.common import TaskMixture
    scale = args.arithmetic_scale
    train, held_out = [ArithmeticProblems("train", size=args.train_problems, seed=args.seed, scale=scale)], []
    if args.spelling_bee:
        from tasks.spellingbee import SpellingBee
        train.append(SpellingBee("train", size=args.train_problems, seed=args.seed))
        held_out.append(SpellingBee("test", size=args.eval_problems, seed=args.seed))
    if args.gsm8k != "off":
        from tasks.gsm8k import GSM8K
        try:
            gsm8k = GSM8K("train")
        except ValueError as e:
            if args.gsm8k == "on":
                raise UserError(f"--gsm8k on: {e}") from None
            print0(f"note: RL trains without GSM8K: {e}")
        else:
            train.append(gsm8k)
            held_out.append(GSM8K("test"))
    held_out[:0] = [ArithmeticProblems("test", size=args.eval_problems, seed=args.seed, scale=s)
                    for s in dict.fromkeys([scale, 1])]      # the trained scale, and SFT's (does RL keep it?)
    return TaskMixture(train, seed=args.seed), held_out


def question_at(mixture, position: int) -> tuple:
    """(task, conversation) of the position-th question of the run (the shuffled mixture, wrapped around)."""
    task_index, index = mixture.index[position % len(mixture)]
    task = mixture.tasks[task_index]
    return task, task[index]


def main(argv=None) -> dict:
    t_start = time.time()
    args = parse_args(argv)
    user_config = vars(args).copy()

    # -------------------------------------------------------------------------
    # Compute: one process
    compute = compute_init(args.device_type, seed=args.seed)
    if compute.ddp:
        raise UserError("chat_rl runs in one process: start it with python -m scripts.chat_rl, not torchrun")
    device, dtype = compute.device, compute.dtype
    autocast = autocast_ctx(device, dtype)
    print0(f"compute: {dtype_reason(device)}, {torch.get_num_threads()} threads")

    # -------------------------------------------------------------------------
    # Model: the source checkpoint (sft by default); RL checkpoints go beside it under chatrl_checkpoints
    source, source_dir, source_step = locate_checkpoint(args.source, args.model_tag, args.step)
    model_tag = os.path.basename(source_dir)
    model, tokenizer, source_meta = load_model(source, device, phase="train", model_tag=model_tag, step=source_step)
    model_config = asdict(model.config)
    engine = Engine(model, tokenizer, autocast=autocast)
    checkpoint_dir = os.path.join(get_base_dir(), STAGE_DIRS["rl"], model_tag)
    print0(f"model: {source} {model_tag} step {source_step} from {source_dir}: {model_config}")

    # -------------------------------------------------------------------------
    # Tasks
    train_tasks, held_out = build_tasks(args)
    print0(f"training questions: {train_tasks.tasks}, {len(train_tasks)} in all; held out: {held_out}")

    # -------------------------------------------------------------------------
    # Optimizers, run length, loop state (fresh, or resumed)
    frac = args.init_lr_frac
    optimizers = model.setup_optimizers(unembedding_lr=args.unembedding_lr * frac,
                                        embedding_lr=args.embedding_lr * frac, matrix_lr=args.matrix_lr * frac)
    length = RunLength.from_flags(time_budget_min=args.time_budget if args.num_iterations == -1 else -1,
                                  num_iterations=args.num_iterations)
    loop, evals = LoopState(loader_state={"next_example": 0}), []
    if args.resume:
        loop, meta = resume(checkpoint_dir, args.resume, model, optimizers, model_config, compute)
        evals = meta.get("evals", [])
        if not length.time_budget:      # a resumed run keeps the length (and so the LR schedule) it started with
            if meta["num_iterations"] is None:
                raise UserError(f"step {loop.step} in {checkpoint_dir} is from a --time-budget run: resume it with "
                                "--time-budget (the LR schedule follows its clock)")
            if meta["num_iterations"] != length.num_iterations:
                print0(f"note: the resumed run keeps its --num-iterations {meta['num_iterations']}")
            length.num_iterations = meta["num_iterations"]
    rollouts_per_step = args.examples_per_step * args.num_samples
    print0(f"RL: {args.examples_per_step} questions x {args.num_samples} samples = {rollouts_per_step} rollouts per "
           f"step, up to {args.max_tokens} tokens each; length: {length.description}")

    # -------------------------------------------------------------------------
    # Held-out evaluation and saving

    def evaluate(step: int) -> list[dict]:
        model.eval()
        results = []
        for task in held_out:
            sampled = run_generative(engine, task, num_samples=args.eval_samples, max_new_tokens=args.max_tokens,
                                     temperature=args.temperature, top_k=args.top_k or None,
                                     max_problems=args.eval_problems, seed=args.seed, progress=False).summary()
            k = args.eval_samples
            result = {"step": step, "task": task.name, "n": sampled["n"], "k": k,
                      "pass@1": sampled.get("sample_accuracy", sampled["accuracy"]), f"pass@{k}": sampled["accuracy"]}
            if args.eval_greedy:
                greedy = run_generative(engine, task, max_new_tokens=args.max_tokens, temperature=0.0,
                                        max_problems=args.eval_problems, progress=False).summary()
                result["greedy pass@1"] = greedy["accuracy"]
            results.append(result)
        model.train()
        return results

    def save(reason: str):
        meta = {"model_config": model_config, "user_config": user_config, "num_iterations": length.num_iterations,
                "dtype": str(dtype), "source": {"stage": source, "dir": source_dir, "step": source_step},
                "evals": evals}
        save_training_checkpoint(checkpoint_dir, loop, model, optimizers, compute, meta, reason)

    # -------------------------------------------------------------------------
    # The RL loop
    wandb_run = get_wandb(args.run, "nanochat-rl", user_config)
    rewards_per_step = []
    model.train()
    with CtrlC() as ctrl_c:
        while True:
            stopping = ctrl_c.requested        # read once: the handler may set it at any moment
            last_step = length.done(loop.step, loop.train_time)
            eval_now = (not stopping and (last_step or every(loop.step, args.eval_every)
                                          or (loop.step == 0 and args.eval_every > 0))
                        and not any(e["step"] == loop.step for e in evals))     # (a resumed step has its eval)
            save_now = last_step or stopping or every(loop.step, args.save_every)

            if eval_now:
                t0 = time.time()
                for result in evaluate(loop.step):
                    evals.append(result)
                    k = result["k"]
                    greedy = f" | greedy pass@1 {result['greedy pass@1']:.3f}" if "greedy pass@1" in result else ""
                    print0(f"step {loop.step:05d} | held-out {result['task']} (n {result['n']}): pass@1 "
                           f"{result['pass@1']:.3f} | pass@{k} {result[f'pass@{k}']:.3f}{greedy} | "
                           f"eval {time.time() - t0:.1f}s")
                    wandb_run.log({"step": loop.step, **{f"{result['task']}/{name}": value for name, value
                                                         in result.items() if name.startswith(("pass", "greedy"))}})
            if save_now:
                save("end of training" if last_step else "Ctrl-C" if stopping else f"--save-every {args.save_every}")
            if last_step or stopping:
                break

            # One RL step: the LR schedule, rollouts and their rewards, the policy gradient of the groups that
            # have something to teach, one optimizer step.
            t0 = time.time()
            lrm = set_schedule(optimizers, loop.step, length.progress(loop.step, loop.train_time),
                               warmup_ratio=0.0, warmdown_ratio=1.0)
            groups, rewards = [], []
            model.eval()
            for _ in range(args.examples_per_step):
                position = loop.loader_state["next_example"]
                task, conversation = question_at(train_tasks, position)
                prompt, max_tokens, _ = engine.fit_prompt(conversation["messages"], args.max_tokens)
                rollouts = sample_group(engine, prompt, args.num_samples, max_tokens, args.temperature,
                                        args.top_k or None, seed=rollout_seed(args.seed, position))
                group_rewards = [float(task.evaluate(conversation, r.reply)) for r in rollouts]
                groups.append((prompt, rollouts, group_advantages(group_rewards)))
                rewards += group_rewards
                loop.loader_state = {"next_example": position + 1}
            model.train()
            sampled_tokens = sum(r.num_sampled for _, rollouts, _ in groups for r in rollouts)
            learning = [g for g in groups if g[2].abs().sum() > 0]      # all-equal rewards: zero advantage, skip
            loss = 0.0
            for prompt, rollouts, advantages in learning:
                loss += policy_gradient_backward(model, prompt, rollouts, advantages, sampled_tokens,
                                                 args.device_batch_size, autocast)
            if learning:
                for opt in optimizers:
                    opt.step()
                model.zero_grad(set_to_none=True)
            dt = time.time() - t0
            loop.step += 1
            loop.train_time += dt

            mean_reward = sum(rewards) / len(rewards)
            rewards_per_step.append(mean_reward)
            where, eta = length.where_and_eta(loop.step, loop.train_time, dt)
            skipped = len(groups) - len(learning)
            print0(f"step {loop.step:05d} ({where}) | reward {mean_reward:.3f} | groups trained {len(learning)}/"
                   f"{len(groups)}" + (f" ({skipped} all-equal: skipped)" if skipped else "") +
                   f" | tokens {sampled_tokens:,} | rollouts/s {len(rewards) / dt:.1f} | lrm {lrm:.3f} | "
                   f"dt {dt:.2f}s | eta {eta / 60:.1f}m")
            wandb_run.log({"step": loop.step, "train/reward": mean_reward, "train/loss": loss, "train/lrm": lrm,
                           "train/dt": dt, "train/sampled_tokens": sampled_tokens})

    final = [e for e in evals if e["step"] == loop.step]
    print0(f"done: {loop.step} steps, {loop.train_time / 60:.2f} min of RL, peak RSS {peak_rss_bytes() / 2**30:.2f} "
           f"GiB; checkpoints in {checkpoint_dir}")
    wandb_run.finish()
    report.record("chat_rl", settings=user_config, seconds=time.time() - t_start,
                  history={"step": list(range(1, len(rewards_per_step) + 1)), "reward": rewards_per_step},
                  metrics={"steps": loop.step, "train_minutes": loop.train_time / 60,
                           **{f"{e['task']} {name}": value for e in final for name, value in e.items()
                              if name.startswith(("pass@", "greedy"))}})
    compute_cleanup()
    return {"step": loop.step, "train_time": loop.train_time, "rewards": rewards_per_step, "evals": evals,
            "final": final, "loader_state": loop.loader_state, "checkpoint_dir": checkpoint_dir}


if __name__ == "__main__":
    main()
