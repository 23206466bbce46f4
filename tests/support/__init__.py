"""Helpers shared by the integration and end-to-end tests (served apps, sandbox handles)."""
