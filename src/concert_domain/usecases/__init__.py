"""The use cases: async functions, plain values in and out, the ports passed as ``deps``."""

from concert_domain.usecases.accounts import authenticate, log_in, sign_up
from concert_domain.usecases.catalog import (
    DemoCatalog,
    list_concerts,
    list_open_dates,
    seat_map,
    seed_demo_catalog,
)
from concert_domain.usecases.payments import charge_wallet, get_balance, pay
from concert_domain.usecases.queue import (
    admit_waiting,
    expire_idle_tokens,
    join_queue,
    queue_status,
    require_active_token,
)
from concert_domain.usecases.reservations import (
    cancel_reservation,
    get_reservation,
    hold_seat,
    sweep_expired_holds,
)
from concert_domain.usecases.scheduler import TickReport, run_scheduler_tick

__all__ = [
    "DemoCatalog",
    "TickReport",
    "admit_waiting",
    "authenticate",
    "cancel_reservation",
    "charge_wallet",
    "expire_idle_tokens",
    "get_balance",
    "get_reservation",
    "hold_seat",
    "join_queue",
    "list_concerts",
    "list_open_dates",
    "log_in",
    "pay",
    "queue_status",
    "require_active_token",
    "run_scheduler_tick",
    "seat_map",
    "seed_demo_catalog",
    "sign_up",
    "sweep_expired_holds",
]
