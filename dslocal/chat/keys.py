"""API keys for cloud backends: from the environment or the OS keyring, never from a file in clear.

The key is returned to the caller that puts it in an Authorization header; it is never printed,
logged or stored by dslocal itself (the keyring holds it). ``describe`` says where a key would come
from without showing it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from dslocal.errors import ConfigError

KEYRING_SERVICE = "dslocal"


@dataclass(frozen=True)
class KeySpec:
    name: str  # the keyring user name, e.g. "deepseek"
    env: str  # e.g. "DEEPSEEK_API_KEY"
    label: str


KEYS = {
    "deepseek": KeySpec("deepseek", "DEEPSEEK_API_KEY", "the DeepSeek API"),
    "openai": KeySpec("openai", "DSLOCAL_OPENAI_API_KEY", "an OpenAI-compatible server"),
}


def spec(name: str) -> KeySpec:
    try:
        return KEYS[name]
    except KeyError:
        raise ConfigError(f"no API key named {name!r}", f"known: {', '.join(KEYS)}") from None


def _keyring():  # -> module or None
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:  # pragma: no cover - a dependency
        return None
    if isinstance(keyring.get_keyring(), fail.Keyring):
        return None
    return keyring


def get_key(name: str) -> str | None:
    """The key from the environment first, then the OS keyring; None if neither has one."""
    key_spec = spec(name)
    value = os.environ.get(key_spec.env, "").strip()
    if value:
        return value
    ring = _keyring()
    if ring is None:
        return None
    try:
        return ring.get_password(KEYRING_SERVICE, key_spec.name) or None
    except Exception:  # noqa: BLE001 - a locked or broken keyring is "no key", said by describe()
        return None


def describe(name: str) -> str:
    """Where the key comes from, never the key."""
    key_spec = spec(name)
    if os.environ.get(key_spec.env, "").strip():
        return f"set in the environment ({key_spec.env})"
    ring = _keyring()
    if ring is None:
        return f"not set (no OS keyring here; set {key_spec.env})"
    try:
        found = ring.get_password(KEYRING_SERVICE, key_spec.name)
    except Exception as exc:  # noqa: BLE001
        return f"unknown: the keyring failed ({type(exc).__name__})"
    return "stored in the OS keyring" if found else f"not set (dslocal key set {key_spec.name}, or {key_spec.env})"


def set_key(name: str, value: str) -> None:
    key_spec = spec(name)
    if not value.strip():
        raise ConfigError("an empty key was given", "paste the key when asked")
    ring = _keyring()
    if ring is None:
        raise ConfigError("there is no OS keyring on this machine to keep the key in",
                          f"set {key_spec.env} in the environment instead")
    try:
        ring.set_password(KEYRING_SERVICE, key_spec.name, value.strip())
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"the OS keyring refused the key ({type(exc).__name__})",
                          f"unlock the keyring, or set {key_spec.env} instead") from None


def delete_key(name: str) -> bool:
    key_spec = spec(name)
    ring = _keyring()
    if ring is None:
        return False
    try:
        ring.delete_password(KEYRING_SERVICE, key_spec.name)
    except Exception:  # noqa: BLE001 - keyring.errors.PasswordDeleteError: nothing stored
        return False
    return True
