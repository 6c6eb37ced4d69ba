"""
Supervised fine-tuning: one conversation per row, loss only on what the assistant writes (its text and its tool
calls; never the user's turns, the forced tool outputs or the padding), a small learning rate decaying linearly
to 0, and a periodic chat_eval on a few tasks with a small cap. One epoch by default.

CPU, from the latest mid-training checkpoint:
    python -m scripts.chat_sft
    python -m scripts.chat_sft --time-budget 4 --chat-eval-every 100
    python -m scripts.chat_sft --resume latest                 # continue after Ctrl-C or a crash
Straight from a base model (no mid-training): python -m scripts.chat_sft --source base
Every GPU of one machine: torchrun --standalone --nproc_per_node=8 -m scripts.chat_sft --device-batch-size 4

The mixture: ARC multiple choice (training splits; offline their validation splits), arithmetic word problems with
the calculator (and GSM8K's training split when the hub has it), SpellingBee and SpellWord, identity
conversations, general conversations (SmolTalk / offline ChitChat) and knowledge questions (tasks/knowledge.py:
Wikipedia, countries and news; left out with a note when their package is unavailable). None of it is a split
chat_eval scores. --sharegpt N adds N ShareGPT conversations (opt-in: that data states no license).
Checkpoints: <base>/chatsft_checkpoints/<model tag>/ (the loop is nanochat/train.py's; nanochat/finetune.py wires it).
"""

from nanochat import cli
from nanochat.finetune import add_chat_stage_args, chat_eval_tasks, run_chat_stage
from tasks.arc import ARC
from tasks.arithmetic import ArithmeticProblems
from tasks.common import TaskMixture, spread
from tasks.gsm8k import GSM8K
from tasks.identity import IdentityConversations
from tasks.knowledge import CountryQuestions, NewsQuestions, WikiQuestions, add_sharegpt, available_tasks
from tasks.smoltalk import SmolTalk
from tasks.spellingbee import SpellingBee, SpellWord

# Examples per source at --mixture-scale 1: about 8k conversations. Other seeds than mid-training's for the
# generated tasks, so SFT sees new problems.
SIZES = {"conversations": 1500, "spelling_bee": 800, "spell_word": 300, "identity": 300, "arithmetic": 2000,
         "wiki": 1500, "countries": 800, "news": 100, "val_conversations": 300}
SEED_OFFSET = 1000


def parse_args(argv=None):
    p = cli.parser("Fine-tune a chat model on conversations (loss on the assistant's tokens)", __doc__)
    add_chat_stage_args(p, source="mid", init_lr_frac=0.1, compile_default="off", eval_every=100,
                        chat_eval_every=200)
    p.add_argument("--examples-per-step", type=cli.positive_int, default=16,
                   help="conversations per optimizer step: a multiple of device batch (gradient accumulation)")
    return p.parse_args(argv)


def mixtures(scale: float, seed: int) -> tuple[TaskMixture, TaskMixture]:
    """(training mixture, validation mixture)."""
    n = {k: max(1, round(v * scale)) for k, v in SIZES.items()}
    gen_seed = seed + SEED_OFFSET
    train = [ARC("ARC-Easy", "train"), ARC("ARC-Challenge", "train"),
             ArithmeticProblems("train", size=n["arithmetic"], seed=gen_seed),
             SpellingBee("train", size=n["spelling_bee"], seed=gen_seed),
             SpellWord("train", size=n["spell_word"], seed=gen_seed),
             IdentityConversations(size=n["identity"], seed=gen_seed),
             spread(SmolTalk("train"), n["conversations"])]
    try:
        train.append(GSM8K("train"))
    except ValueError as e:          # offline: no GSM8K training split; the arithmetic problems stand in
        print(f"note: {e}")
    train += available_tasks([lambda: WikiQuestions(size=n["wiki"], seed=gen_seed),
                              lambda: CountryQuestions(size=n["countries"], seed=gen_seed),
                              lambda: NewsQuestions(size=n["news"], seed=gen_seed)])
    val = [spread(SmolTalk("test"), n["val_conversations"]),
           IdentityConversations(size=100, seed=gen_seed, split="validation")]
    return TaskMixture(train, seed=seed), TaskMixture(val, seed=seed)


def main(argv=None):
    args = parse_args(argv)
    train, val = mixtures(args.mixture_scale, args.seed)
    train = add_sharegpt(train, args.sharegpt, args.seed + SEED_OFFSET)
    eval_tasks = chat_eval_tasks(args.chat_eval_tasks) if args.chat_eval_every > 0 else None
    return run_chat_stage(args, "sft", train, val, packed=False, supervise="assistant",
                          rows_per_step=args.examples_per_step, warmdown_ratio=1.0, eval_tasks=eval_tasks)


if __name__ == "__main__":
    main()
