"""`streamhar ctl threshold 0.3`: change a running pipeline (over its control socket)."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("ctl", help="control a running pipeline (e.g. change the cascade threshold)",
                       description="Send a command to a running `streamhar run`. THRESHOLD: an integer logit "
                                   "margin (34002), a probability margin with a decimal point (0.3), "
                                   "'default', 'never' or 'always'.")
    p.add_argument("command", choices=("threshold", "status"))
    p.add_argument("value", nargs="?", help="the new threshold")
    p.add_argument("--endpoint", help="the pipeline's ctl endpoint (default: the only running pipeline's, "
                                      "else tcp://127.0.0.1:5556)")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for an answer")
    p.set_defaults(func=cmd_ctl)


def cmd_ctl(args) -> int:
    import zmq

    from streamhar.errors import StreamharError, UsageError
    from streamhar.pipeline.control import find_ctl_endpoint

    if args.command == "threshold" and args.value is None:
        raise UsageError("streamhar ctl threshold VALUE: give the new threshold (e.g. 0.3 or 34002)")
    endpoint = args.endpoint or find_ctl_endpoint()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send(json.dumps({"cmd": args.command, "value": args.value}).encode())
        if not sock.poll(int(args.timeout * 1000)):
            raise StreamharError(f"no pipeline answered on {endpoint} within {args.timeout:g} s "
                                 "(is `streamhar run` running? pass --endpoint)")
        reply = json.loads(sock.recv())
    finally:
        ctx.destroy(linger=0)
    if not reply.get("ok"):
        raise UsageError(f"the pipeline refused: {reply.get('error')}")
    if args.command == "threshold":
        kind = "probability margin" if reply["kind"] == "prob" else "logit margin"
        devices = f" and {reply['devices']} device(s)" if reply.get("devices") else ""
        print(f"threshold set to {reply['threshold']} ({kind}) on {reply['workers']} inference worker(s)"
              f"{devices} via {endpoint}")
    else:
        print(json.dumps(reply, indent=2))
    return 0
