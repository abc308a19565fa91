"""Evaluation: balanced held-out items, the scoring rule applied per question type, the CLI wiring."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from models import clevr
from models.evaluate import (
    SPOKEN, SPOKEN_TUNING, eval_items, evaluate_answers, evaluate_spoken, format_table, run_evaluation, spoken_items,
)


def _oracle(items):
    """An answer_fn that knows the answers (looked up by question and image pixels)."""
    table = {(it.question, clevr.render(clevr.make_scene(it.scene_seed)).tobytes()): it.answer for it in items}
    return lambda q, image: f"I think it is {table[(q, image.tobytes())]}."


def test_items_are_balanced_held_out_and_seeded():
    items = eval_items(1_000_000, 5)
    assert [sum(i.kind == k for i in items) for k in clevr.QUESTION_TYPES] == [5] * 6
    assert all(i.scene_seed >= 1_000_000 for i in items)
    assert items == eval_items(1_000_000, 5)
    assert all(i.question == clevr.TEMPLATES[i.kind][0].format(c=i.colour) for i in items)
    para = eval_items(1_000_000, 5, paraphrase=True)
    assert any(p.question != i.question for p, i in zip(para, items))
    assert [p.answer for p in para if p.kind == "shape"] == [clevr.answer(clevr.make_scene(p.scene_seed), "shape", p.colour) for p in para if p.kind == "shape"]


class FakeSpeech:
    """Spoken item -> 'audio' that carries its words (one sample per character); the voice
    'mumble' says nothing. Records what it was asked to say."""

    def __init__(self):
        self.said = []

    def __call__(self, item):
        self.said.append((item.voice, item.rate, item.pitch, item.snr_db, item.reference))
        text = "" if item.voice == "mumble" else item.reference
        return np.array([ord(c) for c in text], np.float32)


def _hear(audio) -> str:
    return "".join(chr(int(x)) for x in audio)


def _oracle_spoken(items):
    """A spoken_fn that hears the fake audio and answers right (or says it heard nothing)."""
    table = {(it.reference, clevr.render(clevr.make_scene(it.scene_seed)).tobytes()): it.answer for it in items}

    def spoken(audio, image):
        assert audio.dtype == np.float32 and audio.ndim == 1
        heard = _hear(audio)
        return heard, (f"It is {table[(heard, image.tobytes())]}." if heard else "Sorry, I heard nothing.")

    return spoken


def test_spoken_items_ask_the_typed_questions_in_rotating_voices():
    typed = eval_items(1_000_000, 6)
    voices = [("en-a", 150), ("en-b", 190), "en-c"]
    spoken = spoken_items(typed, voices, seed=0)
    assert [(s.scene_seed, s.kind, s.colour, s.answer, s.reference) for s in spoken] == \
        [(t.scene_seed, t.kind, t.colour, t.answer, t.question) for t in typed]
    assert {s.variant for s in spoken} == {SPOKEN}
    for kind in clevr.QUESTION_TYPES:  # every voice asks every type equally often
        per_voice = [sum(s.kind == kind and s.voice == v for s in spoken) for v in ("en-a", "en-b", "en-c")]
        assert per_voice == [2, 2, 2], kind
    assert {s.rate for s in spoken if s.voice == "en-a"} == {150}  # a voice's own rate is kept
    assert {s.voice_label for s in spoken} == {"en-a (150 wpm)", "en-b (190 wpm)", "en-c"}
    assert all(10 <= s.snr_db <= 30 for s in spoken)
    assert spoken == spoken_items(typed, voices, seed=0)
    assert spoken_items(typed, voices, variant=SPOKEN_TUNING)[0].variant == SPOKEN_TUNING


def test_spoken_evaluation_scores_replies_per_voice_and_runs_the_head_on_the_transcript():
    items = spoken_items(eval_items(1_000_000, 4), ["en-a", "mumble"])
    speech = FakeSpeech()
    head_asked = []
    res, heard = evaluate_spoken(_oracle_spoken(items), items, speech=speech,
                                 head_fn=lambda q, im: head_asked.append(q) or "square")
    e2e = res["end to end"]
    assert e2e.n == 24 and e2e.variant == SPOKEN
    assert e2e.per_voice == {"en-a": 1.0, "mumble": 0.0} and e2e.per_voice_n == {"en-a": 12, "mumble": 12}
    assert e2e.overall == 0.5 and e2e.heard_exactly == 0.5
    assert [s[4] for s in speech.said] == [i.reference for i in items]
    assert [h.question for h in heard] == [i.reference if i.voice == "en-a" else "" for i in items]
    assert head_asked == [i.reference for i in items if i.voice == "en-a"]  # nothing heard: the head is not asked
    assert res["head"].n == 24
    assert any("heard" in ex and "voice" in ex for ex in e2e.examples)


def test_recognition_only_gives_head_results_alone():
    items = spoken_items(eval_items(1_000_000, 2), ["en-a"])
    res, _ = evaluate_spoken(lambda audio, image: (_hear(audio), None), items, speech=FakeSpeech(),
                             head_fn=lambda q, im: "left")
    assert list(res) == ["head"]


def test_oracle_scores_everything_and_wrong_replies_score_nothing():
    items = eval_items(1_000_000, 4)
    res = evaluate_answers(_oracle(items), items)
    assert res.overall == 1.0 and res.n == 24
    both = evaluate_answers(lambda q, im: "square or circle, left or right, top or bottom, one or two", items)
    assert both.overall == 0.0  # more than one candidate is never right
    left = evaluate_answers(lambda q, im: "left", items)
    assert left.per_type["shape"] == 0.0 and left.per_type["count"] == 0.0
    expected = sum(i.answer == "left" for i in items if i.kind == "horizontal") / 4
    assert left.per_type["horizontal"] == expected
    assert left.relational == 0.0


def test_table_has_a_row_per_type_and_summary_rows():
    items = eval_items(1_000_000, 2)
    results = {"end to end, typed": evaluate_answers(_oracle(items), items)}
    table = format_table(results)
    for k in clevr.QUESTION_TYPES:
        assert f"| {k} | 100.0% |" in table
    assert "| **relational** | 100.0% |" in table and "| questions | 12 |" in table


def test_run_evaluation_without_a_core_is_end_to_end_only():
    res = run_evaluation(lambda q, im: "circle", n_per_type=2)
    assert list(res) == ["end to end, typed"]
    assert res["end to end, typed"].per_type["horizontal"] == 0.0


def test_run_evaluation_speaks_the_typed_questions_and_reports_the_ratio():
    typed = eval_items(1_000_000, 2)
    spoken_fn = _oracle_spoken(spoken_items(typed, ["x"]))
    res = run_evaluation(_oracle(typed), n_per_type=2, spoken_fn=spoken_fn, speech=FakeSpeech(),
                         voices=["en-a", "mumble"], tuning_voices=["en-t"], variants=("typed", SPOKEN, SPOKEN_TUNING))
    assert list(res) == ["end to end, typed", "end to end, spoken", "end to end, spoken (tuning voices)"]
    assert res["end to end, spoken"].n == res["end to end, typed"].n == 12
    assert set(res["end to end, spoken"].per_voice) == {"en-a", "mumble"}
    assert res["end to end, spoken (tuning voices)"].per_voice == {"en-t": 1.0}
    table = format_table(res)
    assert "| **spoken / typed** | — | 0.500 | 1.000 |" in table
    assert "| heard exactly | — | 50.0% | 100.0% |" in table
    assert "| mumble | 0.0% (6) | — |" in table and "| en-t | — | 100.0% (12) |" in table
    only = run_evaluation(None, n_per_type=2, spoken_fn=lambda a, im: (_hear(a), None), speech=FakeSpeech(),
                          voices=["en-a"], variants=(SPOKEN,))
    assert only == {}  # neither a generator reply nor a head: nothing to score
    with pytest.raises(ValueError, match="spoken_fn"):
        run_evaluation(_oracle(typed), n_per_type=1, variants=(SPOKEN,), voices=["en-a"])


def test_the_default_spoken_voices_are_the_evaluation_voices():
    from models.speech.voices import EVAL_VOICES, TUNING_VOICES
    from models.spoken_data import voice_spec

    speech = FakeSpeech()
    run_evaluation(None, n_per_type=3, spoken_fn=lambda a, im: (_hear(a), "square"), speech=speech,
                   variants=(SPOKEN, SPOKEN_TUNING))
    eval_names = {voice_spec(v)[0] for v in EVAL_VOICES}
    tuning_names = {voice_spec(v)[0] for v in TUNING_VOICES}
    assert not eval_names & tuning_names
    said = [s[0] for s in speech.said]
    assert len(said) == 36 and set(said[:18]) <= eval_names and set(said[18:]) <= tuning_names


def test_eval_compare_with_other_questions_is_a_one_line_error(tmp_path):
    from assistant import train_cli
    from assistant.cli import build_parser
    from assistant.errors import InputError
    from models.evaluate import save_results

    old = save_results(tmp_path / "typed.json", {}, {"per_type": 300, "first_seed": 1_000_000, "paraphrase": False})
    args = build_parser().parse_args(["eval", "--only", "spoken", "--per-type", "50", "--compare", str(old)])
    args.load_bot = lambda: pytest.fail("the models must not load for a bad command line")
    with pytest.raises(InputError, match="per_type=300"):
        train_cli.cmd_eval(args)


class FakeBot:
    """Replies 'It is a square.'; hears 'what is the shape' in any non-empty audio."""

    fusion = None
    image_encoder = generator = None

    def __init__(self):
        self.asked = []

    def reset(self):
        self.asked.append("reset")

    def ask(self, text="", images=(), audio=()):
        assert len(images) == 1 and images[0].size == (75, 75)
        transcript = []
        for samples, rate in audio:
            assert rate == 16000 and samples.dtype == np.float32 and samples.ndim == 1
            transcript.append("what is the shape" if samples.size else "")
        self.asked.append(text or ("audio", len(audio)))
        return SimpleNamespace(text="It is a square.", transcript=transcript)

    def models(self):
        return []


def test_assistant_eval_command_runs_through_the_bot(capsys, tmp_path):
    from assistant import train_cli
    from assistant.cli import build_parser

    bot = FakeBot()
    args = build_parser().parse_args(["eval", "--per-type", "2", "--only", "typed", "--output", str(tmp_path / "r.json")])
    args.load_bot = lambda: bot
    assert args.handler is train_cli.cmd_eval
    assert train_cli.cmd_eval(args) == 0
    out = capsys.readouterr().out
    assert "| shape |" in out and "end to end, typed" in out
    assert bot.asked.count("reset") == 12
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["results"]["end to end, typed"]["n"] == 12


def test_assistant_eval_speaks_through_the_app_and_compares_with_typed(capsys, tmp_path, monkeypatch):
    """--only spoken: synthesized (by a fake synthesizer here) 16 kHz audio goes to bot.ask with
    the scene, in both voice sets with --voices both; --compare adds the typed run and the ratio."""
    import models.spoken_data
    from assistant import train_cli
    from assistant.cli import build_parser

    made = []

    class FakeSynth:
        sample_rate = 22050

        def __init__(self, voice, rate, pitch):
            made.append(voice)

        def synthesize(self, text):
            return np.full(len(text) * 100, 0.1, np.float32)

    monkeypatch.setattr(models.spoken_data, "espeak_factory", lambda: FakeSynth)
    bot = FakeBot()
    typed = build_parser().parse_args(["eval", "--per-type", "2", "--only", "typed", "--output", str(tmp_path / "t.json")])
    typed.load_bot = lambda: bot
    train_cli.cmd_eval(typed)
    capsys.readouterr()
    args = build_parser().parse_args(["eval", "--per-type", "2", "--only", "spoken", "--voices", "both",
                                      "--compare", str(tmp_path / "t.json"), "--output", str(tmp_path / "s.json")])
    args.load_bot = lambda: bot
    assert train_cli.cmd_eval(args) == 0
    out = capsys.readouterr().out
    assert "| end to end, typed | end to end, spoken | end to end, spoken (tuning voices) |" in out
    assert "| **spoken / typed** | — |" in out and "| voice |" in out
    assert bot.asked.count(("audio", 1)) == 24 and made
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["meta"]["voices"] == "both"
    assert set(saved["results"]) == {"end to end, spoken", "end to end, spoken (tuning voices)"}
    assert saved["results"]["end to end, spoken"]["heard_exactly"] == 0.0


def test_assistant_eval_describe_scores_the_replies_object_by_object(capsys, tmp_path):
    """--only describe: each held-out scene is described in a fresh conversation through bot.ask
    and the reply scored per object; a bot that names every object a red square gets the red
    square ones right and nothing else."""
    from assistant import train_cli
    from assistant.cli import build_parser

    class DescribingBot(FakeBot):
        def ask(self, text="", images=(), audio=()):
            assert text == "Describe the image." and len(images) == 1
            self.asked.append(text)
            return SimpleNamespace(text="There is a red square at the bottom left.", transcript=[])

    bot = DescribingBot()
    args = build_parser().parse_args(["eval", "--only", "describe", "--describe", "4", "--output", str(tmp_path / "d.json")])
    args.load_bot = lambda: bot
    assert train_cli.cmd_eval(args) == 0
    out = capsys.readouterr().out
    assert "| colour named | 16.7% |" in out and "| scenes | 4 |" in out and "| shape |" not in out
    assert bot.asked.count("reset") == 4
    saved = json.loads((tmp_path / "d.json").read_text())
    got = saved["meta"]["descriptions"]["end to end"]
    scenes = [clevr.make_scene(1_000_000 + i).by_colour("red") for i in range(4)]
    want = sum(o.shape == "square" and o.vertical == "bottom" and o.horizontal == "left" for o in scenes) / 24
    assert got["scenes"] == 4 and got["per_object"]["whole"] == pytest.approx(want) and got["scenes_right"] == 0.0


def test_assistant_train_command_is_registered():
    from assistant import train_cli
    from assistant.cli import build_parser

    args = build_parser().parse_args(["train", "configs/fusion_cpu.json", "--no-resume"])
    assert args.handler is train_cli.cmd_train and args.train_config == "configs/fusion_cpu.json"
