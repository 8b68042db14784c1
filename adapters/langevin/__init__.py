"""gaussspec.adapters.langevin (under construction)."""
