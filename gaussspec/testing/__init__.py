"""Exactness kit."""
