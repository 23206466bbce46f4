"""The Litestar app factory: settings in, app out; the container is built in the app's lifespan."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from gateway.app.admin import AdminController
from gateway.app.audit import AuditController, DeadLetterController
from gateway.app.errors import EXCEPTION_HANDLERS
from gateway.app.mappings import MappingsController, RulesController
from gateway.app.ops import OpsController
from gateway.app.orders import OrderController, intake_wake
from gateway.app.refunds import RefundController
from gateway.app.review import ReviewController
from gateway.app.stock import StockController
from gateway.app.targets import TargetController
from gateway.bootstrap import Container, build_container
from gateway.clock import Clock
from gateway.settings import Settings


def create_app(settings: Settings, *, clock: Clock | None = None) -> Litestar:
    """Build the HTTP API and console for ``settings``."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        container: Container = await build_container(settings, clock=clock)
        app.state.container = container
        app.state.intake_wake = intake_wake(container)
        # Everything built so far (compiled dictionaries, SQLAlchemy's and Litestar's tables) lives
        # as long as the process: keep it out of the cyclic GC's full collections, which otherwise
        # stop the event loop for 50 ms and more now and then (the p99 of intake). Collect first,
        # so no garbage is frozen with it.
        gc.collect()
        gc.freeze()
        container.start_delivery()
        try:
            yield
        finally:
            await container.aclose()

    return Litestar(
        route_handlers=[
            OrderController,
            AuditController,
            DeadLetterController,
            OpsController,
            TargetController,
            MappingsController,
            RulesController,
            RefundController,
            ReviewController,
            StockController,
            AdminController,
        ],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Order gateway",
            version="0.1.0",
            description="Platform orders in, ERP documents out. Errors: {code, message_zh, message_en}.",
            path="/openapi",
            render_plugins=[JsonRenderPlugin()],
        ),
        logging_config=None,  # configured once by the CLI (gateway.logging), PII masking included
        debug=False,
    )
