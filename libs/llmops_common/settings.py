"""Base settings every service extends with its own env prefix (GATEWAY_, INFERENCE_, ...)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Fields common to all services; subclasses set `model_config` with their env prefix."""

    model_config = SettingsConfigDict(extra="ignore")

    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(8000, description="TCP port to listen on.")
    log_level: str = Field("INFO", description="Root log level (DEBUG, INFO, WARNING, ERROR).")
    log_json: bool = Field(True, description="Emit one JSON object per log line.")
    dev_mode: bool = Field(False, description="Allow development defaults for secrets; never enable in production.")
