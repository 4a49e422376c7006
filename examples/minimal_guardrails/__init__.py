"""A minimal guardrails service in plain Starlette that keeps the platform's guardrails contract."""
