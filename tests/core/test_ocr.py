"""Reading the text in images: the real PP-OCRv4 weights (they ship in the rapidocr-onnxruntime
wheel) on small generated images; through the real CLI entry point with a fake generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from assistant.cli import main
from models import ocr
from models.ocr import OcrConfig, OcrEngine, halfwidth_in_latin, insert_spaces, load_ocr
from models.ocr_eval import edit_distance

MONO = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
SANS = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
pytestmark = pytest.mark.skipif(not Path(MONO).is_file(), reason="DejaVu fonts are not installed")


def draw(lines, size=(560, 150), *, font=MONO, px=16, bg="white", fg="black", at=None) -> Image.Image:
    """Text at (x, y) positions (default: one line under another at the left)."""
    img = Image.new("RGB", size, bg)
    d = ImageDraw.Draw(img)
    f = ImageFont.truetype(font, px)
    for i, line in enumerate(lines):
        d.text(at[i] if at else (12, 12 + i * int(px * 1.8)), line, font=f, fill=fg)
    return img


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> OcrEngine:
    return load_ocr(stamp_dir=tmp_path_factory.mktemp("stamp"))


TRACE = ["Traceback (most recent call last):", 'File "app.py", line 12, in main',
         "KeyError: 'user_id' not found"]


def test_reads_a_traceback_word_for_word_in_order(engine):
    result = engine.read(draw(TRACE, bg=(30, 30, 30), fg=(220, 220, 220)))  # a dark terminal
    assert result.rows() == TRACE
    assert all(0.8 < line.confidence <= 1 for line in result.lines)
    top = [min(y for _, y in line.box) for line in result.lines]
    assert top == sorted(top)


def test_reading_order_is_rows_then_left_to_right(engine):
    # drawn right column first and bottom row first: read back top row left to right
    image = draw(["total 42", "Name", "price 7", "Item"], size=(420, 110), font=SANS, px=18,
                 at=[(260, 60), (20, 14), (260, 14), (20, 60)])
    result = engine.read(image)
    assert result.rows() == ["Name price 7", "Item total 42"]
    assert [line.row for line in result.lines] == [0, 0, 1, 1]


def test_upside_down_line_is_turned_by_the_angle_classifier(engine):
    result = engine.read(draw(["Connection refused by server"], size=(360, 50)).rotate(180))
    assert result.text == "Connection refused by server"
    assert result.lines[0].rotated


def test_large_image_boxes_are_in_full_resolution_pixels(engine):
    image = Image.new("RGB", (3200, 1800), "white")
    ImageDraw.Draw(image).text((2400, 1500), "Disk quota exceeded", font=ImageFont.truetype(SANS, 40), fill="black")
    result = engine.read(image)
    assert result.text == "Disk quota exceeded"
    xs, ys = zip(*result.lines[0].box)
    assert 2380 <= min(xs) <= 2410 and 1490 <= min(ys) <= 1515 and max(xs) > 2700


def test_an_image_without_text_adds_nothing_cheaply(engine):
    flat = engine.read(Image.new("RGB", (1920, 1080), (40, 90, 160)))
    assert flat.lines == [] and flat.found == 0 and "recognize" not in flat.timings  # no detector pass at all
    rng = np.random.default_rng(0)
    smooth = Image.fromarray((np.cumsum(rng.normal(0, 3, (200, 300, 3)), axis=1) % 255).astype(np.uint8))
    assert engine.read(smooth).lines == []


def test_photos_without_text_read_nothing_but_a_lone_character_is_kept(engine):
    from tests.conftest import DATA

    for photo in ("cat.jpg", "coffee.jpg"):  # the cup seen from above read as "O" at 0.65
        assert engine.read(Image.open(f"{DATA}/{photo}")).lines == [], photo
    sign = Image.new("RGB", (300, 200), "white")
    ImageDraw.Draw(sign).text((40, 30), "7", font=ImageFont.truetype(SANS, 96), fill="black")
    assert [line.text for line in engine.read(sign).lines] == ["7"]


def test_many_lines_stop_early_and_say_so(tmp_path):
    small = load_ocr(OcrConfig(max_lines=2), stamp_dir=tmp_path)
    result = small.read(draw(TRACE + ["done"], size=(560, 190)))
    assert [r.replace(" ", "") for r in result.rows()] == [t.replace(" ", "") for t in TRACE[:2]]
    assert result.found == 4 and "first 2 of 4" in result.stopped


def test_spaces_put_back_only_between_latin_characters():
    chars, steps = list("ab错误cd:"), np.array([0, 3, 6, 9, 12, 15, 18])
    space = np.zeros(20)
    space[[1, 4, 7, 10, 13, 16]] = 0.5  # the recognizer saw a gap everywhere
    assert insert_spaces(chars, steps, space, 0.1) == "a b错误c d:"
    assert insert_spaces(chars, steps, np.zeros(20), 0.1) == "ab错误cd:"
    assert halfwidth_in_latin("f（x）：1") == "f(x):1"
    assert halfwidth_in_latin("错误：连接，好") == "错误：连接，好"


def test_chinese(engine):
    cjk = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
    if not cjk.is_file():
        pytest.skip("no CJK font installed (apt-get install fonts-wqy-microhei)")
    result = engine.read(draw(["错误：无法连接到服务器", "请检查网络设置"], size=(360, 90), font=str(cjk), px=18))
    assert result.rows() == ["错误：无法连接到服务器", "请检查网络设置"]


def test_corrupt_model_file_is_one_line_naming_it(tmp_path):
    files = {name: tmp_path / name for name in ocr.OCR_WEIGHTS.files}
    for path in files.values():
        path.write_bytes(b"not an onnx model")
    with pytest.raises(ocr.WeightsError) as e:
        OcrEngine(files, OcrConfig())
    assert "\n" not in str(e.value) and "ch_PP-OCRv4_det_infer.onnx" in str(e.value) and "rapidocr-onnxruntime" in str(e.value)


# ---------------------------------------------------------------- through `assistant ask --json`


@pytest.fixture
def shot(tmp_path) -> Path:
    path = tmp_path / "shot.png"
    draw(TRACE, bg=(30, 30, 30), fg=(220, 220, 220)).save(path)
    return path


def test_ask_json_has_the_text_as_evidence(lazy_stack, shot, capsys):
    assert main(["ask", "--image", str(shot), "What is the error message?", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    note = "Image 1 (shot.png) contains text:\n" + "\n".join(TRACE)
    assert note in out["evidence"]
    assert any(e.startswith("Image 1 (shot.png) shows") for e in out["evidence"])  # beside the labels
    assert out["ocr"][0]["image"] == "shot.png" and [l["text"] for l in out["ocr"][0]["lines"]] == TRACE
    assert len(out["ocr"][0]["lines"][0]["box"]) == 4 and "ocr" in out["timings"]
    prompt = lazy_stack.generator.prompts[0][-1]["content"]
    assert "KeyError: 'user_id' not found" in prompt


def test_ocr_off_reads_nothing(lazy_stack, shot, capsys, monkeypatch):
    monkeypatch.setenv("SYNESTHESIA_IMAGE__OCR", "off")
    assert main(["ask", "--image", str(shot), "What does it say?", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ocr"] == [] and not any("contains text" in e for e in out["evidence"])
    assert not lazy_stack.bot.loaded()["ocr"]


def test_missing_ocr_package_is_one_warning_and_the_image_still_answers(lazy_stack, shot, capsys, monkeypatch):
    from models.speech.weights import WeightPackage

    gone = WeightPackage("rapidocr-onnxruntime", "1.4.4", "no_such_module_here", "models", ocr.OCR_WEIGHTS.files, "", "")
    monkeypatch.setattr(ocr, "OCR_WEIGHTS", gone)
    assert main(["ask", "--image", str(shot), "What is this?", "--json"]) == 0
    captured = capsys.readouterr()
    warning = [line for line in captured.err.splitlines() if "reading text in images is off" in line]
    assert len(warning) == 1 and "pip install --no-deps rapidocr-onnxruntime==1.4.4" in warning[0]
    out = json.loads(captured.out)
    assert out["ocr"] == [] and any(e.startswith("Image 1 (shot.png) shows") for e in out["evidence"])


def test_corrupt_image_is_one_line_naming_it(lazy_stack, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert main(["ask", "--image", str(bad), "What does it say?"]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.png" in err and "\n" not in err


# ---------------------------------------------------------------- layout and small print

LEFT = ["The reader finds each line of", "text first, then reads it with", "a second network trained on",
        "printed words in two scripts."]
RIGHT = ["Columns are read one after", "the other, so a sentence that", "wraps to the next line stays",
         "in one piece for the reader."]


def test_two_columns_are_read_one_after_the_other(engine):
    image = Image.new("RGB", (680, 230), "white")
    d = ImageDraw.Draw(image)
    body = ImageFont.truetype(SANS, 15)
    d.text((20, 12), "How the reader works", font=ImageFont.truetype(SANS, 20), fill="black")
    for i, (a, b) in enumerate(zip(LEFT, RIGHT)):
        d.text((20, 52 + 24 * i), a, font=body, fill="black")
        d.text((350, 52 + 24 * i), b, font=body, fill="black")
    d.text((20, 190), "Page 3 of 12, printed from the user manual", font=body, fill="black")  # spans the gutter
    rows = engine.read(image).rows()
    assert [r.replace(" ", "") for r in rows] == [r.replace(" ", "") for r in
                                                  ["How the reader works", *LEFT, *RIGHT, "Page 3 of 12, printed from the user manual"]]


def test_small_print_is_magnified_before_it_is_read(engine):
    lines = ["Please check the cable and try again.", "Your upload will finish in 3 minutes."]
    result = engine.read(draw(lines, size=(230, 44), font=SANS, px=8, at=[(8, 6), (8, 22)]))
    # the letters exactly; at 8 px a space the recognizer half sees inside a word is put back
    # now and then ("fini sh"): spaces are not what this is about
    assert [r.replace(" ", "") for r in result.rows()] == [r.replace(" ", "") for r in lines]


def test_lines_of_a_curled_page_are_not_merged(engine):
    from models.ocr_eval import dense_page, normalize

    page = dense_page("tune", 0)  # tight lines bent by a page curl, shadowed sides
    read = normalize(engine.read(page.image).text).splitlines()
    want = normalize(page.text).splitlines()
    assert len(read) == len(want) == 8
    assert sum(a == b for a, b in zip(read, want)) >= 6


# ---------------------------------------------------------------- box geometry, when to magnify, bands

COMMENTS = ["# delete the graph before shared", "for item in queue.pending():", "# parser the install before gateway",
            "    return table.lookup(key)", "# cache the result before retry", "if count > 42: break"]


def test_a_box_a_pixel_or_two_larger_reads_the_same(engine, monkeypatch):
    # the two detector passes box a line a pixel or two differently, and the recognizer's
    # reading flipped on that ("#" read as "非"): the crop is framed by the line's ink instead
    image = draw(COMMENTS, size=(420, 150), px=13, bg=(40, 44, 52), fg=(171, 178, 191))
    boxes, _ = engine.detect_text(np.asarray(image)[:, :, ::-1].copy(), 1600)
    readings = []
    for grow in (0, 1, 2):
        grown = [b + np.array([[-grow, -grow], [grow, -grow], [grow, grow], [-grow, grow]], np.float32) for b in boxes]
        monkeypatch.setattr(engine, "detect_text", lambda *a, **kw: (grown, None))
        readings.append(engine.read(image).rows())
    assert readings[0] == readings[1] == readings[2]
    assert [r.replace(" ", "") for r in readings[0]] == [c.replace(" ", "") for c in COMMENTS]


def test_normal_text_on_a_large_screen_is_not_magnified_but_small_print_is(tmp_path, monkeypatch):
    engine = load_ocr(OcrConfig(time_limit_s=600), stamp_dir=tmp_path)  # whatever else runs on the machine
    calls = []
    real = OcrEngine.magnified
    monkeypatch.setattr(OcrEngine, "magnified", lambda self, *a, **kw: calls.append(a[1]) or real(self, *a, **kw))
    lines = ["Traceback (most recent call last):", "KeyError: 'user_id' not found"]
    at = [(300, 500), (300, 530)]
    normal = engine.read(draw(lines, size=(1920, 1080), px=14, at=at))  # detected at 0.83: 11.7 px there
    assert normal.rows() == lines and calls == []
    small = engine.read(draw(lines, size=(1920, 1080), px=9, at=at))  # 7.5 px at detection scale
    assert len(calls) == 1 and len(small.rows()) == 2  # 9 px: quotes may come back curly
    assert all(edit_distance(got, want) <= 4 for got, want in zip(small.rows(), lines))


SMALL = ["Please check the cable and try again.", "Your upload will finish in 3 minutes.",
         "Click Apply to save the settings.", "The disk is full: free 2 GB first.",
         "Printed from the user manual, page 3.", "Reading stops after thirty seconds."]


def test_small_print_on_a_large_image_is_magnified_band_by_band(tmp_path):
    # bands of 1,300 px x 100 rows: six lines, one on each band boundary, each read once
    image = draw(SMALL, size=(650, 330), font=SANS, px=8, at=[(10, 12 + 52 * i) for i in range(len(SMALL))])
    banded = load_ocr(OcrConfig(upscale_max_pixels=1300 * 200, time_limit_s=600), stamp_dir=tmp_path).read(image)
    assert banded.found == len(SMALL) and banded.stopped is None
    assert len(banded.rows()) == len(SMALL)  # 8 px sans is read with a few letters wrong, banded or not
    assert all(edit_distance(got, want) <= 4 for got, want in zip(banded.rows(), SMALL))


def test_magnified_bands_stop_at_a_quarter_of_the_time_limit_and_say_so(tmp_path):
    image = draw(SMALL, size=(650, 330), font=SANS, px=8, at=[(10, 12 + 52 * i) for i in range(len(SMALL))])
    result = load_ocr(OcrConfig(upscale_max_pixels=1300 * 200, time_limit_s=1e-6), stamp_dir=tmp_path).read(image)
    assert result.found > 0  # the first pass's boxes stand in for the bands not looked at
    assert "magnified in 0 of" in result.stopped and "time_limit_s" in result.stopped
