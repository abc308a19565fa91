"""Repetition benchmark: does a long chat copy its first reply's template?

    python benchmarks/bench_repetition.py [--turns 60] [--max-new-tokens 48] [--configs before,after] [--out FILE]

One conversation of ``--turns`` questions "Tell me one fact about the number N." (N from a
fixed list; ``--topic animals``: "Tell me one fact about the lion.", a held-out family the
chat default was not chosen on) runs through the real pipeline (``Assistant`` on the packaged SmolLM2, plugins
off so that every reply comes from the generator) once per decoding configuration:

  * ``before``: greedy, repetition_penalty 1.0, no n-gram blocking (the old chat default)
  * ``after``:  the chat defaults in ``assistant/config.py`` (GeneratorSettings)
  * ``fresh``:  greedy as ``before``, but every question in a new conversation: the control,
    how often the model starts two answers alike with no earlier reply to copy (echoing the
    question, "One fact about the number N is ...")
  * ``NAME=temperature/repetition_penalty/no_repeat_ngram[/ngram_penalty]``: any other, e.g.
    ``t07=0.7/1.1/0`` (``ngram_penalty``: subtracted from a repeating token's logit, default inf)

Words are compared after lower-casing, dropping punctuation and writing every word that holds
a digit as ``N`` ("12", "12th", "1,200"). A reply's **claim** is what follows its opening
echo of the question (the leading words that are words of the question, "is" or "that": "One
fact about the number 12 is that it is the sum of 12 and 13" claims "it is the sum of N and
N"). A reply **repeats a template** when the first five words of its claim equal those of an
earlier reply in the same run; it is a **near copy** when the first ten words of its claim
match an earlier reply's at a difflib ratio of 0.7 or more (so changing a word or two does not
hide a copy). Reported per configuration: the share of replies (after the first) of each
kind, the number of distinct claim templates, the share of replies that name the number asked
about (on topic), the most common template, and seconds per turn. Two probes follow each
configuration but ``fresh``, for what a remedy must not break: the same question asked twice
in one conversation (the capitals of France and Japan: does the second answer still name
Paris and Tokyo?), and five held-out Sort-of-CLEVR scenes, each asked its six question types
in one conversation (answers about one picture share their wording: how many are right).
Sampling configurations draw from an unseeded generator, so their numbers move a little from run to run (``--rounds``
repeats them). ``--replies FILE`` saves every reply as JSON; ``--rescore FILE`` scores such a
file again without running the model.
"""

from __future__ import annotations

import argparse
import collections
import difflib
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

NUMBERS = [12, 42, 100, 7, 3, 64, 19, 256, 1000, 13, 21, 8, 5, 360, 27, 11, 99, 2, 50, 365,
           17, 24, 60, 9, 144, 31, 10, 1, 23, 88, 6, 4, 73, 16, 36, 101, 15, 30, 500, 81,
           14, 0, 37, 128, 20, 25, 32, 49, 70, 1024, 18, 90, 29, 40, 22, 45, 33, 200, 77, 1729]
FIRST_WORDS = 5
NEAR_WORDS = 10
NEAR_RATIO = 0.7


ANIMALS = ["lion", "octopus", "penguin", "giraffe", "owl", "dolphin", "camel", "bee", "shark", "elephant",
           "frog", "eagle", "horse", "ant", "whale", "tiger", "bat", "snail", "parrot", "wolf",
           "kangaroo", "crocodile", "butterfly", "rabbit", "zebra", "spider", "turtle", "fox", "cow", "goldfish",
           "bear", "koala", "crab", "hedgehog", "salmon", "pigeon", "gorilla", "mosquito", "deer", "seal",
           "jellyfish", "squirrel", "chicken", "hippo", "ostrich", "panda", "lobster", "cat", "dog", "mouse",
           "sloth", "peacock", "beaver", "flamingo", "cheetah", "goat", "swan", "worm", "moose", "duck"]
TOPICS = {"numbers": ("Tell me one fact about the number {}.", NUMBERS),
          "animals": ("Tell me one fact about the {}.", ANIMALS)}
"""The question families. ``numbers`` is the one the n-gram setting (no_repeat_ngram 4) was
chosen on; ``animals`` was never used to choose anything: the held-out check, on which that
setting failed (benchmarks/results_repetition.md)."""


def questions(turns: int, topic: str = "numbers") -> list[tuple[int | str, str]]:
    """(subject, question) for each turn, the topic's subjects in order, repeated as needed."""
    form, subjects = TOPICS[topic]
    return [(x, form.format(x)) for x in (subjects * (turns // len(subjects) + 1))[:turns]]


def names(reply: str, subject: int | str) -> bool:
    """Whether a reply names what it was asked about (a number as digits; an animal, plurals too)."""
    if isinstance(subject, int):
        return bool(re.search(rf"(?<![\d]){subject}(?![\d])", reply.replace(",", "")))
    return bool(re.search(rf"\b{re.escape(subject)}(s|es)?\b", reply, re.IGNORECASE))


ECHO = {"is", "that"}


def words(text: str) -> list[str]:
    """Lower-cased words without punctuation, every word holding a digit written as N."""
    found = re.sub(r"[^\w\s]", " ", text.replace(",", "").lower()).split()
    return ["N" if any(c.isdigit() for c in w) else w for w in found]


def claim(reply: str, question: str) -> list[str]:
    """The reply's words after its opening echo of the question."""
    asked = set(words(question)) | ECHO
    said = words(reply)
    start = 0
    while start < len(said) and said[start] in asked:
        start += 1
    return said[start:]


def score(asked: list[tuple[int | str, str]], replies: list[str]) -> dict:
    claims = [claim(r, q) for r, (_, q) in zip(replies, asked)]
    seen: set[tuple[str, ...]] = set()
    repeats = near = 0
    counts = collections.Counter()
    for i, c in enumerate(claims):
        t = tuple(c[:FIRST_WORDS])
        counts[t] += 1
        if i > 0 and t in seen:
            repeats += 1
        near += any(difflib.SequenceMatcher(None, c[:NEAR_WORDS], e[:NEAR_WORDS]).ratio() >= NEAR_RATIO
                    for e in claims[:i])
        seen.add(t)
    on_topic = sum(names(r, subject) for (subject, _), r in zip(asked, replies))
    top, top_n = counts.most_common(1)[0] if counts else ((), 0)
    return {"repeat_share": repeats / max(1, len(replies) - 1), "near_share": near / max(1, len(replies) - 1),
            "templates": len(counts), "on_topic": on_topic / max(1, len(replies)), "top": " ".join(top),
            "top_n": top_n}


def parse_config(spec: str, defaults) -> tuple[str, dict]:
    if spec in ("before", "fresh"):
        return spec, {"temperature": 0.0, "repetition_penalty": 1.0, "no_repeat_ngram": 0, "ngram_penalty": float("inf")}
    if spec == "after":
        return spec, {"temperature": defaults.temperature, "repetition_penalty": defaults.repetition_penalty,
                      "no_repeat_ngram": defaults.no_repeat_ngram, "ngram_penalty": defaults.ngram_penalty}
    name, _, values = spec.partition("=")
    try:
        t, rp, ng, *pen = values.split("/")
        return name, {"temperature": float(t), "repetition_penalty": float(rp), "no_repeat_ngram": int(ng),
                      "ngram_penalty": float(pen[0]) if pen else float("inf")}
    except (ValueError, IndexError):
        raise SystemExit(f"bench_repetition: {spec!r}: write NAME=temperature/repetition_penalty/no_repeat_ngram[/ngram_penalty]")


def run_conversation(bot, asked: list[tuple[int | str, str]], log, fresh: bool = False) -> tuple[list[str], float]:
    bot.reset()
    replies = []
    start = time.perf_counter()
    for i, (_, question) in enumerate(asked):
        if fresh:
            bot.reset()
        reply = bot.ask(question).text
        replies.append(reply)
        log(f"  {i + 1:3d} {asked[i][0]!s:>9}: {reply[:90]!r}")
    return replies, (time.perf_counter() - start) / max(1, len(asked))


AGAIN = ["What is the capital of France?", "Tell me one fact about the number 12.", "What is the capital of Japan?",
         "What is the capital of France?", "What is the capital of Japan?"]
"""The repeat probe: two questions asked twice in one conversation; a remedy against copying
must still let the second answer say what the first one did (Paris, Tokyo)."""


def repeat_probe(bot, log) -> tuple[int, int, list[str]]:
    """(answers named right the first time, the second time, the replies)."""
    bot.reset()
    replies = [bot.ask(q).text for q in AGAIN]
    for q, r in zip(AGAIN, replies):
        log(f"  probe {q!r}: {r[:90]!r}")
    first = ("Paris" in replies[0]) + ("Tokyo" in replies[2])
    second = ("Paris" in replies[3]) + ("Tokyo" in replies[4])
    return first, second, replies


def scene_probe(bot, log, scenes: int = 5) -> tuple[int, int]:
    """The six question types about one held-out Sort-of-CLEVR scene in one conversation, for
    ``scenes`` scenes: answers about one picture share their wording ("The red object is on
    the left side of the image."), which a remedy against copying must not break. -> (right, asked)."""
    from models import clevr

    right = asked = 0
    for i in range(scenes):
        scene = clevr.make_scene(1_000_000 + i)
        image = clevr.render(scene)
        bot.reset()
        for k, kind in enumerate(clevr.QUESTION_TYPES):
            q = clevr.make_question(scene, kind, clevr.COLOURS[(i + k) % len(clevr.COLOURS)])
            reply = bot.ask(q.text, images=[image]).text
            ok = clevr.score_reply(reply, kind, q.answer)
            right, asked = right + ok, asked + 1
            log(f"  scene {scene.seed} {q.text!r}: {reply[:80]!r} {'right' if ok else 'WRONG'}")
    return right, asked


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=60)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--configs", default="before,after", help="comma-separated: before, after, NAME=t/rp/ngram")
    ap.add_argument("--topic", choices=sorted(TOPICS), default="numbers",
                    help="the questions: numbers (the tuning set settings were chosen on) or animals (held out)")
    ap.add_argument("--rounds", type=int, default=1, help="conversations per sampling configuration (median)")
    ap.add_argument("--quiet", action="store_true", help="do not print every reply")
    ap.add_argument("--out", help="also write the table to this file")
    ap.add_argument("--replies", help="save every reply (JSON: config -> list of conversations)")
    ap.add_argument("--rescore", help="score a --replies file again instead of running the model")
    args = ap.parse_args(argv)
    if args.rescore:
        return rescore(args)

    from assistant.config import GeneratorSettings, Settings
    from assistant.pipeline import Assistant

    defaults = GeneratorSettings()
    configs = [parse_config(c.strip(), defaults) for c in args.configs.split(",") if c.strip()]
    settings = Settings()
    settings.generator.max_new_tokens = args.max_new_tokens
    bot = Assistant.load(settings, plugins=False)
    asked = questions(args.turns, args.topic)
    log = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))

    rows = []
    saved: dict = {}
    for name, values in configs:
        for key, value in values.items():
            setattr(bot.settings.generator, key, value)
        rounds = args.rounds if values["temperature"] > 0 else 1
        results = []
        for r in range(rounds):
            log(f"{name} {values} round {r + 1}/{rounds}")
            replies, per_turn = run_conversation(bot, asked, log, fresh=name == "fresh")
            results.append((score(asked, replies), per_turn))
            saved.setdefault(name, {"values": values, "topic": args.topic, "per_turn": [], "conversations": []})
            saved[name]["conversations"].append(replies)
            saved[name]["per_turn"].append(per_turn)
            if args.replies:
                Path(args.replies).write_text(json.dumps(saved, indent=1))
        if name != "fresh":
            first, second, probe = repeat_probe(bot, log)
            right, asked_about = scene_probe(bot, log)
            saved[name]["probe"] = {"first": first, "second": second, "replies": probe, "scene_right": right,
                                    "scene_asked": asked_about}
            if args.replies:
                Path(args.replies).write_text(json.dumps(saved, indent=1))
        rows.append(row(name, values, results, saved[name].get("probe")))
        print(rows[-1], file=sys.stderr, flush=True)
    return print_table(args, rows)


def _probe_cell(probe: dict | None) -> str:
    if not probe:
        return "— | —"
    scene = f"{probe['scene_right']}/{probe['scene_asked']}" if "scene_asked" in probe else "—"
    return f"{probe['first']}/2, then {probe['second']}/2 | {scene}"


def row(name: str, values: dict, results: list[tuple[dict, float]], probe: dict | None = None) -> str:
    med = lambda key: statistics.median(s[key] for s, _ in results)  # noqa: E731
    best = results[0][0]
    return (f"| {name} | {values['temperature']:g} | {values['repetition_penalty']:g} | "
            f"{values['no_repeat_ngram']} | {values.get('ngram_penalty', float('inf')):g} | {med('repeat_share'):.0%} | {med('near_share'):.0%} | "
            f"{med('templates'):.0f} | {med('on_topic'):.0%} | \"{best['top']}\" ({best['top_n']}x) | "
            f"{_probe_cell(probe)} | "
            f"{statistics.median(t for _, t in results):.1f} |")


def rescore(args) -> int:
    saved = json.loads(Path(args.rescore).read_text())
    rows = []
    for name, entry in saved.items():
        convs = entry["conversations"]
        asked = questions(len(convs[0]), entry.get("topic", "numbers"))
        results = [(score(asked, replies), t) for replies, t in zip(convs, entry["per_turn"])]
        rows.append(row(name, entry["values"], results, entry.get("probe")))
    first = saved[next(iter(saved))]
    args.turns, args.topic = len(first["conversations"][0]), first.get("topic", "numbers")
    return print_table(args, rows)


def print_table(args, rows: list[str]) -> int:
    head = (f"### Template repetition over a {args.turns}-turn chat about {args.topic} (max_new_tokens {args.max_new_tokens}, "
            f"{'median of ' + str(args.rounds) + ' conversations for sampling' if args.rounds > 1 else 'one conversation each'})\n\n"
            "| config | temperature | repetition_penalty | no_repeat_ngram | ngram_penalty | replies repeating an earlier template | "
            "near copies | distinct templates | name the subject | most common template | asked again: capitals right | scene chats: answers right | s/turn |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    table = head + "\n" + "\n".join(rows) + "\n"
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
