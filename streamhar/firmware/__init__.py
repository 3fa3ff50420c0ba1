"""Firmware tooling: cross builds of the board images, their sizes, and runs under QEMU (firmware/boards)."""

# Seconds of a recording compiled into a sensor image by default (it loops). Here, not in
# sensor.py, so that the command line can show it without importing the model tooling (torch).
DEFAULT_SENSOR_SECONDS = 60.0
