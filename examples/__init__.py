"""Worked examples that live beside the platform (not part of it): see each folder's README."""
