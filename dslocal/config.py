"""Settings with one precedence rule: flags > environment > config file > defaults.

The config file is TOML with top-level keys named as in :data:`SETTINGS`
(``dslocal config path`` shows where it lives). An unreadable file, an unknown key
or a value of the wrong type is a :class:`ConfigError` naming the file and the fix.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dslocal.errors import ConfigError
from dslocal.fsutil import atomic_write_bytes
from dslocal.paths import Paths, resolve_paths


@dataclass(frozen=True)
class SettingSpec:
    key: str
    kind: type
    default: Callable[[Paths], object]
    env: tuple[str, ...]
    help: str
    minimum: int | None = None
    maximum: int | None = None


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "models_dir", Path, lambda p: p.default_models_dir, ("DSLOCAL_MODELS_DIR",),
        "folder for downloaded GGUF files",
    ),
    SettingSpec(
        "source", str, lambda p: "auto", ("DSLOCAL_SOURCE",),
        "where models come from: hf, hf-mirror, modelscope, a URL, a folder, or auto",
    ),
    SettingSpec(
        "hf_endpoint", str, lambda p: "https://huggingface.co", ("DSLOCAL_HF_ENDPOINT", "HF_ENDPOINT"),
        "Hugging Face or a compatible mirror (e.g. https://hf-mirror.com)",
    ),
    SettingSpec(
        "hf_mirror_endpoint", str, lambda p: "https://hf-mirror.com", ("DSLOCAL_HF_MIRROR_ENDPOINT",),
        "the Hugging Face mirror used by --source hf-mirror",
    ),
    SettingSpec(
        "modelscope_endpoint", str, lambda p: "https://www.modelscope.cn", ("DSLOCAL_MODELSCOPE_ENDPOINT",),
        "ModelScope, used by --source modelscope",
    ),
    SettingSpec(
        "ollama_release_base", str, lambda p: "https://github.com/ollama/ollama/releases/download",
        ("DSLOCAL_OLLAMA_RELEASE_BASE",), "where 'dslocal ollama install' fetches releases (a GitHub mirror works)",
    ),
    SettingSpec(
        "ollama_host", str, lambda p: "127.0.0.1:11434", ("OLLAMA_HOST",),
        "address of the Ollama server",
    ),
    SettingSpec(
        "ollama_models", Path, lambda p: Path.home() / ".ollama" / "models", ("OLLAMA_MODELS",),
        "Ollama's model store (blobs/ and manifests/)",
    ),
    SettingSpec(
        "connections", int, lambda p: 4, ("DSLOCAL_CONNECTIONS",),
        "HTTP connections per downloaded file", minimum=1, maximum=64,
    ),
)
SPECS_BY_KEY: dict[str, SettingSpec] = {spec.key: spec for spec in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Effective settings; ``origins[key]`` tells where each value came from."""

    values: Mapping[str, object]
    origins: Mapping[str, str]
    paths: Paths

    def __getitem__(self, key: str) -> object:
        return self.values[key]

    @property
    def models_dir(self) -> Path:
        return self.values["models_dir"]  # type: ignore[return-value]

    def as_dict(self) -> dict[str, dict[str, object]]:
        return {
            key: {"value": _plain(self.values[key]), "origin": self.origins[key]} for key in self.values
        }


def _plain(value: object) -> object:
    return str(value) if isinstance(value, Path) else value


def _coerce(spec: SettingSpec, raw: object, where: str) -> object:
    hint = f"set {spec.key} to {'a whole number' if spec.kind is int else 'a string'} ({spec.help})"
    if spec.kind is int:
        if isinstance(raw, bool):
            raise ConfigError(f"{where}: {spec.key} must be a whole number, not {raw!r}", hint)
        try:
            value = int(raw)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {spec.key} must be a whole number, not {raw!r}", hint) from None
        if spec.minimum is not None and value < spec.minimum or spec.maximum is not None and value > spec.maximum:
            raise ConfigError(
                f"{where}: {spec.key} = {value} is out of range {spec.minimum}..{spec.maximum}", hint
            )
        return value
    if not isinstance(raw, str):
        raise ConfigError(f"{where}: {spec.key} must be a string, not {raw!r}", hint)
    if spec.kind is Path:
        return Path(raw).expanduser()
    return raw


def read_config_file(path: Path) -> dict[str, object]:
    """Parse the TOML config file; a missing file is an empty config."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib

    hint = f"fix or remove {path} (see 'dslocal config show' for the known settings)"
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return {}
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory", hint) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}", hint) from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text", hint) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}", hint) from None
    for key in data:
        if key not in SPECS_BY_KEY:
            known = ", ".join(SPECS_BY_KEY)
            raise ConfigError(f"config file {path}: unknown setting {key!r}", f"known settings: {known}")
    return data


def load_settings(
    flags: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    paths: Paths | None = None,
) -> Settings:
    """Resolve every setting: flags > environment > config file > defaults.

    ``flags`` values of ``None`` mean "not given on the command line".
    """
    env = os.environ if env is None else env
    paths = paths or resolve_paths(env)
    file_values = read_config_file(paths.config_file)
    values: dict[str, object] = {}
    origins: dict[str, str] = {}
    for spec in SETTINGS:
        flag = (flags or {}).get(spec.key)
        env_name = next((name for name in spec.env if env.get(name, "").strip()), None)
        if flag is not None:
            values[spec.key] = _coerce(spec, flag, f"--{spec.key.replace('_', '-')}")
            origins[spec.key] = "flag"
        elif env_name is not None:
            values[spec.key] = _coerce(spec, env[env_name].strip(), f"environment variable {env_name}")
            origins[spec.key] = f"env:{env_name}"
        elif spec.key in file_values:
            values[spec.key] = _coerce(spec, file_values[spec.key], f"config file {paths.config_file}")
            origins[spec.key] = "file"
        else:
            values[spec.key] = spec.default(paths)
            origins[spec.key] = "default"
    return Settings(values=values, origins=origins, paths=paths)


def _require_known(key: str) -> SettingSpec:
    spec = SPECS_BY_KEY.get(key)
    if spec is None:
        raise ConfigError(f"unknown setting {key!r}", f"known settings: {', '.join(SPECS_BY_KEY)}")
    return spec


def _write(path: Path, data: Mapping[str, object]) -> None:
    import tomli_w

    atomic_write_bytes(path, tomli_w.dumps(dict(data)).encode("utf-8"))


def set_config_value(path: Path, key: str, raw: str) -> object:
    """Validate ``raw`` for ``key`` and store it in the config file (atomically)."""
    spec = _require_known(key)
    value = _coerce(spec, raw, "value")
    data = read_config_file(path)
    data[key] = str(value) if isinstance(value, Path) else value
    _write(path, data)
    return value


def unset_config_value(path: Path, key: str) -> bool:
    """Remove ``key`` from the config file; returns whether it was there."""
    _require_known(key)
    data = read_config_file(path)
    if key not in data:
        return False
    del data[key]
    _write(path, data)
    return True
