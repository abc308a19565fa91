"""Training: a tiny run learns, saves shippable weights, and resumes exactly."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from models import clevr
from models.fusion import load_fusion
from models.train import TrainConfig, train
from models.train_data import answer_vocabulary, noisy_text, question_strings

from .conftest import fake_text_encoder


def _metrics(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run shared by the tests below (about 10 s on 2 cores)."""
    from .conftest import FakeImageEncoder, fake_text_encoder

    base = tmp_path_factory.mktemp("train")
    cfg = TrainConfig(
        output_dir=str(base / "run"), cache_dir=str(base / "cache"),
        fusion={"d_model": 32, "n_heads": 2, "n_layers": 1, "n_queries": 4},
        train_scenes=150, eval_scenes=40, other_images=20, eval_other_images=10,
        batch_size=48, answer_steps=60, align_steps=20, lr=3e-3, align_lr=3e-3, warmup_steps=5,
        log_every=10, eval_every=40, save_every=20, eval_questions=200, threads=1,
    )
    encoder = FakeImageEncoder()
    final = train(cfg, text_encoder=fake_text_encoder, image_encoder=encoder, progress=False, log=lambda m: None)
    return cfg, final, encoder


def test_tiny_run_reduces_the_losses(trained):
    cfg, final, _ = trained
    rows = [r for r in _metrics(final.parent) if "loss" in r]
    answer = [r for r in rows if r["stage"] == "answer"]
    align = [r for r in rows if r["stage"] == "align"]
    assert answer[-1]["answer_loss"] < 0.8 * answer[0]["answer_loss"]
    assert align[-1]["loss"] < 0.8 * align[0]["loss"]
    evals = [r["eval"] for r in _metrics(final.parent) if "eval" in r]
    assert evals and evals[-1]["acc_describe"] > 0.9  # 'describe' is told apart from the rest
    assert evals[-1]["align_cos"] > evals[0].get("align_cos", 0.0)


def test_final_weights_are_small_float16_and_reload(trained):
    cfg, final, _ = trained
    assert (final / "config.json").is_file() and (final / "model.safetensors").is_file()
    assert (final / "model.safetensors").stat().st_size <= 16 * 2**20
    tensors = load_file(str(final / "model.safetensors"))
    assert {t.dtype for t in tensors.values()} == {torch.float16}
    core = load_fusion(final)
    assert core.cfg.answers == answer_vocabulary()
    assert core.cfg.caption_attributes == clevr.caption_attributes()
    assert core.cfg.alignment == "regression" and core.cfg.aligned_to_generator is False
    text, mask = fake_text_encoder(["What is the shape of the red object?"])
    out = core({"image": (torch.randn(1, 49, 320), None)}, text, mask)
    assert out.answer_logits.shape == (1, len(answer_vocabulary()))
    assert out.caption_logits.shape == (1, 18)
    assert out.tokens.shape == (1, 4, 576)
    saved = json.loads((final.parent / "train_config.json").read_text())
    assert saved["answer_steps"] == cfg.answer_steps


def test_generator_stage_speaks_through_the_generator_and_trains_only_the_projector(tmp_path, trained, tiny_folder):
    """The tokens route's stage on a tiny random Llama (hidden 64): the loss is the generator's,
    only the projector may change, and the weights say they were trained through it."""
    from models.generator import Generator
    from models.train import _make_optimizer
    from models.fusion import build_fusion

    cfg, _, encoder = trained
    gen = Generator.load(str(tiny_folder), device="cpu", runtime="torch", cache_dir=tmp_path / "generator")
    tiny = replace(cfg, output_dir=str(tmp_path / "tokens"), fusion={**cfg.fusion, "generator_dim": 64},
                   answer_steps=2, align_steps=0, generator_steps=3, generator_trains="projector", batch_size=4,
                   eval_every=1000, save_every=1000, log_every=1, generator_system="Be brief.")
    final = train(tiny, text_encoder=fake_text_encoder, image_encoder=encoder, generator=lambda: gen,
                  progress=False, log=lambda m: None)
    rows = [r for r in _metrics(final.parent) if r.get("stage") == "generator" and "loss" in r]
    assert len(rows) == 3 and all(np.isfinite(r["lm_loss"]) and 0 <= r["reply_acc"] <= 1 for r in rows)
    core = load_fusion(final)
    assert core.cfg.aligned_to_generator is True and core.cfg.alignment == "lm"
    model = build_fusion(tiny.fusion_config())
    opt = _make_optimizer(model, "generator", tiny)
    trained_names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained_names and all(n.startswith("projector.") for n in trained_names)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(trained_names)


def test_generator_stage_learns_descriptions_as_the_scene_caption(tmp_path, trained, tiny_folder):
    """generator_describe_fraction: description requests in the generator stage's batch; the
    reply the generator is trained to write for one is the scene's caption."""
    from models.generator import Generator

    cfg, _, encoder = trained
    gen = Generator.load(str(tiny_folder), device="cpu", runtime="torch", cache_dir=tmp_path / "generator")
    encoded = []
    real_encode = gen.encode
    gen.encode = lambda text: encoded.append(text) or real_encode(text)
    tiny = replace(cfg, output_dir=str(tmp_path / "describe"), fusion={**cfg.fusion, "generator_dim": 64},
                   answer_steps=1, align_steps=0, generator_steps=2, generator_trains="projector", batch_size=6,
                   generator_describe_fraction=0.5, eval_every=1000, save_every=1000, log_every=1, domain_margin=0)
    train(tiny, text_encoder=fake_text_encoder, image_encoder=encoder, generator=lambda: gen, progress=False, log=lambda m: None)
    rows = [r for r in _metrics(tmp_path / "describe") if r.get("stage") == "generator" and "loss" in r]
    assert rows and all(0 <= r["describe_token_acc"] <= 1 for r in rows if "describe_token_acc" in r)
    captions = {clevr.caption(clevr.make_scene(s)) for s in range(cfg.train_first_seed, cfg.train_first_seed + cfg.train_scenes)}
    said = [t for t in encoded if t.startswith("There are six objects: ")]
    assert said and set(said) <= captions
    assert any(t.startswith("The ") and t not in captions for t in encoded)  # the answer sentences are still there


def test_resumed_run_matches_an_uninterrupted_one(tmp_path, trained):
    cfg, final, encoder = trained
    short = replace(cfg, answer_steps=16, align_steps=8, eval_every=1000, save_every=8)
    whole = train(replace(short, output_dir=str(tmp_path / "whole")), text_encoder=fake_text_encoder,
                  image_encoder=encoder, progress=False, log=lambda m: None)
    logs = []
    part = replace(short, output_dir=str(tmp_path / "part"), stop_after=12)
    first = train(part, text_encoder=fake_text_encoder, image_encoder=encoder, progress=False, log=logs.append)
    assert first.name == "checkpoint" and not (tmp_path / "part" / "final").exists()
    assert json.loads((first / "state.json").read_text())["step"] == 12
    resumed = train(replace(part, stop_after=0), text_encoder=fake_text_encoder, image_encoder=encoder,
                    progress=False, log=logs.append)
    assert any("resuming" in m and "12" in m for m in logs)
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k].float(), b[k].float(), atol=2e-3, rtol=0), k
    steps = [r["step"] for r in _metrics(tmp_path / "part") if "loss" in r]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # nothing logged twice


def test_features_are_cached_not_recomputed(tmp_path, trained):
    cfg, _final, encoder = trained
    calls = encoder.calls
    train(replace(cfg, output_dir=str(tmp_path / "again"), answer_steps=2, align_steps=0, eval_every=1000),
          text_encoder=fake_text_encoder, image_encoder=encoder, progress=False, log=lambda m: None)
    assert encoder.calls == calls


def test_config_rejects_unknown_fields(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"answer_step": 5}))
    with pytest.raises(ValueError, match="answer_step"):
        TrainConfig.from_file(path)


def test_noisy_questions_keep_the_colour_and_are_seeded():
    strings = question_strings(4, seed=0)
    assert strings == question_strings(4, seed=0)
    for (kind, colour, _t), variants in strings.items():
        assert len(variants) == 5
        if colour:
            for v in variants[1:]:
                assert colour in v.split() or any(h in v.split() for h in _homophones(colour)), (variants[0], v)
    import random

    rng = random.Random(0)
    assert noisy_text("What is the shape of the red object?", rng) != "What is the shape of the red object?"


def _homophones(word):
    from models.train_data import _HOMOPHONES

    return _HOMOPHONES.get(word, [])


def test_core_knows_its_training_images_and_stays_quiet_on_others(trained):
    from models.fusion import answer_evidence

    cfg, final, encoder = trained
    core = load_fusion(final)
    assert core.cfg.domain_threshold > 0
    domain = [r["domain"] for r in _metrics(final.parent) if "domain" in r][-1]
    assert domain["eval_scenes_inside"] >= 0.95
    assert domain["eval_other_images_outside"] >= 0.8
    images = [clevr.make_scene(7_000_000).render(), clevr.other_image(7_000_003)]  # a held-out scene, blobs
    tokens, _ = encoder.features(encoder.preprocess(images))  # (2, 49, 320)
    text, mask = fake_text_encoder(["Describe the image."] * 2)
    with torch.no_grad():
        out = core({"image": (tokens, None)}, text, mask)
    assert float(out.domain_distance[0]) <= core.cfg.domain_threshold < float(out.domain_distance[1])
    assert answer_evidence(core.cfg, out, 1, "Describe the image.") is None


def test_a_run_can_start_from_earlier_weights_and_add_relation_layers(tmp_path, trained):
    """init_from: the earlier core's answers are kept at step 0 (the relation stage starts
    closed), the run then trains the new layers, and a config that does not fit is refused."""
    cfg, final, encoder = trained
    earlier = load_fusion(final)
    grown = replace(cfg, output_dir=str(tmp_path / "grown"), init_from=str(final), answer_steps=12, align_steps=0,
                    eval_every=1000, save_every=1000, fusion={**cfg.fusion, "relation_layers": 1})
    logs: list[str] = []
    out = train(replace(grown, answer_steps=1, lr=0.0), text_encoder=fake_text_encoder, image_encoder=encoder,
                progress=False, log=logs.append)
    assert any("starting from" in m and "relation" in m for m in logs)
    step0 = load_fusion(out)
    text, mask = fake_text_encoder(["What is the shape of the red object?", "Describe the image."])
    image = torch.randn(2, 49, 320)
    a = earlier({"image": (image, None)}, text, mask).answer_logits
    b = step0({"image": (image, None)}, text, mask).answer_logits
    assert torch.allclose(a, b, atol=2e-2)  # float16 weights both sides; lr 0 and a closed gate change nothing
    trained_more = load_fusion(train(replace(grown, output_dir=str(tmp_path / "grown2")), text_encoder=fake_text_encoder,
                                     image_encoder=encoder, progress=False, log=lambda m: None))
    assert trained_more.relation_gate.detach().abs().item() > 0  # the new stage was opened by training
    with pytest.raises(ValueError, match="do not fit"):
        train(replace(grown, output_dir=str(tmp_path / "bad"), fusion={**cfg.fusion, "d_model": 48}),
              text_encoder=fake_text_encoder, image_encoder=encoder, progress=False, log=lambda m: None)


def test_a_core_on_the_fine_grid_takes_over_a_teachers_tokens(tmp_path, trained):
    """align_teacher: a core reading the 14x14 grid learns to give the tokens a generator-trained
    core gives on its own 7x7 grid for the same image and question, keeps answering, and
    inherits that core's flags, so the pipeline inserts its tokens as it did."""
    cfg, final, encoder = trained
    teacher = load_fusion(final)
    teacher.cfg.aligned_to_generator, teacher.cfg.describes, teacher.cfg.alignment = True, True, "lm"
    teacher.save(tmp_path / "teacher")
    fine = {**cfg.fusion, "image_grid": "fine", "modality_dims": {"image": 432}, "max_tokens": {"image": 196}}
    student_cfg = replace(cfg, output_dir=str(tmp_path / "student"), fusion=fine, answer_steps=40, align_steps=0,
                          eval_every=1000, save_every=1000)
    before = train(student_cfg, text_encoder=fake_text_encoder, image_encoder=encoder, progress=False, log=lambda m: None)
    distilled = train(replace(student_cfg, output_dir=str(tmp_path / "distilled"), init_from=str(before), answer_steps=0,
                              align_steps=60, align_teacher=str(tmp_path / "teacher"), align_lr=3e-3),
                      text_encoder=fake_text_encoder, image_encoder=encoder, progress=False, log=lambda m: None)
    a, b = load_fusion(before), load_fusion(distilled)
    assert b.cfg.image_grid == "fine" and b.cfg.alignment == "teacher"
    assert b.cfg.aligned_to_generator is True and b.cfg.describes is True
    scenes = [clevr.render(clevr.make_scene(s)) for s in (1_000_000, 1_000_001)]
    pixels = encoder.preprocess(scenes)
    coarse, fine_tokens = encoder.features(pixels)[0], encoder.features(pixels, "fine")[0]  # (2, 49, 320), (2, 196, 432)
    text, mask = fake_text_encoder(["Describe the image.", "What is the shape of the red object?"])
    with torch.no_grad():
        target = teacher({"image": (coarse, None)}, text, mask).tokens  # (2, K, 576)
        gap = [float((m({"image": (fine_tokens, None)}, text, mask).tokens - target).pow(2).mean()) for m in (a, b)]
    assert gap[1] < 0.5 * gap[0]
    rows = [r for r in _metrics(distilled.parent) if r.get("stage") == "align" and "loss" in r]
    assert rows[-1]["align_mse"] < rows[0]["align_mse"] and rows[-1]["answer_loss"] < 1.5 * rows[0]["answer_loss"]


def test_attention_loss_moves_the_cores_gaze_to_the_named_object(tmp_path, trained):
    """attention_weight: for shape / left-right / top-bottom questions the last layer's attention
    share on the named object's cells rises (measured on held-out scenes, not the batches)."""
    from models.train_data import build_data
    from models.train_losses import attention_loss

    cfg, final, encoder = trained
    looked = replace(cfg, output_dir=str(tmp_path / "looked"), init_from=str(final), answer_steps=120, align_steps=0,
                     eval_every=1000, save_every=1000, attention_weight=2.0, attention_target=0.6)
    out = train(looked, text_encoder=fake_text_encoder, image_encoder=encoder, progress=False, log=lambda m: None)
    held_out = build_data(looked, fake_text_encoder, encoder, splits=("eval",))["eval"]
    batch = held_out.examples(300, np.random.default_rng(7), describe_fraction=0.0, none_fraction=0.0)
    assert batch["attend"].sum() > 100 and batch["cells"][batch["attend"]].any(dim=1).all()
    shares = []
    for core in (load_fusion(final), load_fusion(out)):
        with torch.no_grad():
            o = core({"image": (batch["image"], None)}, batch["text"], batch["text_mask"])
        shares.append(attention_loss(o, batch, 1.0)[1]["attention_share"])
    assert shares[1] > 2 * shares[0]
    rows = [r for r in _metrics(out.parent) if "attention_share" in r]
    assert rows and rows[-1]["attention_share"] > rows[0]["attention_share"]


def test_the_slots_stage_trains_only_the_reasoner_and_keeps_the_cores_tokens(tmp_path, trained):
    """slots_steps: the slot reasoner learns where the objects are and what is asked, while every
    other weight (so every soft token) stays as it was and the earlier core's alignment flags
    carry over; without object_slots the stage is refused."""
    from models.train_data import build_data
    from models.train_losses import slot_loss

    cfg, final, encoder = trained
    earlier = load_fusion(final)
    earlier.cfg.aligned_to_generator, earlier.cfg.describes, earlier.cfg.alignment = True, True, "lm"
    earlier.save(tmp_path / "earlier")
    slots = replace(cfg, output_dir=str(tmp_path / "slots"), init_from=str(tmp_path / "earlier"), answer_steps=0,
                    align_steps=0, slots_steps=150, slots_lr=3e-3, eval_every=1000, save_every=1000,
                    fusion={**cfg.fusion, "object_slots": 6, "slot_kinds": list(clevr.QUESTION_TYPES)})
    out = load_fusion(train(slots, text_encoder=fake_text_encoder, image_encoder=encoder, progress=False, log=lambda m: None))
    assert out.cfg.aligned_to_generator is True and out.cfg.describes is True and out.cfg.alignment == "lm"
    before = load_fusion(tmp_path / "earlier").state_dict()
    after = out.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("domain_"))  # only the reasoner moved
    # The fake encoder's 7x7 colour averages show where objects are, not their shapes: the
    # slots learn the centres (measured on held-out scenes) and the question types here; the
    # answers they win on real features are tests/training/test_shipped_weights.py's.
    held_out = build_data(slots, fake_text_encoder, encoder, splits=("eval",))["eval"]
    batch = held_out.examples(300, np.random.default_rng(3), describe_fraction=0.0, none_fraction=0.0)
    with torch.no_grad():
        mine = out({"image": (batch["image"], None)}, batch["text"], batch["text_mask"])
    rows = [r for r in _metrics(tmp_path / "slots") if r.get("stage") == "slots" and "loss" in r]
    assert slot_loss(mine, batch)[1]["slot_px"] < 0.6 * rows[0]["slot_px"]
    assert rows[-1]["kind_loss"] < 0.5 * rows[0]["kind_loss"]
    with pytest.raises(ValueError, match="object_slots"):
        train(replace(slots, output_dir=str(tmp_path / "bad"), fusion=cfg.fusion), text_encoder=fake_text_encoder,
              image_encoder=encoder, progress=False, log=lambda m: None)


def test_every_training_config_in_the_repository_is_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs"
    paths = sorted(root.glob("fusion_*.json")) + sorted(root.glob("ablation_*.json"))
    assert len(paths) >= 3
    for path in paths:
        cfg = TrainConfig.from_file(path)
        fcfg = cfg.fusion_config()  # builds a FusionConfig: strategy and widths are checked
        assert cfg.total_steps > 0 and fcfg.answers == answer_vocabulary(), path
        earlier = [TrainConfig.from_file(p).output_dir for p in paths if p != path]
        for source in (cfg.init_from, cfg.align_teacher):  # a later stage names the folder an earlier config writes
            assert not source or any(source.startswith(d) for d in earlier), path


# ------------------------------------------------------------------------------ spoken questions


class _FakeRecognizer:
    """Hears the words the fake synthesizer encoded (one sample per character), records the context."""

    name = "fake-whisper"

    def __init__(self):
        self.contexts = []

    def transcribe(self, audio, context=None):
        self.contexts.append(context)
        assert audio.dtype == np.float32 and audio.ndim == 1
        return " " + "".join(chr(int(round(x * 1000))) for x in audio[::10]) + " "


def _fake_synth(made):
    class Synth:
        sample_rate = 16000

        def __init__(self, voice, rate, pitch):
            made.append((voice, rate, pitch))

        def synthesize(self, text):  # each character as 10 samples at ord / 1000 (under 0.13)
            return np.repeat(np.array([ord(c) / 1000 for c in text], np.float32), 10)

    return Synth


def test_make_spoken_uses_tuning_voices_the_scene_context_and_resumes(tmp_path):
    from models.spoken_data import make_spoken, spoken_questions
    from models.train_data import load_spoken

    rec, made = _FakeRecognizer(), []
    path = make_spoken(tmp_path / "s.json", voices=["en-a", ("en-b", 150)], renditions=3, limit=4, recognizer=rec,
                       synthesizer=_fake_synth(made), snr_db=(200.0, 200.0), log=lambda m: None)
    data = json.loads(path.read_text())
    assert data["recognizer"] == "fake-whisper" and data["context"] == "scene" and data["voices"] == ["en-a", "en-b"]
    questions = spoken_questions()[:4]
    assert list(data["transcripts"]) == questions
    assert rec.contexts == ["scene"] * 12  # as the app recognizes a question about a scene picture
    for q in questions:
        assert data["transcripts"][q] == [q] * 3  # stripped, as the app strips
        assert [s["voice"] for s in data["settings"][q]][:2] in (["en-a", "en-b"], ["en-b", "en-a"])
    assert {r for _v, r, _p in made} <= {140, 175, 200} and {p for _v, _r, p in made} <= {35, 50, 70}
    assert load_spoken(str(path), "train")[questions[0]] == [questions[0]] * 2
    assert load_spoken(str(path), "eval")[questions[0]] == [questions[0]]
    make_spoken(path, voices=["en-a"], renditions=3, limit=4, recognizer=rec, synthesizer=_fake_synth(made),
                log=lambda m: None)
    assert len(rec.contexts) == 12  # resumed: nothing recognized twice
    other = _FakeRecognizer()
    other.name = "another"
    make_spoken(path, voices=["en-a"], renditions=1, limit=1, recognizer=other, synthesizer=_fake_synth(made),
                log=lambda m: None)
    assert json.loads(path.read_text())["recognizer"] == "another"  # another recognizer: made again
    assert len(json.loads(path.read_text())["transcripts"]) == 1


def test_make_spoken_covers_paraphrases_and_refuses_evaluation_voices(tmp_path):
    from models.speech.voices import EVAL_VOICES
    from models.spoken_data import make_spoken, spoken_questions, voice_spec

    forms = spoken_questions()
    assert len(forms) == sum(len(f) * (1 if k == clevr.DESCRIBE else 6) for k, f in clevr.TEMPLATES.items())
    assert "What shape is the red object?" in forms and "Describe the picture." in forms
    assert len(spoken_questions(canonical_only=True)) == 37
    with pytest.raises(ValueError, match="evaluation voice"):
        make_spoken(tmp_path / "s.json", voices=["en-a", voice_spec(EVAL_VOICES[0])[0]], recognizer=_FakeRecognizer(),
                    synthesizer=_fake_synth([]), log=lambda m: None)
    assert not (tmp_path / "s.json").exists()


def test_the_repository_spoken_questions_come_from_whisper_and_tuning_voices_only():
    from pathlib import Path

    from models.speech.voices import EVAL_VOICES, TUNING_VOICES
    from models.spoken_data import spoken_questions, voice_spec
    from models.train_data import load_spoken

    path = Path(__file__).resolve().parents[2] / "configs" / "clevr_spoken.json"
    data = json.loads(path.read_text())
    assert data["recognizer"].startswith("whisper") and data["context"] == "scene"
    used = {s["voice"] for settings in data["settings"].values() for s in settings}
    assert used <= {voice_spec(v)[0] for v in TUNING_VOICES}
    assert not used & {voice_spec(v)[0] for v in EVAL_VOICES}
    assert list(data["transcripts"]) == spoken_questions()
    train = load_spoken(str(path), "train")
    assert sum(map(len, train.values())) >= 2 * len(train)
