"""The use cases: async functions, plain values in and out, the ports passed as ``deps``."""

from concert_domain.usecases.accounts import (
    CountingDown,
    Me,
    authenticate,
    create_admin,
    log_in,
    me,
    require_admin,
    sign_up,
)
from concert_domain.usecases.catalog import (
    CreatedDate,
    DemoCatalog,
    create_concert,
    create_date,
    date_sales,
    list_concerts,
    list_open_dates,
    seat_map,
    seed_demo_catalog,
    sold_seats,
)
from concert_domain.usecases.holds import extend_hold, hold_best, hold_seat, hold_seats
from concert_domain.usecases.payments import (
    charge_wallet,
    get_balance,
    list_transactions,
    pay,
    pay_holds,
)
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
    list_reservations,
    refund,
    sweep_expired_holds,
)
from concert_domain.usecases.scheduler import TickReport, run_scheduler_tick

__all__ = [
    "CountingDown",
    "CreatedDate",
    "DemoCatalog",
    "Me",
    "TickReport",
    "admit_waiting",
    "authenticate",
    "cancel_reservation",
    "charge_wallet",
    "create_admin",
    "create_concert",
    "create_date",
    "date_sales",
    "expire_idle_tokens",
    "extend_hold",
    "get_balance",
    "get_reservation",
    "hold_best",
    "hold_seat",
    "hold_seats",
    "join_queue",
    "list_concerts",
    "list_open_dates",
    "list_reservations",
    "list_transactions",
    "log_in",
    "me",
    "pay",
    "pay_holds",
    "queue_status",
    "refund",
    "require_active_token",
    "require_admin",
    "run_scheduler_tick",
    "seat_map",
    "seed_demo_catalog",
    "sign_up",
    "sold_seats",
    "sweep_expired_holds",
]
