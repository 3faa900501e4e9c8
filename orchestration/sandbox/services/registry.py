"""The sandbox services by name: add a new service here (one module, one line).

A new service (SendGrid, loyalty, store API) is a :class:`Service` subclass in its own module::

    class LoyaltyService(Service):
        name = "loyalty"                       # also its key in settings.SANDBOX_PORTS/TOKENS
        resources = (Resource("loyalty_x", ("pos_customers",), "SELECT ... AS body ..."),)

        def routes(self) -> list[Route]:       # Bearer auth, faults and stats come with the base
            return [Route("POST", r"/v1/cashbacks", self._cashback)]

and one line below; ``up``/``down``/``running`` then serve it on its configured port.
"""

from __future__ import annotations

from orchestration.sandbox.services.base import Service
from orchestration.sandbox.services.loyalty import LoyaltyService
from orchestration.sandbox.services.pos import PosService
from orchestration.sandbox.services.sendgrid import SendGridService
from orchestration.sandbox.services.shop import ShopService
from orchestration.sandbox.services.social import SocialService
from orchestration.sandbox.services.store import StoreService

SERVICES: dict[str, type[Service]] = {
    ShopService.name: ShopService,
    PosService.name: PosService,
    SocialService.name: SocialService,
    SendGridService.name: SendGridService,
    LoyaltyService.name: LoyaltyService,
    StoreService.name: StoreService,
}
