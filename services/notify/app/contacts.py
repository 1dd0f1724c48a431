"""Patron contact data (name, e-mail, language) from the patrons service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import grpc

from bibliodesk.runtime.errors import Unavailable
from services.notify.domain.errors import InvalidInput, NotFound


@dataclass(frozen=True)
class PatronContact:
    patron_id: str
    display_name: str
    email: str
    language: str
    card_barcode: str = ""
    given_name: str = ""
    surname: str = ""

    @property
    def greeting_name(self) -> str:
        """ "Maria Rossi" rather than the sortable "Rossi Maria" when both parts are known."""
        if self.given_name and self.surname:
            return f"{self.given_name} {self.surname}"
        return self.display_name


class ContactDirectory(Protocol):
    async def contact(self, patron_id: str) -> PatronContact: ...


class PatronsContactDirectory:
    """Asks patrons' GetPatronContact over the service's authenticated channel."""

    def __init__(self, channel: Callable[[], grpc.aio.Channel], timeout: float = 5.0) -> None:
        self._channel = channel  # resolved per call: the peer's address may change (restarts, tests)
        self._timeout = timeout

    async def contact(self, patron_id: str) -> PatronContact:
        from bibliodesk.patrons.v1 import patrons_pb2, patrons_pb2_grpc

        stub = patrons_pb2_grpc.PatronServiceStub(self._channel())
        try:
            reply = await stub.GetPatronContact(
                patrons_pb2.GetPatronContactRequest(patron_id=patron_id), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"no patron {patron_id}", reason="PATRON_NOT_FOUND") from None
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidInput(exc.details() or "is not a patron id", field="patron_id") from None
            raise Unavailable(
                "PATRONS_UNAVAILABLE", f"cannot reach patrons for the contact data: {code.name}"
            ) from None
        return PatronContact(
            patron_id=reply.patron_id or patron_id,
            display_name=reply.display_name,
            email=reply.email.strip(),
            language=reply.language,
            card_barcode=reply.card_barcode,
            given_name=getattr(reply, "given_name", ""),
            surname=getattr(reply, "surname", ""),
        )
