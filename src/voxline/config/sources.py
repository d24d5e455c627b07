"""Where settings come from and how a bad one is reported: secrets files, `.env`, `VOXLINE_*` variables.

Each outside source is read with pydantic-settings' own source classes, then labelled, so
that a bad value is one `ConfigError` line naming the file, variable or flag it came from.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, DotEnvSettingsSource, EnvSettingsSource, SecretsSettingsSource

ENV_PREFIX = "VOXLINE_"
ENV_FILE_VAR = ENV_PREFIX + "ENV_FILE"  # where .env is read from (not a setting: it says where settings are)
SECRETS_DIR_VAR = ENV_PREFIX + "SECRETS_DIR"
DEFAULT_ENV_FILE = ".env"
DEFAULT_SECRETS_DIR = "/run/secrets/voxline"
SOURCE_VARS = frozenset({ENV_FILE_VAR, SECRETS_DIR_VAR})
SECRETS = ("auth_token", "admin_token", "metrics_token", "api_key", "stt_api_key", "llm_api_key", "tts_api_key",
           "redis_url", "turn_secret", "kafka_sasl_password")  # redis_url may hold a password

log = logging.getLogger("voxline.config")

S = TypeVar("S", bound=BaseSettings)


class ConfigError(ValueError):
    """A setting is invalid: one line that names the variable or flag and says what is wrong."""


def read_sources(cls: type[BaseSettings], env: Mapping[str, str]) -> list[tuple[Any, dict[str, Any]]]:
    """(label for a field, {field: raw value}) from each outside source, lowest precedence first."""
    fields = set(cls.model_fields)
    out: list[tuple[Any, dict[str, Any]]] = []
    secrets_dir = Path(env.get(SECRETS_DIR_VAR, DEFAULT_SECRETS_DIR))
    if secrets_dir.is_dir():
        secrets = SecretsSettingsSource(cls, secrets_dir=secrets_dir, env_prefix=ENV_PREFIX)
        out.append((lambda n: f"{secrets_dir}/{ENV_PREFIX}{n.upper()}", _known(secrets(), fields)))
    env_file = Path(env.get(ENV_FILE_VAR, DEFAULT_ENV_FILE))
    if env_file.is_file():
        dotenv = DotEnvSettingsSource(cls, env_file=env_file, env_prefix=ENV_PREFIX)
        _warn_unknown(dotenv.env_vars, fields, f"{env_file}: ")
        out.append((lambda n: f"{ENV_PREFIX}{n.upper()} in {env_file}", _known(dotenv(), fields)))
    variables = EnvSettingsSource(cls, env_prefix=ENV_PREFIX)
    variables.env_vars = {k.lower(): v for k, v in env.items()}
    _warn_unknown(variables.env_vars, fields)
    out.append((lambda n: f"{ENV_PREFIX}{n.upper()}", _known(variables(), fields)))
    return out


def _known(values: Mapping[str, Any], fields: set[str]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k in fields}


def _warn_unknown(names: Mapping[str, Any], fields: set[str], where: str = "") -> None:
    """A VOXLINE_ name that is no setting is a typo until shown otherwise: say so, with the nearest name."""
    known = {ENV_PREFIX + f.upper() for f in fields} | SOURCE_VARS
    for name in sorted(n.upper() for n in names):
        if name.startswith(ENV_PREFIX) and name not in known:
            near = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            log.warning("%s%s is not a voxline setting; ignored%s", where, name, hint)


def build(cls: type[S], values: dict[str, Any], labels: Mapping[str, str]) -> S:
    try:
        return cls(**values)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, values, labels)) from None


def _one_line(exc: ValidationError, values: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        if not name:
            parts.append(message)
        elif name in values:
            shown = "'***'" if name in SECRETS else repr(values[name])  # a secret is never echoed
            parts.append(f"{labels.get(name, name)}={shown}: {message}")
        else:
            parts.append(f"{name}: {message}")
    return "; ".join(parts)
