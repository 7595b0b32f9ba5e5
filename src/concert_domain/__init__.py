"""concert_domain: the core of the concert seat reservation service.

Entities and rules, the ports the core needs, and the use cases. It imports only the standard
library and attrs; adapters in ``adapters`` plug into the ports, and ``entrypoints.wiring``
builds them.
"""

from concert_domain.dependencies import Dependencies
from concert_domain.policy import BookingPolicy
from concert_domain.queue import QueuePolicy

__all__ = ["BookingPolicy", "Dependencies", "QueuePolicy"]
