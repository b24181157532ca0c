"""Contracts shared by more than one EXAI service (identifiers both sides validate)."""
