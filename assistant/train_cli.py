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

from assistant.errors import ConfigError, InputError, ModelError
from models.audio_format import SAMPLE_RATE


def add_commands(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("train", parents=parents, help="train the fusion core, MMGAN, MMRNN or the MVAE on Sort-of-CLEVR (see docs/MODEL_CARD.md)")
    p.add_argument("train_config", metavar="CONFIG", help="training config (JSON), e.g. configs/fusion_cpu.json, configs/mmgan_cpu.json or configs/mvae_cpu.json")
    p.add_argument("--output-dir", help="override the config's output_dir")
    p.add_argument("--no-resume", action="store_true", help="start over even if the output folder has a checkpoint")
    p.set_defaults(handler=cmd_train)

    q = sub.add_parser("eval", parents=parents, help="accuracy per question type on held-out Sort-of-CLEVR scenes")
    q.add_argument("--per-type", type=int, default=50, help="questions per question type (default 50)")
    q.add_argument("--first-seed", type=int, default=1_000_000, help="first held-out scene seed")
    q.add_argument("--paraphrase", action="store_true", help="ask paraphrases instead of the canonical forms")
    q.add_argument("--only", choices=("typed", "spoken", "describe"),
                   help="run only the typed questions, only the spoken ones, or only the descriptions (--describe)")
    q.add_argument("--describe", type=int, default=0, metavar="N",
                   help="also ask for a description of N held-out scenes (from --first-seed) and score it object by "
                        "object: colour, shape, position (default 0; 50 with --only describe)")
    q.add_argument("--voices", choices=("eval", "tuning", "both"), default="eval",
                   help="who speaks the spoken questions: the evaluation voices (default; never used for training "
                        "transcripts), the tuning voices the training transcripts were made with (for comparison), or both")
    q.add_argument("--compare", metavar="FILE",
                   help="results of an earlier run (--output) on the same questions, shown beside these "
                        "(e.g. the typed run, for the spoken / typed ratio)")
    q.add_argument("--head-only", action="store_true", help="answer head only (no generator replies)")
    q.add_argument("--output", help="also write the results as JSON here")
    q.add_argument("--json", action="store_true", help="print JSON instead of the table")
    q.set_defaults(handler=cmd_eval)


def cmd_train(args: argparse.Namespace) -> int:
    family = _family(args.train_config)
    if family == "mmgan":
        return _train_mmgan(args)
    if family == "mmrnn":
        return _train_mmrnn(args)
    if family == "mvae":
        return _train_mvae(args)
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


def _family(path: str) -> str:
    try:
        raw = json.loads(open(path, encoding="utf-8").read())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read the training config ({e})") from e
    return raw.get("family", "fusion") if isinstance(raw, dict) else "fusion"


def _train_mmgan(args: argparse.Namespace) -> int:
    """A config with ``"family": "mmgan"``: the text-to-image GAN (models.train_gan)."""
    from models.train_gan import GANTrainConfig, train

    try:
        cfg = GANTrainConfig.from_file(args.train_config, **({"output_dir": args.output_dir} if args.output_dir else {}))
    except ValueError as e:
        raise ConfigError(str(e)) from e
    print(train(cfg, resume=not args.no_resume, log=lambda m: print(m, file=sys.stderr)))
    return 0


def _train_mvae(args: argparse.Namespace) -> int:
    """A config with ``"family": "mvae"``: the product-of-experts VAE over image and caption (models.train_mvae)."""
    from models.train_mvae import MVAETrainConfig, train

    try:
        cfg = MVAETrainConfig.from_file(args.train_config, **({"output_dir": args.output_dir} if args.output_dir else {}))
        print(train(cfg, resume=not args.no_resume, log=lambda m: print(m, file=sys.stderr)))
    except ValueError as e:
        raise ConfigError(str(e)) from e
    except FileNotFoundError as e:  # init_from names weights that are not there yet
        raise InputError(str(e)) from e
    return 0


def _train_mmrnn(args: argparse.Namespace) -> int:
    """A config with ``"family": "mmrnn"``: the GRU caption decoder (models.mmrnn)."""
    from models.mmrnn import RNNTrainConfig, train

    try:
        cfg = RNNTrainConfig.from_file(args.train_config, **({"output_dir": args.output_dir} if args.output_dir else {}))
    except ValueError as e:
        raise ConfigError(str(e)) from e
    try:
        print(train(cfg, log=lambda m: print(m, file=sys.stderr)))
    except FileNotFoundError as e:
        raise InputError(str(e)) from e
    return 0


def make_answer_fn(bot):
    """Each question in a fresh conversation: (question, image) -> the generator's reply."""

    def answer(question: str, image) -> str:
        bot.reset()
        return bot.ask(question, images=[image]).text

    return answer


def make_spoken_fn(bot, *, reply: bool = True):
    """Each spoken question in a fresh conversation, through the application's own path:
    (audio (T,) float32 16 kHz, image) -> (transcript, reply). ``bot.ask(audio=..., images=...)``
    recognizes with the context the app picks for the picture (the scene bias for a scene), then
    fuses and generates. With ``reply=False`` only the recognition runs (``bot.encode``, the same
    recognition step), for the answer head alone."""

    def spoken(audio, image):
        bot.reset()
        if not reply:
            turn = bot.encode(bot.prepare(images=[image], audio=[(audio, SAMPLE_RATE)]))
            return (turn.transcript[0] if turn.transcript else ""), None
        out = bot.ask(audio=[(audio, SAMPLE_RATE)], images=[image])
        return (out.transcript[0] if out.transcript else ""), out.text

    return spoken


def cmd_eval(args: argparse.Namespace) -> int:
    from models.evaluate import SPOKEN, SPOKEN_TUNING, format_table, load_results, run_evaluation, save_results

    variants = []
    if args.only in (None, "typed"):
        variants.append("typed")
    if args.only in (None, "spoken"):
        variants += {"eval": [SPOKEN], "tuning": [SPOKEN_TUNING], "both": [SPOKEN, SPOKEN_TUNING]}[args.voices]
    describe = args.describe or (50 if args.only == "describe" else 0)
    if describe < 0 or args.per_type < 0:
        raise InputError("--describe and --per-type count scenes: give 0 or more")
    setup = {"per_type": args.per_type, "first_seed": args.first_seed, "paraphrase": args.paraphrase}
    compare = {}
    if args.compare:
        try:
            compare, old_meta = load_results(args.compare)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"{args.compare}: not a results file from `assistant eval --output` ({e})") from e
        differs = [k for k, v in setup.items() if k in old_meta and old_meta[k] != v]
        if differs:
            raise InputError(f"{args.compare}: asked other questions ({', '.join(f'{k}={old_meta[k]}' for k in differs)}); "
                             f"compare runs with the same --per-type, --first-seed and --paraphrase")
    bot = args.load_bot()
    bot.greedy = True  # the model's most likely answers, whatever the chat sampling settings say
    core = getattr(bot, "fusion", None)
    if core is None and args.head_only:
        raise ModelError("no trained fusion core is loaded (see `assistant models`), so there is no answer head to evaluate")

    def progress(name: str, i: int, n: int) -> None:
        if sys.stderr.isatty():
            print(f"\r{name}: {i}/{n}", end="" if i < n else "\n", file=sys.stderr, flush=True)

    text_encoder = (lambda texts: bot.generator.embed_text(texts, max_tokens=core.cfg.max_text_tokens)) if core else None
    results = {} if not variants else run_evaluation(
        None if args.head_only else make_answer_fn(bot),
        core=core, image_encoder=bot.image_encoder, text_encoder=text_encoder,
        first_seed=args.first_seed, n_per_type=args.per_type, paraphrase=args.paraphrase, progress=progress,
        variants=tuple(variants), spoken_fn=make_spoken_fn(bot, reply=not args.head_only),
    )
    described = {}
    if describe:
        from models.evaluate import evaluate_descriptions, head_answer_fn

        if core is not None:
            described["caption head"] = evaluate_descriptions(head_answer_fn(core, bot.image_encoder, text_encoder),
                                                              args.first_seed, describe, progress=lambda i, n: progress("head describe", i, n))
        if not args.head_only:
            described["end to end"] = evaluate_descriptions(make_answer_fn(bot), args.first_seed, describe,
                                                            progress=lambda i, n: progress("end to end describe", i, n))
    meta = {**setup, "only": args.only, "describe": describe, "voices": args.voices if args.only != "typed" else None,
            "models": [asdict(m) if is_dataclass(m) else str(m) for m in bot.models()]}
    if args.output:
        save_results(args.output, results, {**meta, "descriptions": {k: asdict(v) for k, v in described.items()}})
    shown = {**{k: v for k, v in compare.items() if k not in results}, **results}
    if args.json:
        print(json.dumps({**{k: asdict(v) for k, v in shown.items()},
                          **{f"describe, {k}": asdict(v) for k, v in described.items()}}, indent=1))
        return 0
    if shown:
        print(format_table(shown))
    if described:
        from models.evaluate import format_describe_table

        print(("\n" if shown else "") + format_describe_table(described))
    return 0
