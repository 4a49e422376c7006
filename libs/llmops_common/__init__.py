"""Cross-cutting plumbing shared by every service: errors, settings, logging, health, metrics.

Domain code never lives here: a student replacing one service must not need this package.
"""
