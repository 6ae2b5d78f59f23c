"""Drivers: one folder per back end, all alike (see base.py)."""
