"""Operator's break-glass: `python -m services.registry.admin add-principal NAME ROLE [--team T]`.

With a single admin nobody can approve a second one (four-eyes needs an admin that existed before the
request), so the first extra admins come from here. It writes the governance store directly, which only
whoever already holds its database credentials can do, and the audit log records it (`system:cli`).
"""

from __future__ import annotations

import argparse
import json
import sys

from prometheus_client import CollectorRegistry

from services.registry.app import build_services
from services.registry.auth import Principal, Role
from services.registry.metrics import RegistryMetrics
from services.registry.settings import RegistrySettings

CLI = Principal("system:cli", Role.admin)


def main(argv: list[str] | None = None) -> int:
    """Create one principal directly and print its token once."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add-principal", help="create an active principal and print its token once")
    add.add_argument("name")
    add.add_argument("role", choices=["admin", "reviewer", "member", "read-only"])
    add.add_argument("--team", default=None)
    add.add_argument("--reason", default="created from the command line by an operator")
    args = parser.parse_args(argv)
    services = build_services(RegistrySettings(), RegistryMetrics(CollectorRegistry()))
    try:
        created = services.principals.create(
            CLI, args.name, args.role, args.team, None, direct=True, reason=args.reason
        )
    finally:
        services.ctx.store.close()
    print(json.dumps(created, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
