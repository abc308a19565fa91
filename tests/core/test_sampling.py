"""Chat replies use the chat sampling settings (repetition penalty, n-gram blocking across
replies, temperature); evaluation decodes greedily whatever those settings say."""

from __future__ import annotations

from types import SimpleNamespace

from assistant.config import GeneratorSettings, Settings
from assistant.pipeline import Assistant
from tests.core.fakes import FakeGenerator


def test_chat_defaults_stay_greedy():
    g = GeneratorSettings()  # see benchmarks/results_repetition.md for why
    assert (g.temperature, g.repetition_penalty, g.no_repeat_ngram, g.ngram_penalty) == (0.0, 1.0, 0, float("inf"))


def test_a_turn_decodes_with_the_chat_settings():
    settings = Settings()
    settings.generator.no_repeat_ngram, settings.generator.repetition_penalty = 5, 1.2
    settings.generator.ngram_penalty = 6.0
    bot = Assistant(settings, generator=FakeGenerator("Twelve is even."), plugins=None)
    bot.ask("Tell me one fact about the number 12.")
    sampling = bot.generator.samplings[0]
    assert (sampling.no_repeat_ngram, sampling.repetition_penalty, sampling.ngram_penalty) == (5, 1.2, 6.0)
    assert sampling.max_new_tokens == settings.generator.max_new_tokens


def test_greedy_overrides_the_chat_settings():
    settings = Settings()
    settings.generator.temperature, settings.generator.no_repeat_ngram = 0.7, 4
    bot = Assistant(settings, generator=FakeGenerator(), plugins=None)
    bot.greedy = True
    bot.ask("hi")
    sampling = bot.generator.samplings[0]
    assert (sampling.temperature, sampling.repetition_penalty, sampling.no_repeat_ngram) == (0.0, 1.0, 0)


def test_assistant_eval_decodes_greedily(tmp_path):
    from assistant import train_cli
    from assistant.cli import build_parser

    class Bot:
        fusion = image_encoder = generator = None
        greedy = False

        def reset(self):
            pass

        def ask(self, text="", images=(), audio=()):
            assert self.greedy, "eval must decode greedily"
            return SimpleNamespace(text="It is a square.", transcript=[])

        def models(self):
            return []

    args = build_parser().parse_args(["eval", "--per-type", "1", "--only", "typed"])
    args.load_bot = Bot
    assert train_cli.cmd_eval(args) == 0
