"""gaussspec.adapters.md (under construction)."""
