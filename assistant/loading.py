"""How the pipeline gets its models: lazy slots, the remote generator route, the plugin host,
and the encoders and speech engines plugins register beside the built-ins."""

from __future__ import annotations

import os
import threading
from importlib import resources
from pathlib import Path


from assistant.config import Settings
from assistant.errors import ConfigError


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
