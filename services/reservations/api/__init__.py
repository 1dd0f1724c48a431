"""The gRPC servicers: validate, authorise, ask peers what is needed, run one use case in one
transaction (idempotent by request_id), answer."""

from .circulation import CirculationServicer
from .core import Reservations
from .reservations import ReservationServicer

__all__ = ["CirculationServicer", "ReservationServicer", "Reservations"]
