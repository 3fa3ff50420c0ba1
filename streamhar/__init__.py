"""streamhar: real-time human activity recognition from replayed and live wearable sensors."""
__version__ = "0.1.0"
