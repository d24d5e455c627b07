"""One Settings object for every process: defaults, then secrets files, `.env`, `VOXLINE_*` env vars, then flags.

`Settings` is a pydantic-settings model: every field is typed, with its range or its
choices, and checked as a whole before any process loads a model or opens a port. Its
fields live by group, one module each (media, security, bus, models, agent, ops);
`Settings` joins them and adds the checks across groups.
`Settings(**values)` is the defaults plus `values` (nothing read from outside);
`Settings.from_env()` adds, lowest first, files in the secrets directory
(`VOXLINE_SECRETS_DIR`, default `/run/secrets/voxline`, one file per setting named like its
variable), the `.env` file (`VOXLINE_ENV_FILE`, default `./.env`) and `VOXLINE_<FIELD>`
variables; keyword overrides (the CLI's flags) win over all of them. A bad value is one
`ConfigError` line naming the variable or flag; a `VOXLINE_` variable that is no setting is
reported (a warning with the closest name) and ignored. Defaults run the embedded
one-process server with no configuration at all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from voxline.config.agent import AgentSettings
from voxline.config.bus import BusSettings
from voxline.config.media import MediaSettings
from voxline.config.models import ModelSettings
from voxline.config.ops import OpsSettings
from voxline.config.security import SecuritySettings
from voxline.config.sources import SECRETS, build, read_sources


# pydantic takes the fields of the last base first: the groups are listed last-first, so the
# fields (and the CLI's flags) come in the order media, security, bus, models, agent, ops.
class Settings(OpsSettings, AgentSettings, ModelSettings, BusSettings, SecuritySettings, MediaSettings, BaseSettings):
    """Every setting of every process, checked as a whole."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_default=True)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.session_store == "redis" and not self.redis_url:
            raise ValueError("session_store=redis needs redis_url (VOXLINE_REDIS_URL or --redis-url)")
        if not self.end_of_turn_min_ms <= self.end_of_turn_silence_ms <= self.max_end_of_turn_ms:
            raise ValueError("end_of_turn_min_ms <= end_of_turn_silence_ms <= max_end_of_turn_ms must hold")
        return self

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        """`Settings(...)` reads nothing from outside: `from_env` reads the sources, each labelled for errors."""
        return (init_settings,)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, defaults: Mapping[str, Any] | None = None,
                 **overrides: Any) -> Settings:
        """Defaults, then `defaults`, secrets files, `.env`, VOXLINE_* variables, then keyword overrides.

        `env` replaces the process environment (tests). Overrides that are None were not given.
        Raises ConfigError (one line) for a bad value; warns about VOXLINE_ names that are no setting.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = dict(defaults or {})
        labels: dict[str, str] = {name: name for name in values}
        for label, source in read_sources(cls, env):
            for name, value in source.items():
                values[name], labels[name] = value, label(name)
        for name, value in overrides.items():
            if value is not None:
                values[name], labels[name] = value, "--" + name.replace("_", "-")
        return build(cls, values, labels)

    def replace(self, **overrides: Any) -> Settings:
        """A copy with `overrides` (None: not given), checked like the original."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return build(type(self), {**self.model_dump(), **given}, {k: k for k in given})

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets hidden, for start-up logs."""
        out = self.model_dump()
        for secret in SECRETS:
            if out[secret]:
                out[secret] = "***"
        return out

