"""`streamhar devices scan`: list nearby BLE wearables and the profile that fits each."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("devices", help="find BLE wearables (scan)",
                       description="List nearby BLE advertisers with the streamhar profile that fits each "
                                   "(use it as ble:PROFILE:ADDRESS_OR_NAME).")
    dsub = p.add_subparsers(dest="devices_command", required=True, metavar="ACTION")
    s = dsub.add_parser("scan", help="scan for nearby wearables")
    s.add_argument("--timeout", type=float, default=5.0, metavar="S", help="seconds to scan (default 5)")
    s.add_argument("--simulate", action="store_true",
                   help="scan a simulated world of emulated wearables (no Bluetooth needed)")
    s.add_argument("--all", action="store_true", help="also list advertisers no profile fits")
    s.set_defaults(func=cmd_scan)


def cmd_scan(args) -> int:
    from streamhar.errors import UsageError
    from streamhar.sources.ble.scan import scan_devices

    if args.timeout <= 0:
        raise UsageError(f"--timeout {args.timeout:g}: give a positive number of seconds")
    found = scan_devices(args.timeout, args.simulate)
    shown = [f for f in found if args.all or f.profile != "unknown"]
    if not shown:
        hidden = len(found) - len(shown)
        print(f"no wearable found in {args.timeout:g} s" + (f" ({hidden} other advertisers; --all lists them)"
                                                            if hidden else ""))
        return 0
    width = max(len(f.name) for f in shown) + 2
    print(f"{'NAME':<{width}}{'ADDRESS':<20}{'RSSI':>6}  PROFILE      SPEC")
    for f in shown:
        spec = f"ble:{f.profile}:{f.name or f.address}" if f.profile != "unknown" else "-"
        print(f"{f.name or '?':<{width}}{f.address:<20}{f.rssi:>6}  {f.profile:<12} {spec}")
    if len(found) > len(shown):
        print(f"({len(found) - len(shown)} advertisers no profile fits; --all lists them)")
    return 0
