"""BLE wearables: `ble:PROFILE:ADDRESS_OR_NAME` sources (issue 7), see docs/WEARABLES.md.

* `profile.py` — the host-side `Profile` base (matching, setup/start/stop, decode → SI `Frame`s)
* `emulators/base.py` — the Bumble peripheral base that streams a real recording byte-exactly
* `registry.py` — `PROFILES` / `EMULATORS` by profile name
* `profiles/`, `emulators/` — one module per wearable family
* `world.py` + `bumble_backend.py` — a simulated world (Bumble's in-memory link) behind bleak's API
* `source.py` — `BleSource`, the live source, built from `spec.py` (the spec), `connect.py` (find,
  connect), `timeline.py` (device → host time, loss and gaps), `merge.py` (several streams → rows),
  `loop.py` (the asyncio loop thread), `simulate.py` (`simulate=replay:…`)
* `scan.py` — `streamhar devices scan`
"""
