"""gaussspec.adapters.ddpm (under construction)."""
