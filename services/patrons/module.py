"""The patrons service as the runtime runs it: tables, migrations, servicers, outbox handlers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bibliodesk.patrons.v1 import identity_pb2, identity_pb2_grpc, patrons_pb2, patrons_pb2_grpc
from bibliodesk.runtime import auth
from bibliodesk.runtime.errors import FailedPrecondition
from bibliodesk.runtime.outbox import PermanentFailure
from bibliodesk.runtime.service import ServiceModule, ServiceRuntime

from .api import SEND_CREDENTIALS, IdentityServicer, PatronServicer
from .app.config import load_config
from .app.identity import Identity
from .store import tables

log = logging.getLogger(__name__)

_PATRONS = patrons_pb2.DESCRIPTOR.services_by_name["PatronService"].full_name
_IDENTITY = identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name


def _signer(rt: ServiceRuntime) -> auth.TokenSigner:
    path = Path(rt.settings.token_private_key_file or rt.settings.home / "keys" / "token-signing.pem")
    return auth.TokenSigner(auth.load_or_create_private_key(path))


async def setup(rt: ServiceRuntime) -> None:
    cfg = load_config(rt.settings)
    signer = _signer(rt)
    # patrons verifies its own tokens locally with the key it signs with.
    rt.verifier.keys[signer.kid] = signer.public_key
    identity = Identity(rt.db, rt.clock, cfg, rt.settings, signer)
    rt.session_check = identity.check_session
    extra_keys = []
    if rt.settings.token_public_key_file and Path(rt.settings.token_public_key_file).exists():
        extra_keys.append(Path(rt.settings.token_public_key_file).read_text())
    patrons = PatronServicer(rt, cfg, identity)
    rt.add_service(patrons_pb2_grpc.add_PatronServiceServicer_to_server, patrons, _PATRONS)
    rt.add_service(
        identity_pb2_grpc.add_IdentityServiceServicer_to_server,
        IdentityServicer(rt, cfg, identity, extra_keys),
        _IDENTITY,
    )
    rt.state.update(config=cfg, identity=identity, signer=signer, patrons=patrons)

    async def send_credentials(payload: dict[str, Any], key: str) -> None:
        from bibliodesk.notify.v1 import notify_pb2, notify_pb2_grpc

        stub = notify_pb2_grpc.NotifyServiceStub(rt.peers.channel("notify"))
        password = identity.temporary_password(payload["issue_id"])
        try:
            await stub.SendMessage(
                notify_pb2.SendMessageRequest(
                    request_id=key,
                    patron_id=payload["patron_id"],
                    template_key="credentials",
                    variables={
                        "username": payload["username"],
                        "expires_on": payload["expires_on"],
                        "login_url": rt.settings.get("OPAC_LOGIN_URL", ""),
                    },
                    secret_variables={"password": password},
                    reference=f"patron:{payload['patron_id']}",
                ),
                timeout=15,
            )
        except FailedPrecondition as exc:  # pragma: no cover - peers raise grpc errors, not ours
            raise PermanentFailure(str(exc)) from exc

    rt.relay.register(SEND_CREDENTIALS, send_credentials)
    await identity.bootstrap_admin()


async def load_demo(rt: ServiceRuntime) -> None:
    from .demo import load

    await load(rt)


MODULE = ServiceModule(
    name="patrons",
    metadata=tables.metadata,
    migrations=Path(__file__).parent / "store" / "migrations",
    setup=setup,
    public_methods=frozenset(
        {
            f"/{_IDENTITY}/LogIn",
            f"/{_IDENTITY}/IssueServiceToken",
            f"/{_IDENTITY}/GetTokenKeys",
            f"/{_PATRONS}/PreRegisterPatron",
        }
    ),
    temporary_credentials_methods=frozenset({f"/{_IDENTITY}/ChangeCredentials", f"/{_IDENTITY}/LogOut"}),
    load_demo=load_demo,
)
