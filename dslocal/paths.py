"""Where dslocal keeps things: platformdirs locations, or one folder under ``DSLOCAL_HOME``.

``DSLOCAL_CONFIG`` names the config file directly. Nothing is created at import;
:func:`resolve_paths` only computes locations.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

APP_NAME = "dslocal"
HOME_ENV = "DSLOCAL_HOME"
CONFIG_ENV = "DSLOCAL_CONFIG"


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    data_dir: Path
    cache_dir: Path
    state_dir: Path
    log_dir: Path
    config_file: Path

    @property
    def default_models_dir(self) -> Path:
        """Where downloaded GGUF files go unless the ``models_dir`` setting says otherwise."""
        return self.data_dir / "models"

    def as_dict(self) -> dict[str, str]:
        return {key: str(value) for key, value in asdict(self).items()}


def resolve_paths(env: Mapping[str, str] | None = None) -> Paths:
    """Compute every location; ``DSLOCAL_HOME`` puts them all under one folder."""
    env = os.environ if env is None else env
    home = env.get(HOME_ENV, "").strip()
    if home:
        root = Path(home).expanduser().absolute()
        dirs = {
            "config_dir": root / "config",
            "data_dir": root / "data",
            "cache_dir": root / "cache",
            "state_dir": root / "state",
            "log_dir": root / "logs",
        }
    else:
        import platformdirs

        pd = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
        dirs = {
            "config_dir": Path(pd.user_config_dir),
            "data_dir": Path(pd.user_data_dir),
            "cache_dir": Path(pd.user_cache_dir),
            "state_dir": Path(pd.user_state_dir),
            "log_dir": Path(pd.user_log_dir),
        }
    config_override = env.get(CONFIG_ENV, "").strip()
    config_file = Path(config_override).expanduser().absolute() if config_override else dirs["config_dir"] / "config.toml"
    return Paths(config_file=config_file, **dirs)
