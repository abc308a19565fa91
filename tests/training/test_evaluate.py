"""Evaluation: balanced held-out items, the scoring rule applied per question type, the CLI wiring."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from models import clevr
from models.evaluate import eval_items, evaluate_answers, format_table, run_evaluation


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


def test_spoken_items_use_transcripts_and_skip_unspoken_forms():
    spoken = {f"What is the shape of the {c} object?": [f"what is the shape of the {c} object"] for c in clevr.COLOURS}
    items = eval_items(1_000_000, 4, variant="spoken", spoken=spoken)
    assert {i.kind for i in items} == {"shape"}
    assert len(items) == 4
    assert all(i.question == i.reference.lower().rstrip("?") for i in items)


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


def test_run_evaluation_can_run_only_the_spoken_questions():
    spoken = {clevr.TEMPLATES["shape"][0].format(c=c): [f"what is the shape of the {c} object"] for c in clevr.COLOURS}
    res = run_evaluation(lambda q, im: "square", n_per_type=2, spoken=spoken, variants=("spoken",))
    assert list(res) == ["end to end, spoken"] and res["end to end, spoken"].n == 2
    assert list(run_evaluation(lambda q, im: "square", n_per_type=2, spoken=spoken, variants=("typed",))) == ["end to end, typed"]


def test_eval_only_spoken_without_transcripts_is_a_one_line_error():
    from assistant import train_cli
    from assistant.cli import build_parser
    from assistant.errors import InputError

    args = build_parser().parse_args(["eval", "--only", "spoken", "--spoken", ""])
    args.load_bot = lambda: pytest.fail("the models must not load for a bad command line")
    with pytest.raises(InputError, match="--only spoken needs"):
        train_cli.cmd_eval(args)


def test_assistant_eval_command_runs_through_the_bot(capsys, tmp_path):
    from assistant import train_cli
    from assistant.cli import build_parser

    asked = []

    class FakeBot:
        fusion = None
        image_encoder = generator = None

        def reset(self):
            asked.append("reset")

        def ask(self, text, images=()):
            asked.append(text)
            assert len(images) == 1 and images[0].size == (75, 75)
            return SimpleNamespace(text="It is a square.")

        def models(self):
            return []

    args = build_parser().parse_args(["eval", "--per-type", "2", "--spoken", "", "--output", str(tmp_path / "r.json")])
    args.load_bot = lambda: FakeBot()
    assert args.handler is train_cli.cmd_eval
    assert train_cli.cmd_eval(args) == 0
    out = capsys.readouterr().out
    assert "| shape |" in out and "end to end, typed" in out
    assert asked.count("reset") == 12
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["results"]["end to end, typed"]["n"] == 12


def test_assistant_train_command_is_registered():
    from assistant import train_cli
    from assistant.cli import build_parser

    args = build_parser().parse_args(["train", "configs/fusion_cpu.json", "--no-resume"])
    assert args.handler is train_cli.cmd_train and args.train_config == "configs/fusion_cpu.json"
