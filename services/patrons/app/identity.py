"""Identity use cases: log-in, sessions, first-log-in credential change (P6), temporary credentials
(P5, P7), staff accounts and the first-start administrator, service tokens.

Password hashing (argon2id) is slow on purpose, so it never runs inside a write transaction: the
use cases read, hash or verify outside, then write.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import argon2
from sqlalchemy import event, insert, select, update
from sqlalchemy.orm import Session

from bibliodesk.runtime import auth
from bibliodesk.runtime.clock import Clock
from bibliodesk.runtime.db import Database, lock_for_update
from bibliodesk.runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Violations,
)
from bibliodesk.runtime.sessions import CachedSessions, session_check_ttl
from bibliodesk.runtime.settings import SERVICES, Settings
from bibliodesk.runtime.types import new_id

from ..domain import credentials as cred
from ..domain.credentials import CredentialsEvent, CredentialsState, LoginThrottle
from ..domain.patron import PatronStatus
from ..store import repository as repo
from ..store import tables as t
from ..store.writes import write
from .config import PatronsConfig

log = logging.getLogger(__name__)

PATRON_KIND = "patron"
STAFF_KIND = "staff"
STAFF_DEFINED = "DEFINED"
BOOTSTRAP_USERNAME = "admin"
ADDRESS_WINDOW = timedelta(minutes=15)


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime
    principal: auth.Principal
    must_change_credentials: bool


@dataclass(frozen=True)
class Issue:
    """One issue of temporary credentials: what the operator sees once."""

    issue_id: str
    username: str
    password: str
    expires_at: datetime


def issue_id_for(method: str, subject_id: str, request_id: str) -> str:
    """Derived from the request, so a retry (same request_id) re-derives the same password."""
    if not request_id:
        return str(uuid.uuid4())
    digest = hashlib.sha256(f"{method}\x00{subject_id}\x00{request_id}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16]))


class Identity:
    async def _off_loop(self, fn: Any, *args: Any) -> Any:
        async with self._hash_slots:
            return await asyncio.to_thread(fn, *args)

    def __init__(
        self, db: Database, clock: Clock, cfg: PatronsConfig, settings: Settings, signer: auth.TokenSigner
    ) -> None:
        self.db = db
        self.clock = clock
        # argon2id takes 64 MiB and ~0.2 s of a core per hash: at most two at once, off the loop,
        # so a burst of log-ins neither freezes the services nor balloons the memory.
        self._hash_slots = asyncio.Semaphore(2)
        self.cfg = cfg
        self.settings = settings
        self.signer = signer
        # Live sessions seen recently: a staff desk calls many times a minute and each call would
        # otherwise read its session again. Every session-ending commit of this process forgets
        # them all at once; another replica's take effect within the TTL, as in the other services.
        self.sessions = CachedSessions(self._read_session, ttl=session_check_ttl(settings))
        self.hasher = argon2.PasswordHasher(
            time_cost=cfg.argon2_time_cost,
            memory_cost=cfg.argon2_memory_kib,
            parallelism=1,
            type=argon2.Type.ID,
        )
        # Verified against when the username does not exist, so both cases take the same time.
        self._dummy_hash = self.hasher.hash(cred.generate_password())

    # --- hashing ---------------------------------------------------------------------------------

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def _verify(self, stored: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(stored or self._dummy_hash, password) and stored is not None
        except (
            argon2.exceptions.VerifyMismatchError,
            argon2.exceptions.InvalidHashError,
            argon2.exceptions.VerificationError,
        ):
            return False

    def temporary_password(self, issue_id: str) -> str:
        return cred.derive_password(self.cfg.credential_key, issue_id)

    # --- log-in ----------------------------------------------------------------------------------

    async def log_in(self, username: str, password: str, *, client: str = "") -> IssuedToken:
        v = Violations()
        v.required("username", username)
        v.required("password", password)
        v.max_length("username", username, 200)
        v.max_length("password", password, 1024)
        v.raise_if_any()
        name = cred.normalize_username(username)
        key = cred.throttle_key(name)
        now = self.clock.now()
        account, throttle, address_failures = await self.db.read(self._login_read, name, key, client)
        if address_failures >= self.cfg.login_failures_per_address:
            raise ResourceExhausted(
                "TOO_MANY_LOGIN_ATTEMPTS",
                "too many failed log-ins from this address: try again later",
                metadata={"retry_after_seconds": str(int(ADDRESS_WINDOW.total_seconds()))},
            )
        if throttle.is_locked(now):
            raise self._locked(throttle)
        ok = await self._off_loop(self._verify, account.password_hash if account else None, password)
        if not ok:
            await write(self.db, self._login_failed, key, client)
            raise Unauthenticated("INVALID_CREDENTIALS", "wrong username or password")
        assert account is not None
        if (
            account.state == CredentialsState.TEMPORARY.value
            and account.temporary_expires_at is not None
            and account.temporary_expires_at <= now
        ):
            raise Unauthenticated(
                "TEMPORARY_PASSWORD_EXPIRED",
                "the temporary password has expired: ask the library for a new one",
            )
        rehash = self.hasher.check_needs_rehash(account.password_hash)
        new_hash = await self._off_loop(self.hash, password) if rehash else None
        return await write(self.db, self._login_succeeded, account.id, key, new_hash)

    def _locked(self, throttle: LoginThrottle) -> ResourceExhausted:
        until = throttle.locked_until.isoformat(timespec="minutes") if throttle.locked_until else ""
        return ResourceExhausted(
            "ACCOUNT_LOCKED",
            "too many failed log-in attempts: log-in is locked for a while; "
            "try again later or ask the library",
            metadata={"locked_until": until},
        )

    def _login_read(
        self, session: Session, name: str, key: str, client: str
    ) -> tuple[Any, LoginThrottle, int]:
        failures = (
            repo.count_rate_events(session, f"login-failure:{client}", self.clock.now() - ADDRESS_WINDOW)
            if client
            else 0
        )
        return repo.account_by_username(session, name), self._throttle(session, key), failures

    def _throttle(self, session: Session, key: str) -> LoginThrottle:
        row = repo.throttle_row(session, key)
        if row is None:
            return LoginThrottle(key)
        return LoginThrottle(key, row.failures, row.last_failure_at, row.locked_until)

    def _login_failed(self, session: Session, key: str, client: str = "") -> None:
        if client:
            now = self.clock.now()
            repo.add_rate_event(session, f"login-failure:{client}", now, forget_before=now - ADDRESS_WINDOW)
        throttle = self._throttle(session, key)
        throttle.record_failure(self.clock.now(), self.cfg.lockout)
        repo.save_throttle(session, key, throttle.failures, throttle.last_failure_at, throttle.locked_until)

    def _login_succeeded(
        self, session: Session, account_id: str, key: str, new_hash: str | None
    ) -> IssuedToken:
        now = self.clock.now()
        throttle = self._throttle(session, key)
        if throttle.is_locked(now):  # locked by a concurrent attacker between read and write
            raise self._locked(throttle)
        if throttle.failures:
            repo.save_throttle(session, key, 0, None, None)
        values: dict[str, Any] = {"last_login_at": now}
        if new_hash:
            values["password_hash"] = new_hash
        session.execute(update(t.accounts).where(t.accounts.c.id == account_id).values(**values))
        account = session.execute(select(t.accounts).where(t.accounts.c.id == account_id)).one()
        return self._open_session(session, account, now)

    def _open_session(self, session: Session, account: Any, now: datetime) -> IssuedToken:
        must_change = account.state == CredentialsState.TEMPORARY.value
        if account.kind == STAFF_KIND:
            staff = session.execute(select(t.staff).where(t.staff.c.id == account.subject_id)).one()
            if not staff.active:
                raise Unauthenticated("INVALID_CREDENTIALS", "wrong username or password")
            kind, roles, branch, name = (
                auth.STAFF,
                tuple(staff.roles.split(",")),
                staff.branch,
                staff.display_name,
            )
            ttl = self.cfg.staff_token_ttl
        else:
            patron = repo.get_patron(session, account.subject_id, with_flags=False)
            kind, roles, branch, name = auth.PATRON, (), "", patron.display_name
            ttl = self.cfg.patron_token_ttl
        if must_change:
            ttl = self.cfg.restricted_token_ttl
        sid = new_id()
        session.execute(
            insert(t.sessions).values(
                id=sid,
                account_id=account.id,
                token_version=account.token_version,
                created_at=now,
                expires_at=now + ttl,
            )
        )
        token, expires = self.signer.mint(
            subject=account.subject_id,
            kind=kind,
            now=now,
            ttl=ttl,
            roles=roles,
            branch=branch,
            name=name,
            must_change_credentials=must_change,
            session_id=sid,
        )
        principal = auth.Principal(
            subject=account.subject_id,
            kind=kind,
            roles=frozenset(roles),
            branch=branch,
            name=name,
            must_change_credentials=must_change,
            session_id=sid,
        )
        return IssuedToken(token, expires, principal, must_change)

    # --- sessions --------------------------------------------------------------------------------

    async def check_session(self, principal: auth.Principal) -> None:
        await self.sessions.check(principal)

    async def session_open(self, session_id: str, subject: str) -> bool:
        return await self.sessions.is_open(session_id, subject)

    async def _read_session(self, session_id: str, subject: str, _cached: bool | None) -> bool:
        return bool(await self.db.read(self._session_alive, session_id, subject))

    def _ends_sessions(self, session: Session) -> None:
        """Called inside a transaction that ends sessions: once it commits, forget the cache."""
        event.listen(session, "after_commit", lambda _s: self.sessions.forget_all(), once=True)

    def _end_all_sessions(self, session: Session, account_id: str, now: datetime) -> None:
        self._ends_sessions(session)
        repo.end_sessions(session, account_id, now)

    def _session_alive(self, session: Session, sid: str, subject: str) -> bool:
        s, a = t.sessions.c, t.accounts.c
        row = session.execute(
            select(s.ended_at, s.token_version, a.token_version.label("current"), a.subject_id)
            .join(t.accounts, a.id == s.account_id)
            .where(s.id == sid)
        ).first()
        return bool(
            row and row.ended_at is None and row.token_version == row.current and row.subject_id == subject
        )

    async def log_out(self, principal: auth.Principal) -> None:
        if principal.session_id:
            await write(self.db, self._end_session, principal.session_id)

    def _end_session(self, session: Session, sid: str) -> None:
        self._ends_sessions(session)
        session.execute(
            update(t.sessions)
            .where(t.sessions.c.id == sid, t.sessions.c.ended_at.is_(None))
            .values(ended_at=self.clock.now())
        )

    # --- P6: the patron (or a new staff member) defines their own credentials --------------------

    async def change_credentials(
        self, principal: auth.Principal, new_username: str, new_password: str, current_password: str
    ) -> IssuedToken:
        if principal.kind not in (auth.PATRON, auth.STAFF):
            raise PermissionDenied("CALLER_KIND_NOT_ALLOWED", "only patrons and staff have credentials")
        kind = PATRON_KIND if principal.is_patron else STAFF_KIND
        account = await self.db.read(lambda s: repo.account_by_subject(s, kind, principal.subject))
        if account is None:
            raise FailedPrecondition("NO_CREDENTIALS", "no credentials to change")
        v = Violations()
        wants_username = bool((new_username or "").strip())
        username = account.username
        if (
            kind == PATRON_KIND
            and account.state == CredentialsState.TEMPORARY.value
            and account.defined_at is None
        ):
            # First log-in with generated credentials: the patron must choose both (P6).
            username = cred.check_username(v, "new_username", new_username)
            if username and username == account.username:
                v.add("new_username", "choose your own username instead of the temporary one", "UNCHANGED")
        elif wants_username:
            if kind == STAFF_KIND and cred.normalize_username(new_username) != account.username:
                v.add("new_username", "staff usernames are set by an administrator", "NOT_ALLOWED")
            else:
                username = cred.check_username(v, "new_username", new_username)
        cred.check_password(v, "new_password", new_password, username)
        v.required("current_password", current_password)
        v.raise_if_any()
        if new_password == current_password:
            raise InvalidArgument(
                field="new_password", description="must differ from the current password", reason="UNCHANGED"
            )
        if not await self._off_loop(self._verify, account.password_hash, current_password):
            await write(self.db, self._login_failed, cred.throttle_key(account.username))
            raise Unauthenticated("INVALID_CREDENTIALS", "the current password is wrong")
        new_hash = await self._off_loop(self.hash, new_password)
        return await write(
            self.db, self._define, account.id, account.token_version, username, new_hash, principal.session_id
        )

    def _define(
        self, session: Session, account_id: str, token_version: int, username: str, new_hash: str, sid: str
    ) -> IssuedToken:
        now = self.clock.now()
        a = t.accounts.c
        account = session.execute(
            lock_for_update(select(t.accounts).where(a.id == account_id), session)
        ).one()
        if account.token_version != token_version:
            raise FailedPrecondition("CREDENTIALS_CHANGED", "the credentials changed meanwhile: log in again")
        if username != account.username and repo.username_taken(session, username, except_account=account_id):
            raise AlreadyExists(
                "USERNAME_TAKEN",
                "this username is already taken: choose another",
                metadata={"field": "new_username"},
            )
        if account.kind == PATRON_KIND:
            state = (
                cred.credentials_transition(
                    CredentialsState(account.state), CredentialsEvent.DEFINE
                ).target.value
                if account.state == CredentialsState.TEMPORARY.value
                else account.state
            )
        else:
            state = STAFF_DEFINED
        session.execute(
            update(t.accounts)
            .where(a.id == account_id)
            .values(
                username=username,
                password_hash=new_hash,
                state=state,
                temporary_expires_at=None,
                defined_at=now,
                issue_id=None,
                token_version=account.token_version + 1,
                updated_at=now,
            )
        )
        self._end_all_sessions(session, account_id, now)
        if account.kind == PATRON_KIND:
            patron = repo.get_patron(session, account.subject_id, with_flags=False)
            repo.add_history(
                session,
                patron.id,
                at=now,
                action="define_credentials",
                from_status=patron.status.value,
                to_status=patron.status.value,
                reason=cred.LABELS[CredentialsState.PATRON_DEFINED],
                actor="patron",
            )
        fresh = session.execute(select(t.accounts).where(a.id == account_id)).one()
        return self._open_session(session, fresh, now)

    # --- P5 / P7: temporary credentials for a patron ---------------------------------------------

    async def prepare_issue(self, issue_id: str) -> tuple[str, str]:
        """Derives the password of ``issue_id`` and hashes it (outside any transaction, off the
        event loop: argon2id takes a noticeable moment on purpose)."""
        password = self.temporary_password(issue_id)
        return password, await self._off_loop(self.hash, password)

    def issue_patron_credentials(
        self,
        session: Session,
        patron_id: str,
        issue_id: str,
        password_hash: str,
        *,
        regenerate: bool,
        actor: str,
    ) -> Issue:
        now = self.clock.now()
        patron = repo.get_patron(session, patron_id, for_update=True, with_flags=False)
        if patron.effective_status(self.clock.today()) not in (PatronStatus.ENROLLED, PatronStatus.SUSPENDED):
            raise FailedPrecondition(
                "NOT_ENROLLED",
                "credentials are issued with the card: enroll the patron first",
                metadata={"status": patron.effective_status(self.clock.today()).value},
            )
        account = repo.account_by_subject(session, PATRON_KIND, patron_id, for_update=True)
        source = CredentialsState(account.state) if account else CredentialsState.NONE
        step = cred.credentials_transition(
            source, CredentialsEvent.REGENERATE if regenerate else CredentialsEvent.ISSUE
        )
        expires = now + self.cfg.temporary_password_ttl
        if account is None:
            username = self._free_username(session)
            session.execute(
                insert(t.accounts).values(
                    id=new_id(),
                    kind=PATRON_KIND,
                    subject_id=patron_id,
                    username=username,
                    password_hash=password_hash,
                    state=step.target.value,
                    issue_id=issue_id,
                    temporary_expires_at=expires,
                    token_version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
        else:
            username = account.username
            session.execute(
                update(t.accounts)
                .where(t.accounts.c.id == account.id)
                .values(
                    password_hash=password_hash,
                    state=step.target.value,
                    issue_id=issue_id,
                    temporary_expires_at=expires,
                    token_version=account.token_version + 1,
                    updated_at=now,
                )
            )
            self._end_all_sessions(session, account.id, now)
        repo.add_history(
            session,
            patron_id,
            at=now,
            action=step.event.value.lower() + "_credentials",
            from_status=patron.status.value,
            to_status=patron.status.value,
            reason=step.reason,
            actor=actor,
        )
        return Issue(issue_id, username, "", expires)

    def _free_username(self, session: Session) -> str:
        for _ in range(20):
            candidate = cred.generate_username()
            if not repo.username_taken(session, candidate):
                return candidate
        raise FailedPrecondition("USERNAMES_EXHAUSTED", "cannot generate a free username")  # pragma: no cover

    # --- staff -----------------------------------------------------------------------------------

    def create_staff(
        self,
        session: Session,
        username: str,
        display_name: str,
        roles: tuple[str, ...],
        branch: str,
        password_hash: str,
        *,
        temporary: bool,
    ) -> tuple[Any, Any]:
        now = self.clock.now()
        if repo.username_taken(session, username):
            raise AlreadyExists(
                "USERNAME_TAKEN", f"username {username!r} is already taken", metadata={"field": "username"}
            )
        staff_id = new_id()
        session.execute(
            insert(t.staff).values(
                id=staff_id,
                display_name=display_name,
                roles=",".join(roles),
                branch=branch,
                active=True,
                created_at=now,
            )
        )
        session.execute(
            insert(t.accounts).values(
                id=new_id(),
                kind=STAFF_KIND,
                subject_id=staff_id,
                username=username,
                password_hash=password_hash,
                state=CredentialsState.TEMPORARY.value if temporary else STAFF_DEFINED,
                temporary_expires_at=now + self.cfg.temporary_password_ttl if temporary else None,
                defined_at=None if temporary else now,
                token_version=1,
                created_at=now,
                updated_at=now,
            )
        )
        return self.staff_row(session, staff_id)

    def update_staff(
        self, session: Session, actor_id: str, staff_id: str, expected: int, changes: dict[str, Any]
    ) -> tuple[Any, Any]:
        """Admin edits a staff account. Role or activation changes end the account's sessions (the
        token carries the roles)."""
        now = self.clock.now()
        s = t.staff.c
        staff = session.execute(lock_for_update(select(t.staff).where(s.id == staff_id), session)).first()
        if staff is None:
            raise NotFound("STAFF_NOT_FOUND", "no such staff account", metadata={"account_id": staff_id})
        if staff.version != expected:
            from bibliodesk.runtime.errors import Aborted

            raise Aborted("ETAG_MISMATCH", "the staff account changed since it was read; read it again")
        if staff_id == actor_id and (
            changes.get("active") is False or ("roles" in changes and "admin" not in changes["roles"])
        ):
            raise FailedPrecondition(
                "CANNOT_CHANGE_OWN_ACCESS", "an administrator cannot deactivate or demote their own account"
            )
        values = dict(changes)
        if "roles" in values:
            values["roles"] = ",".join(values["roles"])
        session.execute(update(t.staff).where(s.id == staff_id).values(**values, version=staff.version + 1))
        if "roles" in changes or changes.get("active") is False or "branch" in changes:
            account = repo.account_by_subject(session, STAFF_KIND, staff_id)
            if account is not None:
                self._end_all_sessions(session, account.id, now)
        return self.staff_row(session, staff_id)

    def reset_staff_password(
        self, session: Session, staff_id: str, issue_id: str, password_hash: str
    ) -> tuple[Any, Any]:
        now = self.clock.now()
        account = repo.account_by_subject(session, STAFF_KIND, staff_id, for_update=True)
        if account is None:
            raise NotFound("STAFF_NOT_FOUND", "no such staff account", metadata={"account_id": staff_id})
        session.execute(
            update(t.accounts)
            .where(t.accounts.c.id == account.id)
            .values(
                password_hash=password_hash,
                state=CredentialsState.TEMPORARY.value,
                issue_id=issue_id,
                temporary_expires_at=now + self.cfg.temporary_password_ttl,
                defined_at=None,
                token_version=account.token_version + 1,
                updated_at=now,
            )
        )
        self._end_all_sessions(session, account.id, now)
        repo.save_throttle(session, cred.throttle_key(account.username), 0, None, None)
        return self.staff_row(session, staff_id)

    def staff_row(self, session: Session, staff_id: str) -> tuple[Any, Any]:
        staff = session.execute(select(t.staff).where(t.staff.c.id == staff_id)).one()
        account = repo.account_by_subject(session, STAFF_KIND, staff_id)
        return staff, account

    def list_staff(self, session: Session, after: str, limit: int) -> list[tuple[Any, Any, bool]]:
        a = t.accounts.c
        rows = session.execute(
            select(t.accounts)
            .where(a.kind == STAFF_KIND, a.username > after)
            .order_by(a.username)
            .limit(limit)
        )
        out = []
        for account in rows:
            staff = session.execute(select(t.staff).where(t.staff.c.id == account.subject_id)).one()
            throttle = repo.throttle_row(session, cred.throttle_key(account.username))
            locked = bool(throttle and throttle.locked_until and throttle.locked_until > self.clock.now())
            out.append((staff, account, locked))
        return out

    async def bootstrap_admin(self) -> str | None:
        """First start: creates the "admin" account. Its password comes from
        BIBLIODESK_BOOTSTRAP_ADMIN_PASSWORD(_FILE); otherwise a random one is generated, printed once
        and left for the local CLI in ``$HOME/admin-credentials.json`` (0600). Never a default password."""
        exists = await self.db.read(lambda s: s.execute(select(t.staff.c.id).limit(1)).first() is not None)
        if exists:
            return None
        given = self.settings.bootstrap_admin_password
        if given:
            v = Violations()
            cred.check_password(v, "BIBLIODESK_BOOTSTRAP_ADMIN_PASSWORD", given, BOOTSTRAP_USERNAME)
            v.raise_if_any()
        password = given or cred.generate_password()
        password_hash = await self._off_loop(self.hash, password)
        try:
            await write(
                self.db,
                self.create_staff,
                BOOTSTRAP_USERNAME,
                "Administrator",
                ("admin",),
                "",
                password_hash,
                temporary=False,
            )
        except AlreadyExists:
            return None  # another replica won the race
        if not given:
            # Shown once on stdout, and left (mode 0600) in the data folder for the CLI on this machine.
            self._write_local_credentials(password)
            print(
                f"\n*** bibliodesk first start: administrator account created ***\n"
                f"    username: {BOOTSTRAP_USERNAME}\n    password: {password}\n"
                f"    Shown only now (the local CLI reads {self.settings.home / 'admin-credentials.json'})."
                "\n",
                flush=True,
            )
            log.warning(
                "first start: administrator account %r created with a generated password (printed on "
                "stdout, never logged)",
                BOOTSTRAP_USERNAME,
            )
        else:
            log.info(
                "first start: administrator account %r created with the configured password",
                BOOTSTRAP_USERNAME,
            )
        return password if not given else None

    def _write_local_credentials(self, password: str) -> None:
        import json
        import os

        path = self.settings.home / "admin-credentials.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"username": BOOTSTRAP_USERNAME, "password": password}, handle)

    # --- services --------------------------------------------------------------------------------

    def issue_service_token(self, service_name: str, secret: str) -> tuple[str, datetime]:
        v = Violations()
        v.required("service_name", service_name)
        v.required("secret", secret)
        v.raise_if_any()
        if service_name not in SERVICES:
            raise InvalidArgument(field="service_name", description=f"must be one of {', '.join(SERVICES)}")
        expected = self.settings.service_secret
        if not expected or not auth.constant_time_equals(secret, expected):
            raise Unauthenticated("INVALID_SERVICE_SECRET", "the service secret is wrong")
        return self.signer.mint(
            subject=service_name,
            kind=auth.SERVICE,
            now=self.clock.now(),
            ttl=self.cfg.service_token_ttl,
            name=service_name,
        )


def credentials_views(session: Session, patron_ids: list[str], now: datetime) -> dict[str, dict[str, Any]]:
    """What staff may see of each patron's credentials: never the hash."""
    rows = repo.accounts_by_subjects(session, PATRON_KIND, patron_ids)
    out: dict[str, dict[str, Any]] = {}
    for pid in patron_ids:
        row = rows.get(pid)
        if row is None:
            out[pid] = {"state": CredentialsState.NONE, "username": ""}
            continue
        throttle = repo.throttle_row(session, cred.throttle_key(row.username))
        locked = bool(throttle and throttle.locked_until and throttle.locked_until > now)
        out[pid] = {
            "state": CredentialsState(row.state),
            "username": row.username,
            "temporary_expires_at": row.temporary_expires_at,
            "defined_at": row.defined_at,
            "last_login_at": row.last_login_at,
            "locked": locked,
        }
    return out


__all__ = ["Identity", "Issue", "IssuedToken", "NotFound", "credentials_views", "issue_id_for", "timedelta"]
