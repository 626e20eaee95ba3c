"""ssftp.yaml: its schema, the loader that explains errors, and hot reload."""

from ssftp.config.loader import LoadedConfig, load_config, parse_config
from ssftp.config.schema import SsftpConfig
from ssftp.errors import ConfigIssue

__all__ = [
    "ConfigIssue",
    "LoadedConfig",
    "SsftpConfig",
    "load_config",
    "parse_config",
]
