"""Settings from the environment (12-factor). Every variable starts with ``BIBLIODESK_``.

The same variables work for ``bibliodesk up`` (all services in one process) and for
``bibliodesk serve <service>`` (one service per container). Any variable ``X`` may instead be
given as ``X_FILE`` naming a file that holds the value (for secrets).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from zoneinfo import ZoneInfo

PREFIX = "BIBLIODESK_"
SERVICES = ("patrons", "requests", "reservations", "notify", "device_gateway")
DEFAULT_PORTS = {
    "patrons": 50051,
    "requests": 50052,
    "reservations": 50053,
    "notify": 50054,
    "device_gateway": 50055,
}


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class ServiceSettings:
    """Where one service listens, where peers reach it, and its database."""

    name: str
    listen: str
    address: str
    database_url: str


@dataclass(frozen=True)
class SmtpSettings:
    host: str = ""
    port: int = 25
    security: str = "none"  # none | starttls | tls
    username: str = ""
    password: str = ""
    mail_from: str = "Biblioteca <noreply@biblioteca.example>"
    reply_to: str = ""
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class Settings:
    home: Path
    services: Mapping[str, ServiceSettings]
    timezone: str = "Europe/Rome"
    log_format: str = "text"
    log_level: str = "INFO"
    metrics_listen: str = ""
    token_private_key_file: str = ""
    token_public_key_file: str = ""
    token_ttl_seconds: int = 8 * 3600
    service_secret: str = ""
    bootstrap_admin_password: str = ""
    shutdown_grace_seconds: float = 10.0
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_ca_file: str = ""
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def service(self, name: str) -> ServiceSettings:
        try:
            return self.services[name]
        except KeyError:
            raise SettingsError(f"unknown service {name!r}; known: {', '.join(SERVICES)}") from None

    def get(self, key: str, default: str = "") -> str:
        """A service-specific setting not modelled above (``BIBLIODESK_<KEY>``)."""
        return self.extra.get(key.upper(), default)

    def with_service(self, name: str, **changes: str) -> Settings:
        services = dict(self.services)
        services[name] = replace(services[name], **changes)
        return replace(self, services=services)


def _value(env: Mapping[str, str], key: str, default: str = "") -> str:
    name = PREFIX + key
    if name in env:
        return env[name]
    file_name = env.get(name + "_FILE")
    if file_name:
        try:
            return Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(f"{name}_FILE: cannot read {file_name}: {exc}") from exc
    return default


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = _value(env, key, str(default))
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{key} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = _value(env, key, str(default))
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{key} must be a number, got {raw!r}") from None


def _with_password(url: str, password: str) -> str:
    """``<SVC>_DATABASE_PASSWORD(_FILE)`` completes a URL that names no password."""
    if not password:
        return url
    from sqlalchemy.engine import make_url

    return make_url(url).set(password=password).render_as_string(hide_password=False)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Builds the settings from ``env`` (default ``os.environ``). Does no I/O beyond *_FILE reads."""
    env = os.environ if env is None else env
    home = Path(_value(env, "HOME", ".bibliodesk")).expanduser().resolve()
    services = {}
    for name in SERVICES:
        key = name.upper()
        port = DEFAULT_PORTS[name]
        services[name] = ServiceSettings(
            name=name,
            listen=_value(env, f"{key}_LISTEN", f"127.0.0.1:{port}"),
            address=_value(env, f"{key}_ADDRESS", f"127.0.0.1:{port}"),
            database_url=_with_password(
                _value(env, f"{key}_DATABASE_URL", f"sqlite:///{home / (name + '.db')}"),
                _value(env, f"{key}_DATABASE_PASSWORD"),
            ),
        )
    timezone = _value(env, "TIMEZONE", "Europe/Rome")
    try:
        ZoneInfo(timezone)
    except Exception:
        raise SettingsError(f"{PREFIX}TIMEZONE: unknown time zone {timezone!r}") from None
    security = _value(env, "SMTP_SECURITY", "none").lower()
    if security not in ("none", "starttls", "tls"):
        raise SettingsError(f"{PREFIX}SMTP_SECURITY must be none, starttls or tls, got {security!r}")
    smtp = SmtpSettings(
        host=_value(env, "SMTP_HOST"),
        port=_int(env, "SMTP_PORT", 465 if security == "tls" else 587 if security == "starttls" else 25),
        security=security,
        username=_value(env, "SMTP_USERNAME"),
        password=_value(env, "SMTP_PASSWORD"),
        mail_from=_value(env, "MAIL_FROM", SmtpSettings.mail_from),
        reply_to=_value(env, "MAIL_REPLY_TO"),
        timeout_seconds=_float(env, "SMTP_TIMEOUT_SECONDS", 10.0),
    )
    known = {PREFIX + k for k in ("HOME",)}
    extra = {k[len(PREFIX) :]: v for k, v in env.items() if k.startswith(PREFIX) and k not in known}
    log_format = _value(env, "LOG_FORMAT", "text").lower()
    if log_format not in ("text", "json"):
        raise SettingsError(f"{PREFIX}LOG_FORMAT must be text or json, got {log_format!r}")
    return Settings(
        home=home,
        services=services,
        timezone=timezone,
        log_format=log_format,
        log_level=_value(env, "LOG_LEVEL", "INFO").upper(),
        metrics_listen=_value(env, "METRICS_LISTEN"),
        token_private_key_file=_value(env, "TOKEN_PRIVATE_KEY_FILE"),
        token_public_key_file=_value(env, "TOKEN_PUBLIC_KEY_FILE"),
        token_ttl_seconds=_int(env, "TOKEN_TTL_SECONDS", 8 * 3600),
        service_secret=_value(env, "SERVICE_SECRET"),
        bootstrap_admin_password=_value(env, "BOOTSTRAP_ADMIN_PASSWORD"),
        shutdown_grace_seconds=_float(env, "SHUTDOWN_GRACE_SECONDS", 10.0),
        tls_cert_file=_value(env, "TLS_CERT_FILE"),
        tls_key_file=_value(env, "TLS_KEY_FILE"),
        tls_ca_file=_value(env, "TLS_CA_FILE"),
        smtp=smtp,
        extra=extra,
    )
