"""Firmware tooling: cross builds of the board images, their sizes, and runs under QEMU (firmware/boards)."""
