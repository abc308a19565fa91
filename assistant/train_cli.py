"""``assistant train CONFIG`` and ``assistant eval``: train the fusion core, measure it.

Added to the CLI by :func:`add_commands` (listed in ``cli.FEATURE_MODULES``). The work is
done in ``models.train`` and ``models.evaluate``; this module only builds the end-to-end
``answer_fn`` from the assistant (``models/`` never imports the application).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path

from assistant.errors import ConfigError, InputError, ModelError

DEFAULT_SPOKEN = Path("configs/clevr_spoken.json")


def add_commands(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("train", parents=parents, help="train the fusion core on Sort-of-CLEVR (see docs/MODEL_CARD.md)")
    p.add_argument("train_config", metavar="CONFIG", help="training config (JSON), e.g. configs/fusion_cpu.json")
    p.add_argument("--output-dir", help="override the config's output_dir")
    p.add_argument("--no-resume", action="store_true", help="start over even if the output folder has a checkpoint")
    p.set_defaults(handler=cmd_train)

    q = sub.add_parser("eval", parents=parents, help="accuracy per question type on held-out Sort-of-CLEVR scenes")
    q.add_argument("--per-type", type=int, default=50, help="questions per question type (default 50)")
    q.add_argument("--first-seed", type=int, default=1_000_000, help="first held-out scene seed")
    q.add_argument("--spoken", default=None,
                   help=f"spoken-question transcripts (JSON from models.train --make-spoken; default {DEFAULT_SPOKEN} if present; '' for none)")
    q.add_argument("--paraphrase", action="store_true", help="ask paraphrases instead of the canonical forms")
    q.add_argument("--only", choices=("typed", "spoken"), help="run only the typed or only the spoken questions")
    q.add_argument("--head-only", action="store_true", help="answer head only (no generator replies)")
    q.add_argument("--output", help="also write the results as JSON here")
    q.add_argument("--json", action="store_true", help="print JSON instead of the table")
    q.set_defaults(handler=cmd_eval)


def cmd_train(args: argparse.Namespace) -> int:
    from models.train import TrainConfig, train

    overrides = {"output_dir": args.output_dir} if args.output_dir else {}
    try:
        cfg = TrainConfig.from_file(args.train_config, **overrides)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    try:
        final = train(cfg, resume=not args.no_resume, log=lambda m: print(m, file=sys.stderr))
    except FileNotFoundError as e:
        raise InputError(str(e)) from e
    print(final)
    return 0


def make_answer_fn(bot):
    """Each question in a fresh conversation: (question, image) -> the generator's reply."""

    def answer(question: str, image) -> str:
        bot.reset()
        return bot.ask(question, images=[image]).text

    return answer


def cmd_eval(args: argparse.Namespace) -> int:
    from models.evaluate import format_table, run_evaluation, save_results
    from models.train import load_spoken

    if args.spoken is None:  # not given: the repository's transcripts when run from a checkout
        spoken_path = str(DEFAULT_SPOKEN) if DEFAULT_SPOKEN.is_file() else ""
    else:  # given; "" turns the spoken evaluation off
        spoken_path = args.spoken
    if args.only == "spoken" and not spoken_path:
        raise InputError(f"--only spoken needs spoken-question transcripts ({DEFAULT_SPOKEN} is not here; pass --spoken FILE)")
    try:
        spoken = load_spoken(spoken_path, "eval") if spoken_path else None
    except FileNotFoundError as e:
        raise InputError(str(e)) from e
    bot = args.load_bot()
    core = getattr(bot, "fusion", None)
    if core is None and args.head_only:
        raise ModelError("no trained fusion core is loaded (see `assistant models`), so there is no answer head to evaluate")

    def progress(name: str, i: int, n: int) -> None:
        if sys.stderr.isatty():
            print(f"\r{name}: {i}/{n}", end="" if i < n else "\n", file=sys.stderr, flush=True)

    results = run_evaluation(
        None if args.head_only else make_answer_fn(bot),
        core=core, image_encoder=bot.image_encoder,
        text_encoder=(lambda texts: bot.generator.embed_text(texts, max_tokens=core.cfg.max_text_tokens)) if core else None,
        first_seed=args.first_seed, n_per_type=args.per_type, spoken=spoken, paraphrase=args.paraphrase, progress=progress,
        variants=(args.only,) if args.only else ("typed", "spoken"),
    )
    meta = {"per_type": args.per_type, "first_seed": args.first_seed, "spoken": spoken_path, "paraphrase": args.paraphrase,
            "only": args.only,
            "models": [asdict(m) if is_dataclass(m) else str(m) for m in bot.models()]}
    if args.output:
        save_results(args.output, results, meta)
    if args.json:
        print(json.dumps({k: asdict(v) for k, v in results.items()}, indent=1))
    else:
        print(format_table(results))
    return 0
