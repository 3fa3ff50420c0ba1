"""Host-side device profiles, one module per wearable family (registered in `registry.PROFILES`)."""
