"""The sandbox services by name: add a new service here (one module, one line)."""

from __future__ import annotations

from orchestration.sandbox.services.base import Service
from orchestration.sandbox.services.pos import PosService
from orchestration.sandbox.services.shop import ShopService
from orchestration.sandbox.services.social import SocialService

SERVICES: dict[str, type[Service]] = {
    ShopService.name: ShopService,
    PosService.name: PosService,
    SocialService.name: SocialService,
}
