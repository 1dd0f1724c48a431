"""The gRPC servicers: proto in, use case (one transaction), proto out. No rules here."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from sqlalchemy.orm import Session

from bibliodesk.patrons.v1 import identity_pb2 as ipb
from bibliodesk.patrons.v1 import identity_pb2_grpc, patrons_pb2_grpc
from bibliodesk.patrons.v1 import patrons_pb2 as pb
from bibliodesk.runtime import auth
from bibliodesk.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable, Violations
from bibliodesk.runtime.idempotency import idempotent
from bibliodesk.runtime.outbox import enqueue
from bibliodesk.runtime.service import ServiceRuntime

from . import convert
from .app import patrons as uc
from .app.config import PatronsConfig
from .app.identity import PATRON_KIND, STAFF_KIND, Identity, credentials_views, issue_id_for
from .domain import rules
from .domain.cards import normalize_rfid_uid
from .domain.credentials import check_username
from .domain.patron import Patron, PatronEvent
from .sheet import render_sheet
from .store import repository as repo
from .store.writes import write

M = TypeVar("M", bound=Message)

SEND_CREDENTIALS = "patrons.send_credentials"
ENCODE_TIMEOUT = 30.0


def _actor(principal: auth.Principal) -> uc.Actor:
    return uc.Actor(principal.name or principal.subject)


def _page_size(value: int, default: int, field: str = "page_size") -> int:
    if value < 0 or value > 100:
        raise InvalidArgument(
            field=field, description="must be between 1 and 100 (0 = default)", reason="OUT_OF_RANGE"
        )
    return value or default


def _encode_token(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


def _decode_token(token: str) -> dict[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(data, dict):
            raise ValueError
        return data
    except Exception:
        raise InvalidArgument(
            field="page_token", description="is not a token returned by this service", reason="BAD_PAGE_TOKEN"
        ) from None


MAX_FORM_BYTES = 16 * 1024


def _client_address(context: grpc.aio.ServicerContext, trust_forwarded: bool = False) -> str:
    """The caller's address for rate limits; behind a trusted reverse proxy, its X-Forwarded-For."""
    if trust_forwarded:
        metadata = dict(context.invocation_metadata() or ())
        forwarded = str(metadata.get("x-forwarded-for", "")).split(",")[0].strip()
        if forwarded:
            return forwarded[:100]
    peer = context.peer() or "unknown"
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        host = rest.rsplit(":", 1)[0]
        return host.strip("[]")
    return peer


class PatronServicer(patrons_pb2_grpc.PatronServiceServicer):
    def __init__(self, rt: ServiceRuntime, cfg: PatronsConfig, identity: Identity) -> None:
        self.rt = rt
        self.db = rt.db
        self.clock = rt.clock
        self.cfg = cfg
        self.identity = identity

    # --- helpers ---------------------------------------------------------------------------------

    def _idem(
        self, session: Session, method: str, request: Message, produce: Callable[[], M], kind: type[M]
    ) -> M:
        return idempotent(session, self.rt.idempotency, method, request, produce, kind, now=self.clock.now())

    def _replay(self, session: Session, method: str, request: Message, kind: type[M]) -> M | None:
        """The stored answer of an already completed request (same request_id), if any; used before
        side effects outside this service's transaction (card encoding)."""
        from sqlalchemy import select

        from bibliodesk.runtime.idempotency import fingerprint

        request_id = getattr(request, "request_id", "")
        if not request_id:
            return None
        table = self.rt.idempotency
        row = session.execute(
            select(table.c.fingerprint, table.c.response).where(table.c.key == f"{method}:{request_id}")
        ).first()
        if row is None:
            return None
        if row.fingerprint != fingerprint(request):
            raise InvalidArgument(
                field="request_id",
                description="was already used for a different request",
                reason="REQUEST_ID_REUSED",
            )
        return kind.FromString(row.response)

    def _patron_pb(self, session: Session, p: Patron, *, staff: bool = True) -> pb.Patron:
        views = credentials_views(session, [p.id], self.clock.now())
        return convert.patron(p, today=self.clock.today(), creds=views.get(p.id), staff=staff)

    # --- P1, desk creation -----------------------------------------------------------------------

    async def PreRegisterPatron(
        self, request: pb.PreRegisterPatronRequest, context: Any
    ) -> pb.PreRegisterPatronResponse:
        if request.ByteSize() > MAX_FORM_BYTES:
            raise InvalidArgument(field="details", description="the form is too large", reason="TOO_LARGE")
        details = rules.validate_details(
            convert.details_input(request.details),
            today=self.clock.today(),
            email_required=True,
            branches=self.cfg.branches,
        )
        client = _client_address(context, self.cfg.trust_forwarded_for)

        def tx(session: Session) -> pb.PreRegisterPatronResponse:
            def produce() -> pb.PreRegisterPatronResponse:
                p = uc.pre_register(
                    session,
                    self.cfg,
                    details,
                    consent=request.privacy_consent,
                    client=client,
                    now=self.clock.now(),
                )
                return pb.PreRegisterPatronResponse(
                    patron_id=p.id,
                    status=pb.PATRON_STATUS_PRE_REGISTERED,
                    next_step="Bring an identity document to the library to complete your enrollment.",
                )

            return self._idem(session, "PreRegisterPatron", request, produce, pb.PreRegisterPatronResponse)

        return await write(self.db, tx)

    async def CreatePatron(self, request: pb.CreatePatronRequest, context: Any) -> pb.CreatePatronResponse:
        principal = auth.require_staff()
        details = rules.validate_details(
            convert.details_input(request.details),
            today=self.clock.today(),
            email_required=False,
            branches=self.cfg.branches,
        )

        def tx(session: Session) -> pb.CreatePatronResponse:
            def produce() -> pb.CreatePatronResponse:
                p = uc.create_at_desk(
                    session,
                    details,
                    consent=request.privacy_consent,
                    now=self.clock.now(),
                    actor=_actor(principal),
                )
                return pb.CreatePatronResponse(patron=self._patron_pb(session, p))

            return self._idem(session, "CreatePatron", request, produce, pb.CreatePatronResponse)

        return await write(self.db, tx)

    async def GetPatron(self, request: pb.GetPatronRequest, context: Any) -> pb.GetPatronResponse:
        _require_id("patron_id", request.patron_id)
        principal = auth.require_patron_or_staff(request.patron_id)

        def read(session: Session) -> pb.GetPatronResponse:
            p = repo.get_patron(session, request.patron_id)
            return pb.GetPatronResponse(patron=self._patron_pb(session, p, staff=not principal.is_patron))

        return await self.db.read(read)

    # --- P2 ----------------------------------------------------------------------------------------

    async def SearchPatrons(self, request: pb.SearchPatronsRequest, context: Any) -> pb.SearchPatronsResponse:
        auth.require_staff()
        v = Violations()
        from .domain.names import fold

        if not fold(request.surname):
            v.add("surname", "is required: type at least the first letter of the surname", "REQUIRED")
        v.max_length("surname", request.surname, 100)
        v.max_length("given_name", request.given_name, 100)
        born = rules.parse_date(v, "birth_date", request.birth_date) if request.birth_date else None
        if request.origin and request.origin not in convert.ORIGIN_FROM_PB:
            v.add("origin", "is not a known origin", "BAD_VALUE")
        if request.status and request.status not in convert.STATUS_FROM_PB:
            v.add("status", "is not a known status", "BAD_VALUE")
        if request.status == pb.PATRON_STATUS_EXPIRED:
            v.add(
                "status",
                "EXPIRED is derived from the expiry date; filter ENROLLED and read the status",
                "UNSUPPORTED",
            )
        v.raise_if_any()
        size = _page_size(request.page_size, 20)
        query_key = [request.surname, request.given_name, request.birth_date, request.origin, request.status]
        after = None
        if request.page_token:
            token = _decode_token(request.page_token)
            if token.get("q") != query_key:
                raise InvalidArgument(
                    field="page_token", description="belongs to a different search", reason="BAD_PAGE_TOKEN"
                )
            after = (str(token["k"]), str(token["i"]))

        def read(session: Session) -> pb.SearchPatronsResponse:
            found = repo.search(
                session,
                surname=request.surname,
                given_name=request.given_name,
                birth_date=born,
                origin=convert.ORIGIN_FROM_PB.get(request.origin, ""),
                status=convert.STATUS_FROM_PB.get(request.status, ""),
                after=after,
                limit=size + 1,
            )
            page, more = found[:size], len(found) > size
            today = self.clock.today()
            reply = pb.SearchPatronsResponse(
                hits=[convert.hit(p, today=today, flagged=flagged) for p, flagged in page]
            )
            if more:
                last = page[-1][0]
                reply.next_page_token = _encode_token({"q": query_key, "k": last.search_key, "i": last.id})
            return reply

        return await self.db.read(read)

    async def ListPatrons(self, request: pb.ListPatronsRequest, context: Any) -> pb.ListPatronsResponse:
        auth.require_staff()
        v = Violations()
        if request.status and request.status not in convert.STATUS_FROM_PB:
            v.add("status", "is not a known status", "BAD_VALUE")
        if request.status == pb.PATRON_STATUS_EXPIRED:
            v.add("status", "EXPIRED is derived from the expiry date and cannot be listed", "UNSUPPORTED")
        if request.origin and request.origin not in convert.ORIGIN_FROM_PB:
            v.add("origin", "is not a known origin", "BAD_VALUE")
        v.raise_if_any()
        size = _page_size(request.page_size, 20)
        created_after = (
            request.created_after.ToDatetime(tzinfo=UTC) if request.HasField("created_after") else None
        )
        query_key = [
            request.status,
            request.origin,
            request.created_after.ToJsonString() if request.HasField("created_after") else "",
        ]
        before = None
        if request.page_token:
            token = _decode_token(request.page_token)
            if token.get("q") != query_key:
                raise InvalidArgument(
                    field="page_token", description="belongs to a different listing", reason="BAD_PAGE_TOKEN"
                )
            before = (datetime.fromisoformat(str(token["t"])), str(token["i"]))

        def read(session: Session) -> pb.ListPatronsResponse:
            found = repo.list_patrons(
                session,
                status=convert.STATUS_FROM_PB.get(request.status, ""),
                origin=convert.ORIGIN_FROM_PB.get(request.origin, ""),
                created_after=created_after,
                before=before,
                limit=size + 1,
            )
            page = found[:size]
            flagged = repo.flagged_patron_ids(session, [p.id for p in page])
            today = self.clock.today()
            reply = pb.ListPatronsResponse(
                hits=[convert.hit(p, today=today, flagged=p.id in flagged) for p in page]
            )
            last_at = page[-1].created_at if page else None
            if len(found) > size and last_at is not None:
                reply.next_page_token = _encode_token(
                    {"q": query_key, "t": last_at.isoformat(), "i": page[-1].id}
                )
            return reply

        return await self.db.read(read)

    # --- P3 ----------------------------------------------------------------------------------------

    async def UpdatePatron(self, request: pb.UpdatePatronRequest, context: Any) -> pb.UpdatePatronResponse:
        principal = auth.require_staff()
        _require_id("patron.id", request.patron.id)
        paths = list(request.update_mask.paths)
        values = convert.patron_values(request.patron)

        def tx(session: Session) -> pb.UpdatePatronResponse:
            def produce() -> pb.UpdatePatronResponse:
                p = uc.update(
                    session,
                    self.cfg,
                    request.patron.id,
                    request.etag,
                    paths,
                    values,
                    today=self.clock.today(),
                    now=self.clock.now(),
                    actor=_actor(principal),
                )
                return pb.UpdatePatronResponse(patron=self._patron_pb(session, p))

            return self._idem(session, "UpdatePatron", request, produce, pb.UpdatePatronResponse)

        return await write(self.db, tx)

    # --- P4 ----------------------------------------------------------------------------------------

    async def _encode_card(self, request_id: str, station_id: str, barcode: str, patron_id: str) -> str:
        """Encodes the RFID card at a desk station (device gateway) and returns the tag UID."""
        from bibliodesk.device_gateway.v1 import device_gateway_pb2 as dg
        from bibliodesk.device_gateway.v1 import device_gateway_pb2_grpc as dg_grpc

        stub = dg_grpc.DeviceGatewayServiceStub(self.rt.peers.channel("device_gateway"))
        try:
            reply = await stub.EncodePatronCard(
                dg.EncodePatronCardRequest(
                    request_id=request_id, station_id=station_id, patron_barcode=barcode, patron_id=patron_id
                ),
                timeout=ENCODE_TIMEOUT,
            )
        except grpc.aio.AioRpcError as exc:
            reason = _peer_reason(exc)
            metadata = {"station_id": station_id, "device_gateway_reason": reason}
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(
                    "DEVICE_GATEWAY_UNAVAILABLE",
                    f"the desk station could not be reached: {exc.details()}",
                    metadata=metadata,
                ) from None
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise InvalidArgument(
                    field="encode_at_station_id",
                    description=exc.details() or "unknown station",
                    reason="UNKNOWN_STATION",
                ) from None
            raise FailedPrecondition(
                "CARD_ENCODING_FAILED",
                f"the RFID card could not be encoded: {exc.details()}",
                metadata=metadata,
            ) from None
        return normalize_rfid_uid(reply.tag_uid)

    async def EnrollPatron(self, request: pb.EnrollPatronRequest, context: Any) -> pb.EnrollPatronResponse:
        principal = auth.require_staff()
        _require_id("patron_id", request.patron_id)
        uc.validate_enrollment_input(
            self.cfg, request.category_code, request.card_barcode, request.rfid_uid, request.enrollment_date
        )
        rfid = request.rfid_uid
        barcode = request.card_barcode
        if request.encode_at_station_id:
            replay = await self.db.read(self._replay, "EnrollPatron", request, pb.EnrollPatronResponse)
            if replay is not None:  # a retry of a finished enrollment: no second encoding
                return replay
            if rfid:
                raise InvalidArgument(
                    field="rfid_uid",
                    description="give either rfid_uid or encode_at_station_id",
                    reason="CONFLICT",
                )
            # Refuse before touching the card if the enrollment itself would be refused.
            await self.db.read(uc.check_enrollable, request.patron_id, request.category_code)
            if not barcode:
                barcode = await self.db.read(self._free_card, request.patron_id, request.request_id)
            rfid = await self._encode_card(
                f"enroll:{request.patron_id}:{request.request_id or barcode}",
                request.encode_at_station_id,
                barcode,
                request.patron_id,
            )

        def tx(session: Session) -> pb.EnrollPatronResponse:
            def produce() -> pb.EnrollPatronResponse:
                p = uc.enroll(
                    session,
                    self.cfg,
                    request.patron_id,
                    request.etag,
                    request.category_code,
                    barcode,
                    rfid,
                    request.enrollment_date,
                    today=self.clock.today(),
                    now=self.clock.now(),
                    actor=_actor(principal),
                )
                return pb.EnrollPatronResponse(patron=self._patron_pb(session, p))

            return self._idem(session, "EnrollPatron", request, produce, pb.EnrollPatronResponse)

        return await write(self.db, tx)

    def _free_card(self, session: Session, patron_id: str, request_id: str) -> str:
        """A card number to encode before enrolling; derived from the request so a retry (same
        request_id) encodes and records the same number."""
        for attempt in range(20):
            seed = f"{patron_id}:{request_id}:{attempt}".encode() if request_id else None
            candidate = self.cfg.card_rule.generate(seed)
            if not repo.card_in_use(session, barcode=candidate, except_patron=patron_id):
                return candidate
        raise FailedPrecondition("CARD_NUMBERS_EXHAUSTED", "cannot generate a free card number")

    async def ReplacePatronCard(
        self, request: pb.ReplacePatronCardRequest, context: Any
    ) -> pb.ReplacePatronCardResponse:
        principal = auth.require_staff()
        _require_id("patron_id", request.patron_id)
        barcode, rfid = request.card_barcode, request.rfid_uid
        if request.encode_at_station_id:
            replay = await self.db.read(
                self._replay, "ReplacePatronCard", request, pb.ReplacePatronCardResponse
            )
            if replay is not None:
                return replay
            if not barcode:
                barcode = await self.db.read(self._free_card, request.patron_id, request.request_id)
            rfid = await self._encode_card(
                f"replace:{request.patron_id}:{request.request_id or barcode}",
                request.encode_at_station_id,
                barcode,
                request.patron_id,
            )

        def tx(session: Session) -> pb.ReplacePatronCardResponse:
            def produce() -> pb.ReplacePatronCardResponse:
                p = uc.replace_card(
                    session,
                    self.cfg,
                    request.patron_id,
                    request.etag,
                    barcode,
                    rfid,
                    request.reason,
                    now=self.clock.now(),
                    actor=_actor(principal),
                )
                return pb.ReplacePatronCardResponse(patron=self._patron_pb(session, p))

            return self._idem(session, "ReplacePatronCard", request, produce, pb.ReplacePatronCardResponse)

        return await write(self.db, tx)

    async def _status(self, request: Any, event: PatronEvent, method: str, kind: type[Any]) -> Any:
        principal = auth.require_staff()
        _require_id("patron_id", request.patron_id)

        def tx(session: Session) -> Any:
            def produce() -> Any:
                p = uc.change_status(
                    session,
                    request.patron_id,
                    event,
                    request.reason,
                    now=self.clock.now(),
                    actor=_actor(principal),
                )
                return kind(patron=self._patron_pb(session, p))

            return self._idem(session, method, request, produce, kind)

        return await write(self.db, tx)

    async def SuspendPatron(self, request: pb.SuspendPatronRequest, context: Any) -> pb.SuspendPatronResponse:
        return await self._status(request, PatronEvent.SUSPEND, "SuspendPatron", pb.SuspendPatronResponse)

    async def ReinstatePatron(
        self, request: pb.ReinstatePatronRequest, context: Any
    ) -> pb.ReinstatePatronResponse:
        return await self._status(
            request, PatronEvent.REINSTATE, "ReinstatePatron", pb.ReinstatePatronResponse
        )

    async def DismissDuplicateFlag(
        self, request: pb.DismissDuplicateFlagRequest, context: Any
    ) -> pb.DismissDuplicateFlagResponse:
        principal = auth.require_staff()
        _require_id("patron_id", request.patron_id)

        def tx(session: Session) -> pb.DismissDuplicateFlagResponse:
            def produce() -> pb.DismissDuplicateFlagResponse:
                p = uc.dismiss_duplicate(
                    session,
                    request.patron_id,
                    request.other_patron_id,
                    now=self.clock.now(),
                    actor=_actor(principal),
                )
                return pb.DismissDuplicateFlagResponse(patron=self._patron_pb(session, p))

            return self._idem(
                session, "DismissDuplicateFlag", request, produce, pb.DismissDuplicateFlagResponse
            )

        return await write(self.db, tx)

    async def ListPatronHistory(
        self, request: pb.ListPatronHistoryRequest, context: Any
    ) -> pb.ListPatronHistoryResponse:
        auth.require_staff()
        _require_id("patron_id", request.patron_id)
        size = _page_size(request.page_size, 50)
        before = None
        if request.page_token:
            before = int(_decode_token(request.page_token).get("b", 0))

        def read(session: Session) -> pb.ListPatronHistoryResponse:
            repo.get_patron(session, request.patron_id, with_flags=False)
            rows = repo.list_history(session, request.patron_id, before_id=before, limit=size + 1)
            reply = pb.ListPatronHistoryResponse(
                entries=[
                    pb.PatronHistoryEntry(
                        time=convert.ts(r.at),
                        action=r.action,
                        from_status=convert.STATUS.get(
                            _status_of(r.from_status), pb.PATRON_STATUS_UNSPECIFIED
                        ),
                        to_status=convert.STATUS.get(_status_of(r.to_status), pb.PATRON_STATUS_UNSPECIFIED),
                        reason=r.reason,
                        actor=r.actor,
                    )
                    for r in rows[:size]
                ]
            )
            if len(rows) > size:
                reply.next_page_token = _encode_token({"b": rows[size - 1].id})
            return reply

        return await self.db.read(read)

    # --- P5, P7 ------------------------------------------------------------------------------------

    async def _issue(self, request: Any, *, regenerate: bool, method: str, kind: type[Any]) -> Any:
        principal = auth.require_staff()
        _require_id("patron_id", request.patron_id)
        issue_id = issue_id_for(method, request.patron_id, request.request_id)
        password, password_hash = await self.identity.prepare_issue(issue_id)
        actor = _actor(principal).label

        def tx(session: Session) -> Any:
            def produce() -> Any:
                patron = repo.get_patron(session, request.patron_id, with_flags=False)
                if request.send_by_email and not patron.email:
                    raise FailedPrecondition(
                        "NO_EMAIL_ADDRESS", "the patron has no e-mail address: print the sheet instead"
                    )
                issue = self.identity.issue_patron_credentials(
                    session, request.patron_id, issue_id, password_hash, regenerate=regenerate, actor=actor
                )
                queued = False
                if request.send_by_email:
                    queued = enqueue(
                        session,
                        self.rt.outbox,
                        SEND_CREDENTIALS,
                        f"credentials:{issue_id}",
                        {
                            "patron_id": patron.id,
                            "issue_id": issue_id,
                            "username": issue.username,
                            "expires_on": issue.expires_at.astimezone(self.clock.tz).date().isoformat(),
                        },
                        now=self.clock.now(),
                    )
                patron = repo.get_patron(session, request.patron_id)
                # Stored for retries WITHOUT the password; it is re-derived below.
                return kind(
                    credentials=pb.TemporaryCredentials(
                        username=issue.username, expires_at=convert.ts(issue.expires_at)
                    ),
                    patron=self._patron_pb(session, patron),
                    email_queued=queued,
                )

            return self._idem(session, method, request, produce, kind)

        reply: Any = await write(self.db, tx)
        if reply.email_queued:
            self.rt.relay.wake()
        reply.credentials.temporary_password = password
        if request.print_sheet:
            reply.sheet_pdf = render_sheet(
                reply.patron, self.cfg, credentials=reply.credentials, tz=self.clock.tz
            )
        return reply

    async def IssueTemporaryCredentials(
        self, request: pb.IssueTemporaryCredentialsRequest, context: Any
    ) -> pb.IssueTemporaryCredentialsResponse:
        return await self._issue(
            request,
            regenerate=False,
            method="IssueTemporaryCredentials",
            kind=pb.IssueTemporaryCredentialsResponse,
        )

    async def RegenerateTemporaryPassword(
        self, request: pb.RegenerateTemporaryPasswordRequest, context: Any
    ) -> pb.RegenerateTemporaryPasswordResponse:
        return await self._issue(
            request,
            regenerate=True,
            method="RegenerateTemporaryPassword",
            kind=pb.RegenerateTemporaryPasswordResponse,
        )

    async def GetPatronSheet(
        self, request: pb.GetPatronSheetRequest, context: Any
    ) -> pb.GetPatronSheetResponse:
        auth.require_staff()
        _require_id("patron_id", request.patron_id)

        def read(session: Session) -> pb.Patron:
            return self._patron_pb(session, repo.get_patron(session, request.patron_id))

        patron = await self.db.read(read)
        pdf = render_sheet(patron, self.cfg, credentials=None, tz=self.clock.tz)
        return pb.GetPatronSheetResponse(pdf=pdf, filename=f"scheda-{patron.card_barcode or patron.id}.pdf")

    # --- desk lookup, read models for services ----------------------------------------------------

    async def LookUpPatronByCard(
        self, request: pb.LookUpPatronByCardRequest, context: Any
    ) -> pb.LookUpPatronByCardResponse:
        auth.require_kind(auth.STAFF, auth.SERVICE)
        which = request.WhichOneof("card")
        if which is None:
            raise InvalidArgument(field="card", description="give barcode or rfid_uid", reason="REQUIRED")
        if which == "barcode":
            value = request.barcode.strip().upper().replace(" ", "")
            if not value or len(value) > 32:
                raise InvalidArgument(
                    field="barcode", description="must be 1–32 characters", reason="BAD_FORMAT"
                )
            key = {"barcode": value}
        else:
            key = {"rfid_uid": normalize_rfid_uid(request.rfid_uid)}

        def read(session: Session) -> pb.LookUpPatronByCardResponse:
            p = repo.patron_by_card(session, **key)
            if p is None:
                raise NotFound("CARD_NOT_FOUND", "no patron holds this card", metadata=key)
            p.duplicate_flags = repo.open_duplicate_flags(session, p.id)
            return pb.LookUpPatronByCardResponse(patron=self._patron_pb(session, p))

        return await self.db.read(read)

    async def GetPatronContact(
        self, request: pb.GetPatronContactRequest, context: Any
    ) -> pb.GetPatronContactResponse:
        auth.require_kind(auth.STAFF, auth.SERVICE)
        _require_id("patron_id", request.patron_id)

        def read(session: Session) -> pb.GetPatronContactResponse:
            p = repo.get_patron(session, request.patron_id, with_flags=False)
            return pb.GetPatronContactResponse(
                patron_id=p.id,
                display_name=p.display_name,
                email=p.email,
                language=p.language,
                card_barcode=p.card_barcode,
                given_name=p.given_name,
                surname=p.surname,
                phone=p.phone,
            )

        return await self.db.read(read)

    async def GetPatronStanding(
        self, request: pb.GetPatronStandingRequest, context: Any
    ) -> pb.GetPatronStandingResponse:
        auth.require_kind(auth.STAFF, auth.SERVICE)
        _require_id("patron_id", request.patron_id)

        def read(session: Session) -> pb.GetPatronStandingResponse:
            p = repo.get_patron(session, request.patron_id, with_flags=False)
            status = p.effective_status(self.clock.today())
            reply = pb.GetPatronStandingResponse(
                patron_id=p.id,
                enrolled=status.value == "ENROLLED",
                blocked=status.value == "SUSPENDED",
                status=convert.STATUS[status],
                category_code=p.category_code,
                card_barcode=p.card_barcode,
                display_name=p.display_name,
                home_branch=p.home_branch,
                enrollment_expiry_date=convert.day(p.enrollment_expiry_date),
            )
            if p.category_code:
                c = repo.get_category(session, p.category_code)
                reply.reservation_limit = c.reservation_limit
                reply.loan_limit = c.loan_limit
                reply.pickup_period_days = c.pickup_period_days
            return reply

        return await self.db.read(read)

    # --- categories --------------------------------------------------------------------------------

    async def CreatePatronCategory(
        self, request: pb.CreatePatronCategoryRequest, context: Any
    ) -> pb.CreatePatronCategoryResponse:
        auth.require_admin()

        def tx(session: Session) -> pb.CreatePatronCategoryResponse:
            def produce() -> pb.CreatePatronCategoryResponse:
                c = uc.create_category(session, convert.category_from(request.category), now=self.clock.now())
                return pb.CreatePatronCategoryResponse(category=convert.category(c))

            return self._idem(
                session, "CreatePatronCategory", request, produce, pb.CreatePatronCategoryResponse
            )

        return await write(self.db, tx)

    async def GetPatronCategory(
        self, request: pb.GetPatronCategoryRequest, context: Any
    ) -> pb.GetPatronCategoryResponse:
        auth.require_kind(auth.STAFF, auth.SERVICE)
        _require_id("code", request.code)
        c = await self.db.read(lambda s: repo.get_category(s, request.code.strip().upper()))
        return pb.GetPatronCategoryResponse(category=convert.category(c))

    async def ListPatronCategories(
        self, request: pb.ListPatronCategoriesRequest, context: Any
    ) -> pb.ListPatronCategoriesResponse:
        auth.require_kind(auth.STAFF, auth.SERVICE)
        size = _page_size(request.page_size, 50)
        after = str(_decode_token(request.page_token).get("a", "")) if request.page_token else ""
        found = await self.db.read(
            lambda s: repo.list_categories(
                s, include_inactive=request.include_inactive, after=after, limit=size + 1
            )
        )
        reply = pb.ListPatronCategoriesResponse(categories=[convert.category(c) for c in found[:size]])
        if len(found) > size:
            reply.next_page_token = _encode_token({"a": found[size - 1].code})
        return reply

    async def UpdatePatronCategory(
        self, request: pb.UpdatePatronCategoryRequest, context: Any
    ) -> pb.UpdatePatronCategoryResponse:
        auth.require_admin()
        _require_id("category.code", request.category.code)

        def tx(session: Session) -> pb.UpdatePatronCategoryResponse:
            def produce() -> pb.UpdatePatronCategoryResponse:
                c = uc.update_category(
                    session,
                    convert.category_from(request.category),
                    list(request.update_mask.paths),
                    request.etag,
                    now=self.clock.now(),
                )
                return pb.UpdatePatronCategoryResponse(category=convert.category(c))

            return self._idem(
                session, "UpdatePatronCategory", request, produce, pb.UpdatePatronCategoryResponse
            )

        return await write(self.db, tx)


def _peer_reason(exc: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason a peer service attached to its error, if any."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


def _status_of(value: str | None) -> Any:
    from .domain.patron import PatronStatus

    return PatronStatus(value) if value else None


def _require_id(field: str, value: str) -> None:
    if not value or not value.strip():
        raise InvalidArgument(field=field, description="is required", reason="REQUIRED")
    if len(value) > 64:
        raise InvalidArgument(field=field, description="is too long", reason="TOO_LONG")


# --- identity -------------------------------------------------------------------------------------

ROLE_NAMES = {ipb.STAFF_ROLE_OPERATOR: "operator", ipb.STAFF_ROLE_ADMIN: "admin"}
ROLE_FROM_NAME = {v: k for k, v in ROLE_NAMES.items()}


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(
        self, rt: ServiceRuntime, cfg: PatronsConfig, identity: Identity, public_keys: list[str]
    ) -> None:
        self.rt = rt
        self.cfg = cfg
        self.identity = identity
        self.public_keys = public_keys

    async def LogIn(self, request: ipb.LogInRequest, context: Any) -> ipb.LogInResponse:
        issued = await self.identity.log_in(
            request.username, request.password, client=_client_address(context, self.cfg.trust_forwarded_for)
        )
        return ipb.LogInResponse(
            access_token=issued.token,
            expires_at=convert.ts(issued.expires_at),
            principal=_principal(issued.principal),
            must_change_credentials=issued.must_change_credentials,
        )

    async def ChangeCredentials(
        self, request: ipb.ChangeCredentialsRequest, context: Any
    ) -> ipb.ChangeCredentialsResponse:
        principal = auth.current_principal()
        issued = await self.identity.change_credentials(
            principal, request.new_username, request.new_password, request.current_password
        )
        return ipb.ChangeCredentialsResponse(
            access_token=issued.token, expires_at=convert.ts(issued.expires_at)
        )

    async def LogOut(self, request: ipb.LogOutRequest, context: Any) -> ipb.LogOutResponse:
        await self.identity.log_out(auth.current_principal())
        return ipb.LogOutResponse()

    async def IssueServiceToken(
        self, request: ipb.IssueServiceTokenRequest, context: Any
    ) -> ipb.IssueServiceTokenResponse:
        token, expires = self.identity.issue_service_token(request.service_name, request.secret)
        return ipb.IssueServiceTokenResponse(access_token=token, expires_at=convert.ts(expires))

    async def CheckSession(self, request: ipb.CheckSessionRequest, context: Any) -> ipb.CheckSessionResponse:
        auth.require_kind(auth.SERVICE)
        v = Violations()
        v.required("session_id", request.session_id)
        v.required("subject", request.subject)
        v.raise_if_any()
        return ipb.CheckSessionResponse(
            open=await self.identity.session_open(request.session_id, request.subject)
        )

    async def GetTokenKeys(self, request: ipb.GetTokenKeysRequest, context: Any) -> ipb.GetTokenKeysResponse:
        from bibliodesk.runtime.auth import load_public_keys_pem, public_key_pem

        keys = {self.identity.signer.kid: public_key_pem(self.identity.signer.public_key)}
        for pem in self.public_keys:
            for kid, key in load_public_keys_pem(pem).items():
                keys.setdefault(kid, public_key_pem(key))
        return ipb.GetTokenKeysResponse(
            keys=[ipb.TokenKey(key_id=k, public_key_pem=v) for k, v in sorted(keys.items())]
        )

    async def CreateStaffAccount(
        self, request: ipb.CreateStaffAccountRequest, context: Any
    ) -> ipb.CreateStaffAccountResponse:
        auth.require_admin()
        v = Violations()
        username = check_username(v, "username", request.username)
        name = rules.person_name(v, "display_name", request.display_name)
        roles = []
        if not request.roles:
            v.add("roles", "give at least one role", "REQUIRED")
        for role in request.roles:
            if role not in ROLE_NAMES:
                v.add("roles", "is not a known role", "BAD_VALUE")
            else:
                roles.append(ROLE_NAMES[role])
        branch = rules.branch(v, "branch", request.branch, self.cfg.branches, required=True)
        v.raise_if_any()
        issue_id = issue_id_for("CreateStaffAccount", username, request.request_id)
        password, password_hash = await self.identity.prepare_issue(issue_id)

        def tx(session: Session) -> ipb.CreateStaffAccountResponse:
            def produce() -> ipb.CreateStaffAccountResponse:
                staff, account = self.identity.create_staff(
                    session, username, name, tuple(sorted(set(roles))), branch, password_hash, temporary=True
                )
                return ipb.CreateStaffAccountResponse(account=_staff(staff, account))

            return idempotent(
                session,
                self.rt.idempotency,
                "CreateStaffAccount",
                request,
                produce,
                ipb.CreateStaffAccountResponse,
                now=self.rt.clock.now(),
            )

        reply = await write(self.rt.db, tx)
        reply.one_time_password = password
        return reply

    async def ListStaffAccounts(
        self, request: ipb.ListStaffAccountsRequest, context: Any
    ) -> ipb.ListStaffAccountsResponse:
        auth.require_admin()
        size = _page_size(request.page_size, 50)
        after = str(_decode_token(request.page_token).get("a", "")) if request.page_token else ""
        rows = await self.rt.db.read(self.identity.list_staff, after, size + 1)
        reply = ipb.ListStaffAccountsResponse(accounts=[_staff(s, a, locked) for s, a, locked in rows[:size]])
        if len(rows) > size:
            reply.next_page_token = _encode_token({"a": rows[size - 1][1].username})
        return reply

    async def UpdateStaffAccount(
        self, request: ipb.UpdateStaffAccountRequest, context: Any
    ) -> ipb.UpdateStaffAccountResponse:
        principal = auth.require_admin()
        _require_id("account.id", request.account.id)
        v = Violations()
        expected = uc.check_etag(v, request.etag)
        paths = list(request.update_mask.paths)
        if not paths:
            v.add("update_mask", "must name at least one field", "REQUIRED")
        changes: dict[str, Any] = {}
        for path in paths:
            if path == "display_name":
                changes["display_name"] = rules.person_name(
                    v, "account.display_name", request.account.display_name
                )
            elif path == "roles":
                if not request.account.roles:
                    v.add("account.roles", "give at least one role", "REQUIRED")
                if any(r not in ROLE_NAMES for r in request.account.roles):
                    v.add("account.roles", "is not a known role", "BAD_VALUE")
                changes["roles"] = sorted({ROLE_NAMES[r] for r in request.account.roles if r in ROLE_NAMES})
            elif path == "branch":
                changes["branch"] = rules.branch(
                    v, "account.branch", request.account.branch, self.cfg.branches, required=True
                )
            elif path == "active":
                changes["active"] = request.account.active
            else:
                v.add(
                    "update_mask",
                    f"{path!r} cannot be updated (allowed: display_name, roles, branch, active)",
                    "NOT_UPDATABLE",
                )
        v.raise_if_any()

        def tx(session: Session) -> ipb.UpdateStaffAccountResponse:
            def produce() -> ipb.UpdateStaffAccountResponse:
                staff, account = self.identity.update_staff(
                    session, principal.subject, request.account.id, expected, changes
                )
                return ipb.UpdateStaffAccountResponse(account=_staff(staff, account))

            return idempotent(
                session,
                self.rt.idempotency,
                "UpdateStaffAccount",
                request,
                produce,
                ipb.UpdateStaffAccountResponse,
                now=self.rt.clock.now(),
            )

        return await write(self.rt.db, tx)

    async def ResetStaffPassword(
        self, request: ipb.ResetStaffPasswordRequest, context: Any
    ) -> ipb.ResetStaffPasswordResponse:
        auth.require_admin()
        _require_id("account_id", request.account_id)
        issue_id = issue_id_for("ResetStaffPassword", request.account_id, request.request_id)
        password, password_hash = await self.identity.prepare_issue(issue_id)

        def tx(session: Session) -> ipb.ResetStaffPasswordResponse:
            def produce() -> ipb.ResetStaffPasswordResponse:
                staff, account = self.identity.reset_staff_password(
                    session, request.account_id, issue_id, password_hash
                )
                return ipb.ResetStaffPasswordResponse(account=_staff(staff, account))

            return idempotent(
                session,
                self.rt.idempotency,
                "ResetStaffPassword",
                request,
                produce,
                ipb.ResetStaffPasswordResponse,
                now=self.rt.clock.now(),
            )

        reply = await write(self.rt.db, tx)
        reply.one_time_password = password
        return reply


def _principal(p: auth.Principal) -> ipb.Principal:
    kind = {
        auth.STAFF: ipb.PRINCIPAL_KIND_STAFF,
        auth.PATRON: ipb.PRINCIPAL_KIND_PATRON,
        auth.SERVICE: ipb.PRINCIPAL_KIND_SERVICE,
    }[p.kind]
    return ipb.Principal(
        subject=p.subject, kind=kind, roles=sorted(p.roles), branch=p.branch, display_name=p.name
    )


def _staff(staff: Any, account: Any, locked: bool = False) -> ipb.StaffAccount:
    return ipb.StaffAccount(
        id=staff.id,
        username=account.username,
        display_name=staff.display_name,
        roles=[ROLE_FROM_NAME[r] for r in staff.roles.split(",") if r in ROLE_FROM_NAME],
        branch=staff.branch,
        created_at=convert.ts(staff.created_at),
        locked=locked,
        active=staff.active,
        must_change_password=account.state == "TEMPORARY",
        etag=str(staff.version),
    )


__all__ = ["PATRON_KIND", "STAFF_KIND", "IdentityServicer", "PatronServicer"]
