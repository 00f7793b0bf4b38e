"""Reusable widgets of the workbench (no service calls inside: screens feed them data)."""
