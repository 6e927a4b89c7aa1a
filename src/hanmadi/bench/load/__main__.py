"""``python -m hanmadi.bench.load``: the load server, a generator worker, or a whole run (see the package)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys

from hanmadi.bench import load
from hanmadi.bench.load import GENERATOR_NICE, run_load, run_worker, serve

load_doc = load.__doc__ or ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hanmadi.bench.load", description=load_doc.splitlines()[0])
    parser.add_argument("--serve-port", type=int, help="run the load server on this port")
    parser.add_argument("--max-calls", type=int, default=1000)
    parser.add_argument("--log-file")
    parser.add_argument("--database-url", help="the load server records every call here")
    parser.add_argument("--no-record", action="store_true", help="run the load without the recorder")
    parser.add_argument("--worker", help="run a generator worker from this JSON spec")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--ramp", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--url")
    args = parser.parse_args(argv)
    if args.serve_port:
        token = os.environ.get("HANMADI_LOAD_AUTH_TOKEN") or secrets.token_hex(16)
        serve(
            args.serve_port,
            auth_token=token,
            max_calls=args.max_calls,
            log_file=args.log_file,
            database_url=args.database_url,
        )
    elif args.worker:
        # the generator is measuring equipment: on a shared machine the server gets the CPU first
        os.nice(GENERATOR_NICE)
        spec = json.loads(args.worker)
        report = asyncio.run(run_worker(spec["url"], spec["auth_token"], spec["delays_s"], spec["duration_s"]))
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        report = asyncio.run(run_load(args.calls, args.ramp, args.duration, args.url, record=not args.no_record))
        sys.stdout.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
