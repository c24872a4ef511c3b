"""State shared by the commands of one invocation (bound to click's ``ctx.obj``), and shared option types."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from dslocal.config import Settings, load_settings
from dslocal.paths import Paths, resolve_paths


@dataclass
class AppContext:
    config_file: Path | None = None
    _paths: Paths | None = field(default=None, repr=False)
    _warned: set[str] = field(default_factory=set, repr=False)

    @property
    def paths(self) -> Paths:
        if self._paths is None:
            paths = resolve_paths()
            if self.config_file is not None:
                paths = dataclasses.replace(paths, config_file=self.config_file.expanduser().absolute())
            self._paths = paths
        return self._paths

    def settings(self, flags: Mapping[str, object] | None = None) -> Settings:
        """Effective settings; ``flags`` are this command's setting flags (None = not given).

        The settings' warnings (unknown keys in the config file) go to stderr once per invocation.
        """
        settings = load_settings(flags=flags, paths=self.paths)
        for warning in settings.warnings:
            if warning not in self._warned:
                self._warned.add(warning)
                click.echo(warning, err=True)
        return settings


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange, refusing NaN (which compares false with both ends, so FloatRange lets it in)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        result = super().convert(value, param, ctx)
        if isinstance(result, float) and not math.isfinite(result):
            self.fail(f"{value!r} is not a finite number in the range {self._describe_range()}", param, ctx)
        return result
