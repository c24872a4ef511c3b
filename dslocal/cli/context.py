"""State shared by the commands of one invocation (bound to click's ``ctx.obj``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dslocal.config import Settings, load_settings
from dslocal.paths import Paths, resolve_paths


@dataclass
class AppContext:
    config_file: Path | None = None
    _paths: Paths | None = field(default=None, repr=False)

    @property
    def paths(self) -> Paths:
        if self._paths is None:
            paths = resolve_paths()
            if self.config_file is not None:
                paths = dataclasses.replace(paths, config_file=self.config_file.expanduser().absolute())
            self._paths = paths
        return self._paths

    def settings(self, flags: Mapping[str, object] | None = None) -> Settings:
        """Effective settings; ``flags`` are this command's setting flags (None = not given)."""
        return load_settings(flags=flags, paths=self.paths)
