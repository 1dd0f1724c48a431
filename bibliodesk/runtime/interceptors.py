"""One server interceptor for every service: request id, auth, error mapping, logs, metrics.

- ``x-request-id`` metadata is taken from the caller (or made up), put in the log context and sent
  back in the initial metadata; peer calls carry it on.
- Authentication: a bearer token is required except on public methods; a patron token that still
  carries temporary credentials only reaches the methods that replace them.
- Errors: ``DomainError`` → its canonical code + ``google.rpc.ErrorInfo`` (+ ``BadRequest`` field
  violations); anything unexpected → INTERNAL with the request id and no internals, logged.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from . import auth
from .errors import DomainError, PermissionDenied, Unauthenticated
from .logs import method_var, request_id_var, service_var
from .metrics import Metrics

log = logging.getLogger("bibliodesk.rpc")

ALWAYS_PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.", "/grpc.reflection.v1.")

SessionCheck = Callable[[auth.Principal], Awaitable[None]]


def status_for(error: DomainError, domain: str) -> status_pb2.Status:
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=domain, metadata=error.metadata)
    details = [any_pb2.Any()]
    details[0].Pack(info)
    if error.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description, reason=v.reason
                )
                for v in error.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad)
        details.append(packed)
    return status_pb2.Status(code=error.code.value[0], message=error.message, details=details)


class ServerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        service: str,
        verifier: auth.TokenVerifier,
        *,
        public_methods: set[str],
        temporary_credentials_methods: set[str],
        metrics: Metrics,
        session_check: SessionCheck | None = None,
    ) -> None:
        self.service = service
        self.domain = f"bibliodesk.{service}"
        self.verifier = verifier
        self.public_methods = public_methods
        self.temporary_credentials_methods = temporary_credentials_methods
        self.metrics = metrics
        self.session_check = session_check
        #: method → (registered handler, its wrapped handler), built once per method, not per call
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        if method.startswith(ALWAYS_PUBLIC_PREFIXES):
            return handler
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:  # the same registered handler: reuse
            return cached[1]
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method),  # type: ignore[arg-type]
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(handler.stream_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    async def _enter(self, context: grpc.aio.ServicerContext, method: str) -> list[Any]:
        metadata = dict(context.invocation_metadata() or ())
        request_id = str(metadata.get("x-request-id") or uuid.uuid4().hex)[:100]
        tokens: list[Any] = [
            request_id_var.set(request_id),
            service_var.set(self.service),
            method_var.set(method),
        ]
        await context.send_initial_metadata((("x-request-id", request_id),))
        principal = await self._authenticate(str(metadata.get("authorization", "")), method)
        tokens.append(auth.set_principal(principal))
        return tokens

    async def _authenticate(self, header: str, method: str) -> auth.Principal | None:
        public = method in self.public_methods
        if not header:
            if public:
                return None
            raise Unauthenticated(
                "UNAUTHENTICATED", "this call needs an access token (authorization: Bearer …)"
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("TOKEN_MALFORMED", "the authorization metadata must be 'Bearer <token>'")
        principal = await self.verifier.verify(token.strip())
        if (
            principal.must_change_credentials
            and method not in self.temporary_credentials_methods
            and not public
        ):
            raise PermissionDenied(
                "CREDENTIALS_CHANGE_REQUIRED",
                "temporary credentials: replace your username and password first (ChangeCredentials)",
            )
        if self.session_check is not None:
            await self.session_check(principal)
        return principal

    def _exit(self, tokens: list[Any]) -> None:
        # A cancelled server stream is finalised in another context: resetting its tokens there
        # raises ValueError; the variables die with the stream's context anyway.
        with contextlib.suppress(ValueError):
            auth.reset_principal(tokens.pop())
            for var, token in zip((method_var, service_var, request_id_var), reversed(tokens), strict=True):
                var.reset(token)

    async def _fail(
        self, context: grpc.aio.ServicerContext, exc: BaseException, method: str
    ) -> grpc.StatusCode:
        if isinstance(exc, DomainError):
            status = status_for(exc, self.domain)
            if exc.code in (grpc.StatusCode.UNAVAILABLE,):
                log.warning("%s unavailable: %s", method, exc)
            await context.abort(
                exc.code,
                exc.message,
                trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
            )
        request_id = request_id_var.get()
        log.exception("unexpected error in %s", method)
        internal = status_pb2.Status(
            code=code_pb2.INTERNAL, message=f"internal error (request id {request_id})"
        )
        await context.abort(
            grpc.StatusCode.INTERNAL,
            internal.message,
            trailing_metadata=(("grpc-status-details-bin", internal.SerializeToString()),),
        )
        return grpc.StatusCode.INTERNAL  # not reached: abort raises

    @contextlib.asynccontextmanager
    async def _serving(self, context: grpc.aio.ServicerContext, method: str) -> AsyncIterator[None]:
        """One call, unary or streaming: context in, errors mapped, context out, metrics."""
        started = time.perf_counter()
        code = "OK"
        tokens: list[Any] = []
        try:
            tokens = await self._enter(context, method)
            yield
        except DomainError as exc:
            code = exc.code.name
            await self._fail(context, exc, method)
        except Exception as exc:
            if _is_abort(exc):
                code = _code_name(context)
                raise
            code = "INTERNAL"
            await self._fail(context, exc, method)
        finally:
            if tokens:
                self._exit(tokens)
            self.metrics.observe_rpc(self.service, method, code, time.perf_counter() - started)

    def _wrap_unary(
        self, behavior: Callable[..., Awaitable[Any]], method: str
    ) -> Callable[..., Awaitable[Any]]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with self._serving(context, method):
                return await behavior(request, context)

        return wrapped

    def _wrap_stream(
        self, behavior: Callable[..., AsyncIterator[Any]], method: str
    ) -> Callable[..., AsyncIterator[Any]]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with self._serving(context, method):
                async for item in behavior(request, context):
                    yield item

        return wrapped


def _is_abort(exc: BaseException) -> bool:
    # context.abort() raises grpc's AbortError; let it through untouched.
    return type(exc).__name__ in ("AbortError", "UsageError", "InternalError", "BaseError") and (
        type(exc).__module__.startswith("grpc")
    )


def _code_name(context: grpc.aio.ServicerContext) -> str:
    try:
        code = context.code()
        return code.name if isinstance(code, grpc.StatusCode) else str(code or "UNKNOWN")
    except Exception:
        return "UNKNOWN"


class _OutgoingMetadata:
    """Adds the bearer token and the current request id to outgoing calls."""

    def __init__(self, token: Callable[[], Awaitable[str]] | None) -> None:
        self._token = token

    async def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = list(details.metadata or [])
        keys = {k for k, _ in metadata}
        request_id = request_id_var.get()
        if request_id and "x-request-id" not in keys:
            metadata.append(("x-request-id", request_id))
        if self._token is not None and "authorization" not in keys:
            metadata.append(("authorization", f"Bearer {await self._token()}"))
        return grpc.aio.ClientCallDetails(
            details.method,
            details.timeout,
            grpc.aio.Metadata(*metadata),
            details.credentials,
            details.wait_for_ready,
        )


class _UnaryUnary(_OutgoingMetadata, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(await self._details(client_call_details), request)


class _UnaryStream(_OutgoingMetadata, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(await self._details(client_call_details), request)


class _StreamUnary(_OutgoingMetadata, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(await self._details(client_call_details), request_iterator)


def client_interceptors(token: Callable[[], Awaitable[str]] | None) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors for a client channel (grpc.aio wants one instance per call kind)."""
    return [_UnaryUnary(token), _UnaryStream(token), _StreamUnary(token)]  # type: ignore[list-item]
