"""Settings: one pydantic-settings object for every process (`voxline.config.settings`), fields by group."""

from voxline.config.settings import Settings
from voxline.config.sources import ENV_FILE_VAR, ENV_PREFIX, SECRETS, SECRETS_DIR_VAR, ConfigError
from voxline.config.types import parse_port_range

__all__ = ["ENV_FILE_VAR", "ENV_PREFIX", "SECRETS", "SECRETS_DIR_VAR", "ConfigError", "Settings", "parse_port_range"]
