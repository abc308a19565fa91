"""Image encoders: EfficientNet-Lite0 (packaged weights) and a CLIP-style hub model (tiny, random)."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from models.image import (
    EfficientNetLite0,
    ImageEncoder,
    SameConv,
    default_weights_path,
    encode_grid,
    grid_widths,
    imagenet_labels,
    load_image_encoder,
)
from tests.conftest import DATA


def test_same_padding_matches_tensorflow_sizes():
    conv = SameConv(3, 4, 3, stride=2, bias=False)
    for size, expected in [(224, 112), (75, 38), (1, 1), (33, 17)]:
        assert conv(torch.zeros(1, 3, size, size)).shape[-1] == expected


def test_architecture_matches_the_shipped_state_dict():
    state = torch.load(default_weights_path(), map_location="cpu", weights_only=True)
    ours = EfficientNetLite0().state_dict()
    assert set(ours) == set(state)
    assert all(ours[k].shape == state[k].shape for k in ours)


def test_labels_file():
    labels = imagenet_labels()
    assert len(labels) == 1000 and labels[281].startswith("tabby")


def test_feature_tokens_and_labels(image_encoder):
    feats = image_encoder.encode([Image.open(f"{DATA}/cat.jpg").convert("RGB"), Image.new("RGB", (1, 1))], top_k=3)
    assert feats.tokens.shape == (2, 49, 320)
    assert [name for name, _ in feats.labels[0]][:3] and all(0 <= p <= 1 for _, p in feats.labels[0])
    cat_names = {name for name, _ in feats.labels[0]}
    assert cat_names & {"tiger cat", "tabby", "Egyptian cat"}


def test_fine_grid_places_the_stride_16_block_beside_the_last_one(image_encoder):
    """grid="fine": 14x14 tokens, each the stride-16 block's 112 channels followed by the 320 of
    the 7x7 cell it lies in; the labels are the same as on the final grid."""
    image = Image.open(f"{DATA}/coffee.jpg")
    coarse = image_encoder.encode([image])
    fine = encode_grid(image_encoder, [image], "fine")
    assert fine.tokens.shape == (1, 196, 432) and fine.labels == coarse.labels
    cells = fine.tokens[0, :, 112:].reshape(14, 14, 320)
    assert torch.allclose(cells[::2, ::2].reshape(49, 320), coarse.tokens[0], atol=1e-5)
    assert torch.equal(cells[0, 0], cells[1, 1]) and not torch.equal(fine.tokens[0, 0, :112], fine.tokens[0, 15, :112])
    assert grid_widths(image_encoder) == {"final": 320, "fine": 432}
    assert image_encoder.encode([], grid="fine").tokens.shape == (0, 196, 432)
    with pytest.raises(ValueError, match="image grid 'tiny'"):
        image_encoder.encode([image], grid="tiny")


def test_preprocess_any_aspect(image_encoder):
    x = image_encoder.preprocess([Image.new("RGB", (1000, 20)), Image.new("RGB", (3, 700))])
    assert x.shape == (2, 3, 224, 224)


def test_min_probability_filters(image_encoder):
    feats = image_encoder.encode([Image.new("RGB", (64, 64), (128, 128, 128))], top_k=5, min_probability=0.99)
    assert feats.labels == [[]]  # a grey square: nothing the classifier is sure of


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A random-weight CLIP with a character vocabulary, saved like a hub snapshot."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    d = tmp_path_factory.mktemp("clip")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=32, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(hidden_size=24, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=8,
    )
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(d)
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                              tokenizer=CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt")))
    processor.save_pretrained(d)
    return d


def test_clip_style_model_from_a_local_folder(tiny_clip):
    enc = load_image_encoder(str(tiny_clip), offline=True)
    feats = enc.encode([Image.new("RGB", (50, 40), (255, 0, 0)), Image.open(f"{DATA}/coffee.jpg")], top_k=4)
    assert enc.feature_dim == 24
    assert feats.tokens.shape == (2, 17, 24)  # 16 patches + class token
    assert len(feats.labels[0]) == 4 and abs(sum(p for _, p in feats.labels[0])) <= 1.0


def test_an_encoder_with_one_grid_is_asked_without_one(tiny_clip):
    enc = load_image_encoder(str(tiny_clip), offline=True)
    assert grid_widths(enc) == {"final": 24}
    assert encode_grid(enc, [Image.new("RGB", (32, 32))], "final").tokens.shape == (1, 17, 24)
    with pytest.raises(ValueError, match="no 'fine' token grid"):
        encode_grid(enc, [Image.new("RGB", (32, 32))], "fine")


def test_hub_model_offline_is_refused():
    with pytest.raises(RuntimeError, match="downloads are off"):
        load_image_encoder("nobody/no-such-clip", offline=True)


def test_default_name_gives_efficientnet():
    assert isinstance(load_image_encoder("efficientnet-lite0"), ImageEncoder)
