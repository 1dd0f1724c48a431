"""Access tokens: Ed25519-signed JWTs that only patrons mints and every service verifies locally.

The auth interceptor verifies the bearer token of each call and puts the caller's ``Principal`` in
a context variable; servicers and use cases ask for it with ``current_principal()`` and check
roles with the ``require_*`` helpers, which raise PERMISSION_DENIED / UNAUTHENTICATED.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import os
import secrets
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import PermissionDenied, Unauthenticated

ISSUER = "bibliodesk-patrons"
AUDIENCE = "bibliodesk"

STAFF = "staff"
PATRON = "patron"
SERVICE = "service"
ADMIN = "admin"
OPERATOR = "operator"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    subject: str  # staff account id, patron id, or service name
    kind: str  # STAFF | PATRON | SERVICE
    roles: frozenset[str] = frozenset()
    branch: str = ""
    name: str = ""
    must_change_credentials: bool = False
    session_id: str = ""
    token_id: str = ""
    expires_at: datetime | None = None

    @property
    def is_staff(self) -> bool:
        return self.kind == STAFF

    @property
    def is_admin(self) -> bool:
        return self.kind == STAFF and ADMIN in self.roles

    @property
    def is_patron(self) -> bool:
        return self.kind == PATRON

    @property
    def is_service(self) -> bool:
        return self.kind == SERVICE


_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("principal", default=None)


def current_principal() -> Principal:
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("UNAUTHENTICATED", "a valid access token is required")
    return principal


def optional_principal() -> Principal | None:
    return _principal.get()


def set_principal(principal: Principal | None) -> contextvars.Token[Principal | None]:
    return _principal.set(principal)


def reset_principal(token: contextvars.Token[Principal | None]) -> None:
    _principal.reset(token)


def require_staff(*roles: str) -> Principal:
    """Staff with any of ``roles`` (an admin passes every staff check). No roles: any staff."""
    principal = current_principal()
    if not principal.is_staff:
        raise PermissionDenied("STAFF_ONLY", "this operation is for library staff")
    if roles and not principal.is_admin and not (principal.roles & set(roles)):
        raise PermissionDenied("ROLE_REQUIRED", f"this operation needs the role {' or '.join(roles)}")
    return principal


def require_admin() -> Principal:
    return require_staff(ADMIN)


def require_kind(*kinds: str) -> Principal:
    principal = current_principal()
    if principal.kind not in kinds:
        raise PermissionDenied("CALLER_KIND_NOT_ALLOWED", f"this operation is for: {', '.join(kinds)}")
    return principal


def require_patron_or_staff(patron_id: str) -> Principal:
    """Staff and services act on any patron; a patron only on themselves."""
    principal = current_principal()
    if principal.is_patron and principal.subject != patron_id:
        raise PermissionDenied("NOT_YOUR_RECORD", "a patron can act only on their own records")
    return principal


# --- keys -----------------------------------------------------------------------------------------


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_or_create_private_key(path: Path) -> Ed25519PrivateKey:
    """Loads the signing key, creating it (mode 0600) on first start."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path}: not an Ed25519 private key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return key


def load_public_keys_pem(text: str) -> dict[str, Ed25519PublicKey]:
    """Parses one or more PEM public keys (concatenated) into {kid: key}."""
    keys: dict[str, Ed25519PublicKey] = {}
    marker = "-----END PUBLIC KEY-----"
    for chunk in text.split(marker):
        if "BEGIN PUBLIC KEY" not in chunk:
            continue
        key = serialization.load_pem_public_key((chunk.strip() + "\n" + marker + "\n").encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("token keys must be Ed25519")
        keys[key_id(key)] = key
    return keys


# --- signing and verifying -------------------------------------------------------------------------


class TokenSigner:
    """Mints access tokens. Only the patrons service holds one."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.kid = key_id(self.public_key)

    def mint(
        self,
        *,
        subject: str,
        kind: str,
        now: datetime,
        ttl: timedelta,
        roles: Iterable[str] = (),
        branch: str = "",
        name: str = "",
        must_change_credentials: bool = False,
        session_id: str = "",
    ) -> tuple[str, datetime]:
        expires = now + ttl
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "kind": kind,
            "roles": sorted(roles),
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": uuid.uuid4().hex,
        }
        if branch:
            claims["branch"] = branch
        if name:
            claims["name"] = name
        if must_change_credentials:
            claims["mcc"] = True
        if session_id:
            claims["sid"] = session_id
        token = jwt.encode(claims, self._key, algorithm="EdDSA", headers={"kid": self.kid})
        return token, expires


KeyFetcher = Callable[[], Awaitable[Mapping[str, Ed25519PublicKey]]]


@dataclass
class TokenVerifier:
    """Verifies tokens locally with patrons' public keys; fetches keys again for an unknown kid."""

    keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    fetch_keys: KeyFetcher | None = None
    leeway_seconds: int = 30
    now: Callable[[], datetime] | None = None

    cache_size: int = 10_000
    _last_fetch: float = -1e9
    _fetch_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Tokens whose signature was already checked: the Ed25519 check (~1 ms of CPU) runs once per
    # token, not once per call. Expiry is still checked on every call.
    _verified: dict[str, Principal] = field(default_factory=dict)

    def _current(self) -> datetime:
        return self.now() if self.now is not None else datetime.now(UTC)

    def _may_fetch(self) -> bool:
        # An unknown kid refetches the keys at most every 30 s (no amplification by forged tokens).
        import time

        if time.monotonic() - self._last_fetch < 30:
            return False
        self._last_fetch = time.monotonic()
        return True

    async def verify(self, token: str) -> Principal:
        known = self._verified.get(token)
        if known is not None:
            assert known.expires_at is not None
            if known.expires_at.timestamp() + self.leeway_seconds < self._current().timestamp():
                self._verified.pop(token, None)
                raise Unauthenticated("TOKEN_EXPIRED", "the access token has expired; log in again")
            return known
        principal = await self._verify_signed(token)
        if len(self._verified) >= self.cache_size:
            self._verified.clear()
        self._verified[token] = principal
        return principal

    async def _verify_signed(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("TOKEN_MALFORMED", "the access token is malformed") from None
        kid = header.get("kid", "")
        if kid not in self.keys and self.fetch_keys is not None:
            async with self._fetch_lock:  # concurrent callers wait for the one fetch in flight
                if kid not in self.keys and self._may_fetch():
                    try:
                        self.keys.update(await self.fetch_keys())
                    except Exception as exc:
                        from .errors import Unavailable

                        raise Unavailable("TOKEN_KEYS_UNAVAILABLE", "cannot fetch token keys") from exc
        key = self.keys.get(kid)
        if key is None:
            raise Unauthenticated("TOKEN_KEY_UNKNOWN", "the access token was signed by an unknown key")
        # Expiry is checked against the service's clock (tests move it by hand).
        options = {
            "require": ["exp", "sub", "iat"],
            "verify_exp": False,
            "verify_iat": False,
            "verify_nbf": False,
        }
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["EdDSA"],
                audience=AUDIENCE,
                issuer=ISSUER,
                options=options,  # type: ignore[arg-type]
            )
            now = self._current()
            if claims["exp"] + self.leeway_seconds < now.timestamp():
                raise jwt.ExpiredSignatureError()
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("TOKEN_EXPIRED", "the access token has expired; log in again") from None
        except jwt.PyJWTError:
            raise Unauthenticated("TOKEN_INVALID", "the access token is not valid") from None
        kind = claims.get("kind")
        if kind not in (STAFF, PATRON, SERVICE):
            raise Unauthenticated("TOKEN_INVALID", "the access token is not valid")
        return Principal(
            subject=str(claims["sub"]),
            kind=kind,
            roles=frozenset(claims.get("roles", ())),
            branch=claims.get("branch", ""),
            name=claims.get("name", ""),
            must_change_credentials=bool(claims.get("mcc", False)),
            session_id=claims.get("sid", ""),
            token_id=claims.get("jti", ""),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )


def constant_time_equals(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode(), b.encode())
