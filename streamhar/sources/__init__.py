"""Sources: where samples enter the pipeline (dataset replay now; serial and BLE devices later)."""
