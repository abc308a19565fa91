"""Screenshot-like images with known text, and the character error rate of reading them.

The generator draws windows of text as a screen shows them: code in monospace, English prose,
Chinese prose; light and dark themes; sizes from 12 px; several fonts. Two splits never share
a font, a word list or a seed:

* ``tune``: the images the reader's settings (detection size, space gap, thresholds) were
  chosen on;
* ``eval``: the images the numbers in benchmarks/results_ocr.md come from.

Fonts come from this machine (DejaVu, WenQuanYi Micro Hei) and from pip packages
(``fontpkg-ibm-plex-mono``, ``fontpkg-noto-sans``, ``cvttf-notosanscjk-regular``,
``cvttf-notosanscjk-bold``: the ``ocr-eval`` extra); a font that is not installed is skipped
and :func:`fonts_for` says which are missing.
"""

from __future__ import annotations

import importlib.util
import math
import random
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

KINDS = ("code", "prose", "chinese")
SIZES = (12, 14, 16, 20, 28)
SMALL_SIZES = (8, 9, 10)
"""Small print (below the issue's 12 px): a status bar, a dense terminal, a page photographed from afar."""
THEMES = {
    "light": [((255, 255, 255), (20, 20, 20)), ((246, 246, 240), (40, 40, 60)), ((240, 244, 250), (30, 50, 90))],
    "dark": [((30, 30, 30), (220, 220, 220)), ((40, 44, 52), (171, 178, 191)), ((0, 43, 54), (147, 161, 161))],
}


def _pkg_file(module: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    return path if path.is_file() else None


def _system(path: str) -> Path | None:
    p = Path(path)
    return p if p.is_file() else None


FONTS = {
    "dejavu-sans": lambda: _system("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    "dejavu-sans-mono": lambda: _system("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"),
    "dejavu-serif": lambda: _system("/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"),
    "ibm-plex-mono": lambda: _pkg_file("fontpkg_ibm_plex_mono", "files", "IBMPlexMono-Regular.ttf"),
    "noto-sans": lambda: _pkg_file("fontpkg_noto_sans", "files", "NotoSans[wdth,wght].ttf"),
    "wqy-microhei": lambda: _system("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    "noto-cjk-regular": lambda: _pkg_file("cvttf_NotoSansCJK_Regular", "NotoSansCJKtc-Regular.otf"),
    "noto-cjk-bold": lambda: _pkg_file("cvttf_NotoSansCJK_Bold", "NotoSansCJKtc-Bold.otf"),
}

SPLITS = {
    "tune": {"seed": 1000, "fonts": {"code": ["dejavu-sans-mono"], "prose": ["dejavu-sans"], "chinese": ["wqy-microhei"]}},
    "eval": {"seed": 2000, "fonts": {"code": ["ibm-plex-mono", "dejavu-sans-mono"],
                                     "prose": ["dejavu-serif", "noto-sans"],
                                     "chinese": ["noto-cjk-regular", "noto-cjk-bold"]}},
}
"""Which fonts each split draws with. DejaVu Sans Mono appears in both for code (the only
second monospace font installed); its eval images use other seeds and the eval word lists."""

# Word lists: even positions are the tuning words, odd positions the evaluation words.
_EN_WORDS = """
account address allow answer apply archive average balance battery before branch buffer
cache camera cancel change channel check client closed column command config connect
contact control copy create current cursor daily database default delete deploy device
disk display document domain download driver empty enable engine error event export
failed feature field filter folder format forward frame function gateway global graph
group header health history import index input install invalid issue kernel label layer
layout length library limit local locked logger manual market memory message method
mirror missing module monitor network number object offline option order output owner
package packet parser partial password pending person plugin policy portal preview
primary printer process profile project prompt proxy public queue random reader record
region release remote render report request reset result return review router runtime
sample schema screen script search second secure select sender server service session
settings shared signal source stable status storage stream string submit summary switch
system target task template terminal thread ticket timeout token trace update upload
useful user value vector version viewer volume warning window worker
""".split()
_ZH_WORDS = """
系统 文件 网络 服务器 用户 密码 设置 错误 连接 数据 今天 明天 天气 城市 学校 学生 老师 工作
时间 地址 电话 手机 电脑 程序 代码 问题 答案 报告 会议 项目 公司 市场 价格 订单 支付 成功
失败 请求 更新 下载 上传 安装 版本 信息 消息 通知 登录 注册 帐号 邮件 图片 视频 音乐 电影
新闻 历史 文化 经济 科学 技术 医院 银行 超市 餐厅 火车 飞机 机场 车站 地铁 公园 图书馆 博物馆
""".split()
_ZH_TEMPLATES = [
    "{a}无法{v}，请检查{b}。", "{a}已经{v}，共{n}条记录。", "请在{n}分钟内完成{a}{v}。", "{a}和{b}的{c}正在{v}。",
    "错误代码{n}：{a}{v}失败。", "我们明天去{a}看{b}。", "{a}的{b}比去年增加了{n}%。", "欢迎使用{a}，当前版本{n}。",
]
_ZH_VERBS = ["连接", "保存", "打开", "关闭", "处理", "检查", "发送", "读取", "删除", "启动", "停止", "完成"]
_CODE_TEMPLATES = [
    "def {a}_{b}({c}, {d}=None):", "    return {a}.{b}({c})", "if {a} is None or len({b}) > {n}:",
    "    raise ValueError(f\"invalid {a}: {{{b}}}\")", "for {a} in {b}.{c}():", "{a}_{b} = {{\"{c}\": {n}, \"{d}\": True}}",
    "import {a}.{b} as {c}", "    {a}.append({b}[{n}])", "class {A}{B}({C}):", "# {a} the {b} before {c}",
    "const {a} = await {b}.{c}(\"{d}\");", "    print(f\"{a} {b}: {{{c}}}\")", "while {a} < {n}: {a} += 1",
    "Traceback (most recent call last):", "  File \"{a}.py\", line {n}, in {b}", "{A}Error: {a} {b} not found",
]
_PROSE_TEMPLATES = [
    "The {a} {b} is {c} and the {d} is ready.", "Please {a} the {b} before you {c} the {d}.",
    "{A} {n} of {m}: {b} {c} complete.", "Your {a} will {b} in {n} minutes.", "We could not {a} the {b} ({c}).",
    "Total {a}: {n}.{m} USD", "Check the {a} {b} and try again.", "{A} {b} was updated on {n}/{m}.",
    "Click {A} to {b} the {c} or press Esc.", "The {a} has {n} new {b} and {m} {c}.",
]


def _words(items: list[str], split: str) -> list[str]:
    return items[0::2] if split == "tune" else items[1::2]


def make_line(kind: str, rng: random.Random, split: str) -> str:
    """One line of text of a kind ('code', 'prose', 'chinese') from the split's word lists."""
    if kind == "chinese":
        words = _words(_ZH_WORDS, split)
        verbs = _words(_ZH_VERBS, split)
        template = rng.choice(_words(_ZH_TEMPLATES, split))
        return template.format(a=rng.choice(words), b=rng.choice(words), c=rng.choice(words), v=rng.choice(verbs),
                               n=rng.randint(2, 999))
    words = _words(_EN_WORDS, split)
    pick = {k: rng.choice(words) for k in "abcd"}
    pick.update({k.upper(): v.capitalize() for k, v in pick.items()})
    pick.update(n=rng.randint(2, 500), m=rng.randint(2, 99))
    return rng.choice(_CODE_TEMPLATES if kind == "code" else _PROSE_TEMPLATES).format(**pick)


@dataclass
class Sample:
    image: Image.Image
    text: str
    """The lines drawn, one a line, as a reader should return them."""
    kind: str
    font: str
    size: int
    theme: str
    name: str


def fonts_for(split: str) -> tuple[dict[str, list[tuple[str, Path]]], list[str]]:
    """-> ({kind: [(font name, path)]}, names of the fonts that are not installed)."""
    found, missing = {}, []
    for kind, names in SPLITS[split]["fonts"].items():
        found[kind] = []
        for name in names:
            path = FONTS[name]()
            (found[kind].append((name, path)) if path else missing.append(name))
    return found, sorted(set(missing))


def render(lines: list[str], font_path: Path, size: int, bg, fg, *, rng: random.Random,
           width: int | None = None, margin: int | None = None) -> Image.Image:
    """Draw lines of text as a screen would: a window of the background colour, a line pitch of
    about 1.5 x the size, an optional title bar."""
    font = ImageFont.truetype(str(font_path), size)
    pitch = int(size * rng.uniform(1.35, 1.7))
    margin = margin if margin is not None else rng.randint(size, 3 * size)
    text_w = max(int(font.getlength(line)) for line in lines)
    w = width or text_w + 2 * margin + rng.randint(0, 200)
    title = rng.random() < 0.5
    top = margin + (int(size * 2.2) if title else 0)
    h = top + pitch * len(lines) + margin
    img = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(img)
    if title:  # a window's title bar: a slightly different band with three dots
        shade = tuple(max(0, min(255, c + (-18 if sum(bg) > 380 else 18))) for c in bg)
        draw.rectangle([0, 0, w, int(size * 1.8)], fill=shade)
        for k, colour in enumerate([(237, 106, 94), (245, 191, 79), (98, 197, 84)]):
            cx = int(size * 0.9) + k * int(size * 1.1)
            draw.ellipse([cx - size // 4, int(size * 0.9) - size // 4, cx + size // 4, int(size * 0.9) + size // 4], fill=colour)
    for i, line in enumerate(lines):
        draw.text((margin, top + i * pitch), line, font=font, fill=fg)
    return img


def samples(split: str, n_per_kind: int = 20, *, kinds=KINDS, sizes=SIZES) -> list[Sample]:
    """``n_per_kind`` images of each kind, cycling through the split's fonts, the sizes and themes
    (``sizes``: the default 12-28 px, or e.g. ``SMALL_SIZES`` for the small-print check)."""
    spec = SPLITS[split]
    fonts, _ = fonts_for(split)
    out = []
    for k, kind in enumerate(kinds):
        if not fonts.get(kind):
            continue
        rng = random.Random(spec["seed"] + 97 * k)
        for i in range(n_per_kind):
            font_name, font_path = fonts[kind][i % len(fonts[kind])]
            size = sizes[i % len(sizes)]
            theme = "light" if (i // len(sizes)) % 2 == 0 else "dark"
            bg, fg = rng.choice(THEMES[theme])
            lines = [make_line(kind, rng, split) for _ in range(rng.randint(2, 6))]
            image = render(lines, font_path, size, bg, fg, rng=rng)
            out.append(Sample(image, "\n".join(line.strip() for line in lines), kind, font_name, size, theme,
                              f"{split}-{kind}-{i:03d}-{font_name}-{size}px-{theme}"))
    return out


def photo_of_page(rng: random.Random, *, size=(3024, 4032), n_lines: int = 40, font: Path | None = None) -> tuple[Image.Image, str]:
    """A phone-like photo of a printed page: paper on a table, seen at a slant, uneven light,
    a little blur and sensor noise -> (image, the page's text)."""
    font = font or FONTS["dejavu-serif"]() or FONTS["dejavu-sans"]()
    lines = [make_line("prose", rng, "eval") for _ in range(n_lines)]
    page = render(lines, font, 40, (250, 248, 240), (25, 25, 25), rng=rng, width=2100, margin=150)
    page = page.resize((2100, max(page.height, 2970)))
    w, h = size
    photo = Image.new("RGB", size, (96, 74, 58))  # a wooden table
    src = np.array([[0, 0], [page.width, 0], [page.width, page.height], [0, page.height]], dtype=np.float32)
    jitter = lambda: rng.uniform(-0.04, 0.04)  # noqa: E731
    dst = np.array([[w * (0.12 + jitter()), h * (0.10 + jitter())], [w * (0.88 + jitter()), h * (0.12 + jitter())],
                    [w * (0.92 + jitter()), h * (0.90 + jitter())], [w * (0.08 + jitter()), h * (0.88 + jitter())]],
                   dtype=np.float32)
    import cv2

    m = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(np.asarray(page), m, size, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    mask = cv2.warpPerspective(np.full((page.height, page.width), 255, np.uint8), m, size)
    base = np.where(mask[..., None] > 0, warped, np.asarray(photo)).astype(np.float32)  # (H, W, 3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 0.75 + 0.25 * np.cos((xx / w - 0.3) * 2.0) * np.cos((yy / h - 0.4) * 1.5)  # (H, W)
    noisy = base * light[..., None] + np.random.default_rng(rng.randint(0, 1 << 30)).normal(0, 4, base.shape)
    image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.2))
    return image, "\n".join(lines)


def dense_page(split: str, seed: int, *, n_lines: int = 8) -> Sample:
    """A small, soft photo of a printed page with tightly set lines (line pitch 1.25-1.45 x
    the size, 11-14 px text, a curl that bends the lines, shadowed sides, blur, noise): where
    a text detector tends to merge neighbouring lines into one box. Prose from the split's
    word lists and fonts."""
    rng = random.Random(SPLITS[split]["seed"] + 5000 + seed)
    fonts, _ = fonts_for(split)
    font_name, font_path = fonts["prose"][seed % len(fonts["prose"])]
    size = rng.randint(11, 14)
    font = ImageFont.truetype(str(font_path), size)
    pitch = size * rng.uniform(1.25, 1.45)
    lines = [make_line("prose", rng, split) for _ in range(n_lines)]
    margin = 2 * size
    w = int(max(font.getlength(line) for line in lines)) + 2 * margin
    h = int(pitch * n_lines) + 2 * margin
    img = Image.new("RGB", (w, h), (235, 232, 222))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((margin, margin + int(i * pitch)), line, font=font, fill=(30, 30, 30))
    import cv2

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    curl = rng.uniform(0.3, 0.7) * pitch * (1 - ((xx / w) * 2 - 1) ** 2) + rng.uniform(-0.05, 0.05) * xx  # (h, w) page curl, tilt
    bent = cv2.remap(np.asarray(img), xx, yy - curl, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    pixels = np.asarray(Image.fromarray(bent).filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 0.8)))).astype(np.float32)
    edge = np.minimum(xx, w - 1 - xx) / w  # (h, w) 0 at the sides: the book's gutter and edge in shadow
    light = (0.55 + 0.45 * np.clip(edge / 0.2, 0, 1)) * (0.85 + 0.15 * np.cos(yy / h * rng.uniform(1, 3)))  # (h, w)
    noisy = pixels * light[..., None] + np.random.default_rng(seed).normal(0, 5, pixels.shape)
    image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    return Sample(image, "\n".join(lines), "page", font_name, size, "photo", f"{split}-page-{seed:03d}-{font_name}-{size}px")


# ---------------------------------------------------------------------- scoring


def normalize(text: str) -> str:
    """Compare what a reader can know: full-width forms as ASCII, each line stripped, runs of
    spaces as one, no empty lines."""
    text = unicodedata.normalize("NFKC", text)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return "\n".join(line for line in lines if line)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between two strings (insertions, deletions, substitutions)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(predicted: str, reference: str) -> tuple[int, int]:
    """-> (edits, reference characters) after :func:`normalize` (line breaks count as characters)."""
    p, r = normalize(predicted), normalize(reference)
    return edit_distance(p, r), max(1, len(r))


def cer_by_line(lines: list[str], reference: str) -> tuple[int, int]:
    """Read text segments in reading order against the reference's lines, in any layout ->
    (edits, reference characters).

    Each segment goes to the reference line it is closest to (edit distance); the segments of
    one reference line are joined by spaces in the order read and compared with it; a reference
    line nothing went to counts all its characters as missed. So a page read in another order
    than it was written (windows side by side), or one changed first character, costs only the
    characters that are wrong, where comparing sorted lines moved the line and counted it twice."""
    refs = normalize(reference).splitlines()
    got: dict[int, list[str]] = {}
    for line in lines:
        text = normalize(line)
        if text and refs:
            got.setdefault(_closest(text, refs), []).append(text)
    edits = sum(edit_distance(" ".join(got[i]), ref) if i in got else len(ref) for i, ref in enumerate(refs))
    return edits, max(1, sum(len(r) for r in refs))


def _closest(text: str, refs: list[str]) -> int:
    """Index of the reference line nearest ``text`` by edit distance (cheap lower bounds first)."""
    counts = Counter(text)

    def bound(ref: str) -> int:  # edit distance is at least the length gap and half the letters that differ
        diff = counts.copy()
        diff.subtract(Counter(ref))
        return max(abs(len(ref) - len(text)), (sum(abs(v) for v in diff.values()) + 1) // 2)

    best, best_d = 0, math.inf
    for i in sorted(range(len(refs)), key=lambda i: bound(refs[i])):
        if bound(refs[i]) >= best_d:
            break
        d = edit_distance(text, refs[i])
        if d < best_d:
            best, best_d = i, d
    return best
