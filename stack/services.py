"""The services and how each is started."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Service:
    module: str
    env_prefix: str
    port: int

    @property
    def database(self) -> str:
        return self.module.removesuffix("_svc")


SERVICES: tuple[Service, ...] = (
    Service("order_svc", "ORDER_", 8000),
    Service("orchestrator", "ORCHESTRATOR_", 8001),
    Service("inventory_svc", "INVENTORY_", 8002),
    Service("payment_svc", "PAYMENT_", 8003),
    Service("fulfillment_svc", "FULFILLMENT_", 8004),
    Service("notification_svc", "NOTIFICATION_", 8005),
)
BY_NAME = {s.module: s for s in SERVICES}
