"""The widgets of the chat screen: messages, previews, attachment chips, meters, the status bar
(the sessions sidebar is :mod:`assistant.tui.sidebar`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Input, Static

if TYPE_CHECKING:
    from textual.widgets import Markdown

from assistant.tui.attachments import Pending, as_attachment

# ----------------------------------------------------------------------------- image previews

PREVIEW_HEIGHT = 8
"""Rows an inline image preview takes."""


class HalfBlockImage(Widget):
    """An image drawn with '▀' cells (two pixels a cell): works in every colour terminal.

    The fallback when textual-image is missing or previews are set to 'halfblock'.
    """

    DEFAULT_CSS = "HalfBlockImage { height: 8; width: auto; }"

    def __init__(self, path: Path, *, image: Any = None, **kw: Any) -> None:
        """``image``: a PIL image to draw instead of reading ``path`` (e.g. an attention map)."""
        super().__init__(**kw)
        self.path = path
        self._strip_rows: list[Strip] | None = None
        self._strip_size: tuple[int, int] = (0, 0)
        if image is not None:
            self._image = image.convert("RGB")
            self._image.thumbnail((256, 256))
            return
        try:
            from PIL import Image

            with Image.open(path) as im:
                self._image = im.convert("RGB")
                self._image.thumbnail((256, 256))
        except Exception:  # unreadable: the chip beside it still names the file
            self._image = None

    def get_content_height(self, container, viewport, width: int) -> int:
        return PREVIEW_HEIGHT if self._image is not None else 1

    def get_content_width(self, container, viewport) -> int:
        if self._image is None:
            return 12
        w, h = self._image.size
        return max(1, min(container.width, round(PREVIEW_HEIGHT * 2 * w / max(1, h))))

    def _strips(self, width: int, height: int) -> list[Strip]:
        if self._strip_size != (width, height) or self._strip_rows is None:
            im = self._image.resize((max(1, width), max(2, height * 2)))
            px = im.load()
            rows = []
            for y in range(height):
                segs = []
                for x in range(width):
                    top, bottom = px[x, 2 * y], px[x, 2 * y + 1]
                    segs.append(Segment("▀", Style(color=f"rgb{top}", bgcolor=f"rgb{bottom}")))
                rows.append(Strip(segs, width))
            self._strip_rows, self._strip_size = rows, (width, height)
        return self._strip_rows

    def render_line(self, y: int) -> Strip:
        if self._image is None:
            return Strip([Segment("(no preview)")]) if y == 0 else Strip.blank(self.size.width)
        width, height = self.size.width, self.size.height
        if width <= 0 or height <= 0:
            return Strip.blank(0)
        rows = self._strips(width, height)
        return rows[y] if y < len(rows) else Strip.blank(width)


def image_preview(path: Path, mode: str) -> Widget | None:
    """A preview widget for ``path``: textual-image (graphics protocol when the terminal has one,
    half-cells otherwise) or our own half-block renderer; None when previews are off."""
    if mode == "off":
        return None
    if mode in ("auto", "halfcell", "unicode"):
        try:
            from textual_image import widget as ti
        except Exception:  # not installed, or the terminal query failed: our own renderer
            return HalfBlockImage(path, classes="preview")
        cls = {"auto": ti.Image, "halfcell": ti.HalfcellImage, "unicode": ti.UnicodeImage}[mode]
        return cls(str(path), classes="preview")
    return HalfBlockImage(path, classes="preview")


# ----------------------------------------------------------------------------- chat


class UserMessage(Vertical):
    """The user's side of a turn: text, inline image previews, audio chips, transcripts."""

    def __init__(self, text: str, attachments: Iterable[Pending], *, preview: str = "auto",
                 transcript: Iterable[str] = (), image_texts: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(classes="message user")
        self.text = text
        self.attachments = list(attachments)
        self.preview = preview
        self.transcript = list(transcript)
        self.image_texts = list(image_texts)
        """(image name, text read in it), shown under the images on request (F6)."""
        self.attention: list[dict | None] = []
        """Per attached image, where the fusion core looked (``Reply.attention``), shown on request (F7)."""

    def compose(self):
        yield Static(Text(self.text or "(attachments only)"), classes="user-text")
        for att in self.attachments:
            yield Static(Text(att.label), classes=f"chip {att.kind}")
            if att.kind == "image":
                widget = image_preview(att.path, self.preview)
                if widget is not None:
                    yield widget
        for line in self.transcript:
            yield Static(Text(f"heard: {line}"), classes="transcript")

    def toggle_image_text(self) -> bool:
        """Show (or hide again) the text read in the images; -> True when now shown."""
        shown = self.query(ImageText)
        if shown:
            shown.first().display = not shown.first().display
            return bool(shown.first().display)
        self.mount(ImageText(self.image_texts))
        return True

    def toggle_attention(self) -> bool:
        """Show (or hide again) the fusion core's attention over the images; -> True when now shown."""
        shown = self.query(AttentionView)
        if shown:
            shown.first().display = not shown.first().display
            return bool(shown.first().display)
        images = [att.path for att in self.attachments if att.kind == "image"]
        self.mount(AttentionView(list(zip(images, self.attention))))
        return True

    def add_transcript(self, lines: Iterable[str]) -> None:
        for line in lines:
            if line and line not in self.transcript:
                self.transcript.append(line)
                self.mount(Static(Text(f"heard: {line}"), classes="transcript"))


class ImageText(Vertical):
    """The text read in a message's images, in read-only text areas: select with the mouse or
    shift+arrows and copy with ctrl+c."""

    def __init__(self, texts: Iterable[tuple[str, str]]) -> None:
        super().__init__(classes="image-text")
        self.texts = list(texts)

    def compose(self):
        from textual.widgets import TextArea  # only image texts use it: not imported at start

        for name, text in self.texts:
            yield Static(Text(f"text in {name}:"), classes="image-text-title")
            yield TextArea(text, read_only=True, soft_wrap=True, show_line_numbers=False, classes="image-text-body")


class AttentionView(Vertical):
    """Each image with a heat map of where the fusion core's queries looked (last cross-attention
    layer, averaged over queries and heads), and a line on how far to trust it."""

    def __init__(self, maps: Iterable[tuple[Path, dict | None]]) -> None:
        super().__init__(classes="attention")
        self.maps = [(path, entry) for path, entry in maps if entry]

    def compose(self):
        from assistant.turns import attention_caveat

        for path, entry in self.maps:
            rows, cols = entry.get("rows"), entry.get("cols")
            yield Static(Text(f"where the fusion core looked in {entry['image']} ({rows}x{cols} cells, "
                              "brighter = more attention):"), classes="attention-title")
            caveat = attention_caveat(entry)
            if caveat:
                yield Static(Text(caveat), classes="attention-caveat")
            yield HalfBlockImage(path, image=attention_picture(path, entry), classes="preview")


def attention_picture(path: Path, entry: dict) -> Any:
    """The image at ``path`` (at most 256 px a side) with the heat map of ``entry`` drawn over it;
    None when it cannot be read (the widget then says so)."""
    try:
        from PIL import Image

        from models.attention import AttentionMap, draw_attention

        amap = AttentionMap.from_dict(entry)
        with Image.open(path) as im:
            picture = im.convert("RGB")
        w, h = picture.size
        picture.thumbnail((256, 256))
        sx, sy = picture.width / w, picture.height / h
        left, top, right, bottom = amap.box
        amap.box = (left * sx, top * sy, right * sx, bottom * sy)
        return draw_attention(picture, amap)
    except Exception:  # unreadable file or a malformed entry: the title line still stands
        return None


class AssistantMessage(Vertical):
    """The reply: Markdown that grows as chunks stream in, then a one-line footer."""

    def __init__(self, text: str = "", *, footer: str = "", waiting: str = "…") -> None:
        super().__init__(classes="message assistant")
        self.initial = text
        self.footer_text = footer
        self.waiting = waiting
        self.text = text
        self._stream = None

    def compose(self):
        # Imported with the first reply shown, after the first frame (markdown-it and Textual's
        # Markdown widgets take about a tenth of a second to import).
        from textual.widgets import Markdown

        waiting = Static(Text(self.waiting), classes="waiting")
        waiting.display = not self.initial
        yield waiting
        yield Markdown(self.initial, classes="reply")
        footer = Static(Text(self.footer_text), classes="reply-footer")
        footer.display = bool(self.footer_text)
        yield footer

    @property
    def markdown(self) -> Markdown:
        return self.query_one(".reply")  # type: ignore[return-value]  (the Markdown widget)

    async def write(self, chunk: str) -> None:
        if self._stream is None:
            self.query_one(".waiting").display = False
            self._stream = self.markdown.get_stream(self.markdown)
        self.text += chunk
        await self._stream.write(chunk)

    async def finish(self, text: str | None, footer: str) -> None:
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        self.query_one(".waiting").display = False
        if text is not None and text.strip() != self.text.strip():
            self.text = text
            await self.markdown.update(text or "_(no reply)_")
        elif not self.text.strip():
            await self.markdown.update("_(no reply)_")
        self.set_footer(footer)

    def set_footer(self, footer: str) -> None:
        self.footer_text = footer
        widget = self.query_one(".reply-footer", Static)
        widget.update(Text(footer))
        widget.display = bool(footer)


class TurnView(Vertical):
    """One turn as the chat log shows it (a question and its reply); ``key`` identifies it to the
    worker that fills it, ``turn_id`` to the session store."""

    def __init__(self, key: int, user: UserMessage, reply: AssistantMessage, *, turn_id: int | None = None):
        super().__init__(classes="turn")
        self.key = key
        self.turn_id = turn_id
        self.user = user
        self.reply = reply

    def compose(self):
        yield self.user
        yield self.reply


class ChatLog(VerticalScroll):
    """The conversation; stays scrolled to the bottom while replies stream in."""

    can_focus = True


class SystemLine(Static):
    """A line from the app itself (command output, notices kept in the log)."""


# ----------------------------------------------------------------------------- input


class ChatInput(Input):
    """The input bar. A paste made only of image/audio file paths attaches them instead."""

    class Attach(Message):
        def __init__(self, items: list[Pending]) -> None:
            super().__init__()
            self.items = items

    def _on_paste(self, event: events.Paste) -> None:
        from assistant.tui.attachments import split_paths

        rest, found = split_paths(event.text)
        if found and not rest.strip():
            event.prevent_default()  # Input's handler does not run: nothing is inserted
            event.stop()
            self.post_message(self.Attach(found))
        # otherwise Input's own paste handler runs next (Textual calls each class's handler)


class AttachmentBar(Horizontal):
    """Chips for the files that go with the next message."""

    def show(self, items: list[Pending]) -> None:
        self.remove_children()
        self.mount_all([Static(Text(p.label), classes=f"chip {p.kind}") for p in items])
        self.display = bool(items)


class LevelMeter(Static):
    """Microphone level while listening: a bar that follows the input's loudness."""

    level: reactive[float] = reactive(0.0)
    label: reactive[str] = reactive("listening")
    hint: reactive[str] = reactive("ctrl+r stops")
    WIDTH = 24

    def render(self) -> Text:
        filled = round(max(0.0, min(1.0, self.level)) * self.WIDTH)
        bar = Text(f"● {self.label} ", style="bold red")
        bar.append("█" * filled, style="green" if filled < self.WIDTH * 0.8 else "yellow")
        bar.append("░" * (self.WIDTH - filled), style="dim")
        bar.append(f"  {self.hint}", style="dim")
        return bar


class StatusBar(Static):
    """Models in use, load progress, the last turn's timings, voice state."""

    SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    models_loading: reactive[bool] = reactive(True)
    load_elapsed: reactive[int] = reactive(0)
    frame: reactive[int] = reactive(0)
    models: reactive[str] = reactive("")
    timings: reactive[str] = reactive("")
    speak: reactive[bool] = reactive(False)
    speaking: reactive[bool] = reactive(False)
    busy: reactive[bool] = reactive(False)
    error: reactive[str] = reactive("")
    stage: reactive[str] = reactive("")
    talk: reactive[str] = reactive("")
    """The hands-free loop's state ("" when off)."""

    def render(self) -> Text:
        # Most important first: a narrow terminal cuts the end of the line.
        t = Text()
        if self.error:
            t.append(f"✗ models failed to load: {self.error}", style="bold red")
        elif self.models_loading:
            t.append(f"{self.SPINNER[self.frame % len(self.SPINNER)]} loading models"
                     f"{': ' + self.stage if self.stage else ''}… {self.load_elapsed}s", style="bold yellow")
        elif self.busy:
            t.append("replying… esc stops", style="italic")
        elif self.timings:
            t.append(f"last turn: {self.timings}")
        else:
            t.append("ready", style="green")
        if self.talk:
            t.append(f"  │  🎙 hands-free: {self.talk} (F5 ends)", style="bold cyan")
        if self.speaking:
            t.append("  │  🔊 speaking (esc stops)", style="bold magenta")
        else:
            t.append(f"  │  🔈 {'on' if self.speak else 'off'}", style="dim")
        if self.models:
            t.append(f"  │  {self.models}", style="dim")
        return t


def format_timings(timings: dict[str, float], limit: int = 5) -> str:
    items = list(timings.items())[:limit]
    return " · ".join(f"{k.replace('_', ' ')} {v:.2f}s" for k, v in items)


__all__ = [
    "AssistantMessage", "AttachmentBar", "AttentionView", "ChatInput", "ChatLog", "HalfBlockImage", "ImageText", "LevelMeter",
    "StatusBar", "SystemLine", "TurnView", "UserMessage", "as_attachment",
    "format_timings", "image_preview",
]
