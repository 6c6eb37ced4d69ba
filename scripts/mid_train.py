"""
Mid-training: teach a base model the chat format, multiple choice, spelling and the calculator tool, on a seeded
mixture of conversations packed into full rows (every token is learned, as in pretraining). One epoch by default.

CPU, from the latest base checkpoint (a few minutes at depth 4; the mixture's numbers are printed at start-up):
    python -m scripts.mid_train
    python -m scripts.mid_train --time-budget 5                # at most 5 minutes of training steps
    python -m scripts.mid_train --resume latest                # continue after Ctrl-C or a crash
Bigger: python -m scripts.mid_train --mixture-scale 4 --num-epochs 2 --device-type cuda
Every GPU of one machine: torchrun --standalone --nproc_per_node=8 -m scripts.mid_train --device-batch-size 32

The mixture (sizes at --mixture-scale 1; hub data when the hub answers, registry packages offline):
conversations (SmolTalk / offline ChitChat), ARC and MMLU multiple choice on their training splits (offline: their
validation/dev splits; test is what chat_eval scores), SpellingBee and SpellWord, identity conversations,
arithmetic word problems with calculator calls, GSM8K's training split when the hub has it, and knowledge questions
(tasks/knowledge.py: Wikipedia, countries and news; left out with a note when their package is unavailable).
--sharegpt N adds N ShareGPT conversations (opt-in: that data states no license).
Checkpoints: <base>/mid_checkpoints/<model tag>/ (the loop is nanochat/train.py's; nanochat/finetune.py wires it).
"""

from nanochat import cli
from nanochat.common import UserError
from nanochat.finetune import add_chat_stage_args, chat_eval_tasks, run_chat_stage
from tasks.arc import ARC
from tasks.arithmetic import ArithmeticProblems
from tasks.common import TaskMixture, spread
from tasks.gsm8k import GSM8K
from tasks.identity import IdentityConversations
from tasks.knowledge import CountryQuestions, NewsQuestions, WikiQuestions, add_sharegpt, available_tasks
from tasks.mmlu import MMLU
from tasks.smoltalk import SmolTalk
from tasks.spellingbee import SpellingBee, SpellWord

# Examples per source at --mixture-scale 1: about 30k conversations, ~4M tokens.
SIZES = {"conversations": 8000, "mmlu": 2000, "spelling_bee": 4000, "spell_word": 1000, "identity": 1000,
         "arithmetic": 8000, "wiki": 6000, "countries": 3000, "news": 500, "val_conversations": 500,
         "val_identity": 100}


def parse_args(argv=None):
    p = cli.parser("Mid-train a base model on chat-format data", __doc__)
    add_chat_stage_args(p, source="base", init_lr_frac=1.0, compile_default="auto", eval_every=150,
                        chat_eval_every=-1)
    p.add_argument("--total-batch-size", type=cli.positive_int, default=8192,
                   help="tokens per optimizer step: a multiple of device batch x max seq len (gradient accumulation)")
    p.add_argument("--warmdown-ratio", type=cli.nonneg_float, default=0.2,
                   help="share of the run with linear LR decay to 0 (constant before)")
    return p.parse_args(argv)


def mixtures(scale: float, seed: int) -> tuple[TaskMixture, TaskMixture]:
    """(training mixture, validation mixture)."""
    n = {k: max(1, round(v * scale)) for k, v in SIZES.items()}
    train = [spread(SmolTalk("train"), n["conversations"]),
             ARC("ARC-Easy", "train"), ARC("ARC-Challenge", "train"), spread(MMLU("train"), n["mmlu"]),
             SpellingBee("train", size=n["spelling_bee"], seed=seed), SpellWord("train", size=n["spell_word"], seed=seed),
             IdentityConversations(size=n["identity"], seed=seed),
             ArithmeticProblems("train", size=n["arithmetic"], seed=seed)]
    try:
        train.append(GSM8K("train"))
    except ValueError as e:          # offline: no GSM8K training split; the arithmetic problems stand in
        print(f"note: {e}")
    train += available_tasks([lambda: WikiQuestions(size=n["wiki"], seed=seed),
                              lambda: CountryQuestions(size=n["countries"], seed=seed),
                              lambda: NewsQuestions(size=n["news"], seed=seed)])
    val = [spread(SmolTalk("test"), n["val_conversations"]),
           IdentityConversations(size=n["val_identity"], seed=seed, split="validation")]
    return TaskMixture(train, seed=seed), TaskMixture(val, seed=seed)


def main(argv=None):
    args = parse_args(argv)
    train, val = mixtures(args.mixture_scale, args.seed)
    train = add_sharegpt(train, args.sharegpt, args.seed)
    eval_tasks = chat_eval_tasks(args.chat_eval_tasks) if args.chat_eval_every > 0 else None

    def rows_per_step(T: int) -> int:
        if args.total_batch_size % T:
            raise UserError(f"--total-batch-size {args.total_batch_size} is not a multiple of the row length {T}")
        return args.total_batch_size // T

    return run_chat_stage(args, "mid", train, val, packed=True, supervise="all", rows_per_step=rows_per_step,
                          warmdown_ratio=args.warmdown_ratio, eval_tasks=eval_tasks)


if __name__ == "__main__":
    main()
