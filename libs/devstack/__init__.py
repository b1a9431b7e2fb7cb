"""The embedded broker and database, and running the whole stack locally and in tests."""

from libs.devstack._process import ProcessExitedError, free_port
from libs.devstack.broker import EmbeddedBroker
from libs.devstack.postgres import EmbeddedPostgres
from libs.devstack.services import ServiceProcess, ServiceSpec, discover_services
from libs.devstack.stack import Stack

__all__ = [
    "EmbeddedBroker",
    "EmbeddedPostgres",
    "ProcessExitedError",
    "ServiceProcess",
    "ServiceSpec",
    "Stack",
    "discover_services",
    "free_port",
]
