"""Settings with one precedence rule: flags > environment > config file > defaults.

The config file is TOML with top-level keys named as in :data:`SETTINGS`
(``dslocal config path`` shows where it lives). An unreadable file is a
:class:`ConfigError` naming the file and the fix. Values are checked (source names,
URLs, whole numbers in range, folders made absolute) when ``config set`` stores them and
again when they are read; a bad value is an error only for the commands that use that
setting, and the error names the file or variable it came from. Keys the file has but
this version does not know are ignored with a warning (a newer dslocal may have written them).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dslocal.errors import ConfigError
from dslocal.fsutil import atomic_write_bytes
from dslocal.paths import Paths, resolve_paths

SOURCE_NAMES = ("auto", "hf", "hf-mirror", "modelscope")


@dataclass(frozen=True)
class SettingSpec:
    key: str
    kind: type
    default: Callable[[Paths], object]
    env: tuple[str, ...]
    help: str
    minimum: int | None = None
    maximum: int | None = None
    check: str | None = None  # "url", "source" or "host": what a string value must be


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "models_dir", Path, lambda p: p.default_models_dir, ("DSLOCAL_MODELS_DIR",),
        "folder for downloaded GGUF files",
    ),
    SettingSpec(
        "source", str, lambda p: "auto", ("DSLOCAL_SOURCE",),
        "hf, hf-mirror, modelscope, auto, a hub URL or a folder", check="source",
    ),
    SettingSpec(
        "hf_endpoint", str, lambda p: "https://huggingface.co", ("DSLOCAL_HF_ENDPOINT", "HF_ENDPOINT"),
        "Hugging Face or a compatible mirror (https://hf-mirror.com)", check="url",
    ),
    SettingSpec(
        "hf_mirror_endpoint", str, lambda p: "https://hf-mirror.com", ("DSLOCAL_HF_MIRROR_ENDPOINT",),
        "the Hugging Face mirror used by --source hf-mirror", check="url",
    ),
    SettingSpec(
        "modelscope_endpoint", str, lambda p: "https://www.modelscope.cn", ("DSLOCAL_MODELSCOPE_ENDPOINT",),
        "ModelScope, used by --source modelscope", check="url",
    ),
    SettingSpec(
        "ollama_release_base", str, lambda p: "https://github.com/ollama/ollama/releases/download",
        ("DSLOCAL_OLLAMA_RELEASE_BASE",), "where 'dslocal ollama install' gets releases (a mirror works)",
        check="url",
    ),
    SettingSpec(
        "ollama_host", str, lambda p: "127.0.0.1:11434", ("OLLAMA_HOST",),
        "address of the Ollama server", check="host",
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
class _Later:
    """A value checked when it is read: its check imports the HTTP stack, which most commands never need."""

    check: Callable[[], object]


@dataclass(frozen=True)
class Settings:
    """Effective settings; ``origins[key]`` tells where each value came from.

    A setting whose value is invalid raises its :class:`ConfigError` when it is read, so
    a bad ``DSLOCAL_CONNECTIONS`` breaks downloads, not ``dslocal hw``. ``warnings`` are
    for the front end to show (unknown keys in the file).
    """

    values: Mapping[str, object]
    origins: Mapping[str, str]
    paths: Paths
    errors: Mapping[str, ConfigError] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def __getitem__(self, key: str) -> object:
        if key in self.errors:
            raise self.errors[key]
        value = self.values[key]
        return value.check() if isinstance(value, _Later) else value

    @property
    def models_dir(self) -> Path:
        return self["models_dir"]  # type: ignore[return-value]

    def as_dict(self) -> dict[str, dict[str, object]]:
        return {spec.key: {"value": _plain(self[spec.key]), "origin": self.origins[spec.key]} for spec in SETTINGS}


def _plain(value: object) -> object:
    return str(value) if isinstance(value, Path) else value


# -- checking one value --------------------------------------------------------------------------------------

def _whole(spec: SettingSpec, raw: object) -> int:
    if isinstance(raw, bool) or isinstance(raw, float) and not raw.is_integer():
        raise ValueError(f"must be a whole number, not {raw!r}")
    try:
        value = int(raw.strip() if isinstance(raw, str) else raw)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"must be a whole number, not {raw!r}") from None
    if spec.minimum is not None and value < spec.minimum or spec.maximum is not None and value > spec.maximum:
        raise ValueError(f"= {value} is out of range {spec.minimum}..{spec.maximum}")
    return value


def _host_name_ok(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return True
    except ValueError:
        pass
    if any(c.isspace() or c in "/\\@#?" for c in host):
        return False
    try:
        host.encode("idna")  # labels of 1..63 characters, 253 in all
    except UnicodeError:
        return False
    return True


def check_url(raw: str) -> str:
    """An http(s) URL with a host; returned as given."""
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises for a port that is not a number in 0..65535
    except ValueError as exc:
        raise ValueError(f"{raw!r} is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not _host_name_ok(parts.hostname):
        raise ValueError(f"{raw!r} is not an http(s) URL with a host name, e.g. https://hf-mirror.com")
    return raw


def check_host(raw: str) -> str:
    """``OLLAMA_HOST`` as Ollama reads it, refusing what no client could connect to; returned as given."""
    from dslocal.ollama.client import base_url

    try:
        check_url(base_url(raw))
    except ValueError:
        raise ValueError(f"{raw!r} is not an Ollama address such as 127.0.0.1:11434 or http://[::1]:11434") from None
    return raw


def _folder(raw: str, base: Path) -> Path:
    if not raw.strip():
        raise ValueError("is empty")
    path = Path(raw).expanduser()
    path = path if path.is_absolute() else base / path
    path = Path(os.path.abspath(path))
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a folder")
    return path


def check_source(raw: str, base: Path) -> str:
    """hf, hf-mirror, modelscope, auto, an http(s) URL or an existing folder (made absolute)."""
    if raw in SOURCE_NAMES:
        return raw
    if raw.startswith(("http://", "https://")):
        return check_url(raw)
    try:
        path = _folder(raw, base)
    except ValueError:
        path = None
    if path is None or not path.is_dir():
        raise ValueError(f"{raw!r} is not hf, hf-mirror, modelscope, auto, an http(s) URL or an existing folder")
    return str(path)


def check_value(spec: SettingSpec, raw: object, base: Path | None = None) -> object:
    """``raw`` as ``spec``'s value; ValueError says what is wrong. Relative paths are taken from ``base``."""
    base = base or Path.cwd()
    if spec.kind is int:
        return _whole(spec, raw)
    if not isinstance(raw, str):
        raise ValueError(f"must be a string, not {raw!r}")
    if spec.kind is Path:
        return _folder(raw, base)
    if spec.check == "url":
        return check_url(raw)
    if spec.check == "host":
        return check_host(raw)
    if spec.check == "source":
        return check_source(raw, base)
    return raw


def _fix_hint(spec: SettingSpec, origin: str) -> str:
    if origin.startswith("env:"):
        return f"fix or unset {origin.removeprefix('env:')} ({spec.help})"
    return f"fix it: dslocal config set {spec.key} VALUE, or dslocal config unset {spec.key} ({spec.help})"


def _describe(spec: SettingSpec, reason: str) -> str:
    """``connections = 0 is out of range 1..64``, ``source: 'x' is not ...``."""
    return f"{spec.key} {reason}" if reason.startswith(("=", "must ", "is ")) else f"{spec.key}: {reason}"


def _coerce(spec: SettingSpec, raw: object, where: str, origin: str, base: Path | None = None) -> object:
    try:
        return check_value(spec, raw, base)
    except ValueError as exc:
        raise ConfigError(f"{where}: {_describe(spec, str(exc))}", _fix_hint(spec, origin)) from None


# -- the file ------------------------------------------------------------------------------------------------

def read_config_file(path: Path) -> dict[str, object]:
    """Parse the TOML config file (every key, known or not); a missing file is an empty config."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib

    hint = f"fix or remove {path}; 'dslocal config set --help' lists the settings"
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
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}", hint) from None


def _did_you_mean(key: str) -> str:
    """``did you mean 'hf_endpoint'?`` for a near miss, else ''."""
    close = difflib.get_close_matches(key, SPECS_BY_KEY, n=1)
    return f"did you mean {close[0]!r}?" if close else ""


def _unknown_key_warnings(path: Path, data: Mapping[str, object]) -> tuple[str, ...]:
    return tuple(
        f"warning: config file {path}: unknown setting {key!r} ignored" + (f" ({guess})" if (guess := _did_you_mean(key)) else "")
        for key in data if key not in SPECS_BY_KEY
    )


def _origin(spec: SettingSpec, flag: object, env: Mapping[str, str], file_values: Mapping[str, object]) -> str:
    """flag, env:NAME, file or default: where ``spec``'s value comes from."""
    if flag is not None:
        return "flag"
    env_name = next((name for name in spec.env if env.get(name, "").strip()), None)
    if env_name is not None:
        return f"env:{env_name}"
    return "file" if spec.key in file_values else "default"


def _value(spec: SettingSpec, origin: str, flag: object, env: Mapping[str, str], file_values: Mapping[str, object],
           paths: Paths) -> object:
    """The value from ``origin``; raises ConfigError naming the variable or file of a bad one."""
    if origin == "flag":  # typed by click already
        if spec.kind is int:
            return int(flag)  # type: ignore[call-overload]
        return Path(str(flag)).expanduser() if spec.kind is Path else flag
    if origin.startswith("env:"):
        name = origin.removeprefix("env:")
        where, raw, base = f"environment variable {name}", env[name].strip(), None
    elif origin == "file":
        where, raw, base = f"config file {paths.config_file}", file_values[spec.key], paths.config_file.parent
    else:
        return spec.default(paths)
    if spec.check == "host":
        return _Later(lambda: _coerce(spec, raw, where, origin, base))
    return _coerce(spec, raw, where, origin, base)


def load_settings(
    flags: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    paths: Paths | None = None,
) -> Settings:
    """Resolve every setting: flags > environment > config file > defaults.

    ``flags`` values of ``None`` mean "not given on the command line". A bad value is
    kept as the error its setting raises when read.
    """
    env = os.environ if env is None else env
    paths = paths or resolve_paths(env)
    file_values = read_config_file(paths.config_file)
    values: dict[str, object] = {}
    origins: dict[str, str] = {}
    errors: dict[str, ConfigError] = {}
    for spec in SETTINGS:
        flag = (flags or {}).get(spec.key)
        origins[spec.key] = origin = _origin(spec, flag, env, file_values)
        try:
            values[spec.key] = _value(spec, origin, flag, env, file_values, paths)
        except ConfigError as exc:
            errors[spec.key] = exc
    return Settings(values=values, origins=origins, paths=paths, errors=errors,
                    warnings=_unknown_key_warnings(paths.config_file, file_values))


# -- changing the file ---------------------------------------------------------------------------------------

def _require_known(key: str) -> SettingSpec:
    spec = SPECS_BY_KEY.get(key)
    if spec is None:
        guess = _did_you_mean(key)
        raise ConfigError(f"unknown setting {key!r}", f"{guess + ' ' if guess else ''}known settings: {', '.join(SPECS_BY_KEY)}")
    return spec


def _write(path: Path, data: Mapping[str, object]) -> None:
    import tomli_w

    atomic_write_bytes(path, tomli_w.dumps(dict(data)).encode("utf-8"))


def set_config_value(path: Path, key: str, raw: str) -> object:
    """Validate ``raw`` for ``key`` (paths made absolute) and store it in the config file (atomically)."""
    spec = _require_known(key)
    try:
        value = check_value(spec, raw)
    except ValueError as exc:
        raise ConfigError(_describe(spec, str(exc)), f"e.g. {_example(spec)} ({spec.help})") from None
    data = read_config_file(path)
    data[key] = str(value) if isinstance(value, Path) else value
    _write(path, data)
    return value


EXAMPLES = {
    "models_dir": "/data/models", "source": "hf-mirror", "hf_endpoint": "https://hf-mirror.com",
    "hf_mirror_endpoint": "https://hf-mirror.com", "modelscope_endpoint": "https://www.modelscope.cn",
    "ollama_release_base": "https://mirror.example/ollama/releases/download", "ollama_host": "127.0.0.1:11434",
    "ollama_models": "/data/ollama/models", "connections": "8",
}


def _example(spec: SettingSpec) -> str:
    return f"dslocal config set {spec.key} {EXAMPLES.get(spec.key, 'VALUE')}"


def unset_config_value(path: Path, key: str) -> bool:
    """Remove ``key`` from the config file; returns whether it was there."""
    _require_known(key)
    data = read_config_file(path)
    if key not in data:
        return False
    del data[key]
    _write(path, data)
    return True
