"""Shared runtime."""
