"""Reusable UI pieces. They take data as arguments and hold no business rules."""
