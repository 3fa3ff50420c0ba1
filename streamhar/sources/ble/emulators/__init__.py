"""Emulated wearables (Bumble peripherals), one module per profile (registered in `registry.EMULATORS`)."""
