#!/usr/bin/env python3
"""One ICE agent (aioice, no TURN) for `peerway lab matrix`: the yardstick beside Peerway's tunnels.

The runner starts one agent per side of a pair, each inside its host's network namespace:

    ip netns exec pw-fc-a-h1 python3 scripts/lab-aioice.py --stun 198.51.100.1:3478 --role controlling
    ip netns exec pw-sy-b-h1 python3 scripts/lab-aioice.py --stun 198.51.100.1:3478 --role controlled

and relays their signalling. JSON lines, one object each:

  stdout  {"event":"local","role":..,"username":..,"password":..,"candidates":["<sdp>", ...]}
  stdin   the other agent's "local" line, as it printed it
  stdout  {"event":"result","role":..,"connected":true|false,"echoed":true|false,
           "local_type":"host|srflx|prflx","remote_type":..,"local":"ip:port","remote":"ip:port",
           "ms":123.4,"error":..}
  stdout  {"event":"error","error":..}      (aioice missing, bad input: exit status 2)

Connected means ICE nominated a pair within --timeout seconds; then the controlling agent sends one
datagram and the controlled one echoes it ("echoed"). Without TURN every pair aioice can find is
direct: host (same LAN), server-reflexive or peer-reflexive candidates. aioice does no port
prediction and no many-port probing, which is what the comparison shows.
"""

import argparse
import asyncio
import json
import os
import sys
import time

PING = b"peerway-lab-aioice-ping"
ECHO_TIMEOUT = 3.0


def emit(obj):
    print(json.dumps(obj), flush=True)


def endpoint(candidate):
    return f"{candidate.host}:{candidate.port}" if candidate is not None else None


async def read_line(timeout):
    """One line of stdin, read by the event loop (no thread left blocked on a timeout); '' at end of input."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    data = bytearray()
    fd = sys.stdin.fileno()

    def readable():
        chunk = os.read(fd, 65536)
        data.extend(chunk)
        if (not chunk or b"\n" in data) and not done.done():
            done.set_result(bytes(data).split(b"\n", 1)[0] + (b"\n" if b"\n" in data else b""))

    loop.add_reader(fd, readable)
    try:
        return (await asyncio.wait_for(done, timeout)).decode("utf-8", "replace")
    finally:
        loop.remove_reader(fd)


def selected_pair(connection):
    # aioice has no public accessor for the nominated pair of a component; it keeps them in
    # `_nominated` (component -> CandidatePair). Read it defensively.
    nominated = getattr(connection, "_nominated", None) or {}
    return nominated.get(1)


async def run(args):
    try:
        import aioice
    except ImportError:
        emit({"event": "error", "error": "aioice is not installed: pip install aioice"})
        return 2

    host, _, port = args.stun.rpartition(":")
    controlling = args.role == "controlling"
    connection = aioice.Connection(ice_controlling=controlling, components=1, stun_server=(host, int(port)), use_ipv6=False)
    try:
        await asyncio.wait_for(connection.gather_candidates(), args.gather_timeout)
        emit({
            "event": "local", "role": args.role,
            "username": connection.local_username, "password": connection.local_password,
            "candidates": [c.to_sdp() for c in connection.local_candidates],
        })

        line = await read_line(args.exchange_timeout)
        if not line:
            emit({"event": "error", "error": "stdin ended before the other agent's candidates"})
            return 2
        remote = json.loads(line)
        if remote.get("event") != "local":
            emit({"event": "error", "error": f"expected the other agent's local line, got {line.strip()[:200]}"})
            return 2
        connection.remote_username = remote["username"]
        connection.remote_password = remote["password"]
        for sdp in remote["candidates"]:
            await connection.add_remote_candidate(aioice.Candidate.from_sdp(sdp))
        await connection.add_remote_candidate(None)

        result = {"event": "result", "role": args.role, "connected": False, "echoed": False}
        started = time.monotonic()
        try:
            await asyncio.wait_for(connection.connect(), args.timeout)
        except (asyncio.TimeoutError, ConnectionError) as error:
            result["error"] = f"ICE did not connect within {args.timeout:g} s" if isinstance(error, asyncio.TimeoutError) else str(error)
            result["ms"] = round((time.monotonic() - started) * 1000, 1)
            emit(result)
            return 0
        result["connected"] = True
        result["ms"] = round((time.monotonic() - started) * 1000, 1)
        pair = selected_pair(connection)
        if pair is not None:
            result["local_type"] = pair.local_candidate.type
            result["remote_type"] = pair.remote_candidate.type
            result["local"] = endpoint(pair.local_candidate)
            result["remote"] = endpoint(pair.remote_candidate)

        # One datagram each way over the selected pair.
        try:
            if controlling:
                await connection.send(PING)
                data = await asyncio.wait_for(connection.recv(), ECHO_TIMEOUT)
                result["echoed"] = data == PING
            else:
                data = await asyncio.wait_for(connection.recv(), ECHO_TIMEOUT)
                await connection.send(data)
                result["echoed"] = data == PING
        except (asyncio.TimeoutError, ConnectionError) as error:
            result["error"] = f"no echo within {ECHO_TIMEOUT:g} s" if isinstance(error, asyncio.TimeoutError) else str(error)
        emit(result)
        # Let the echo leave before the socket closes.
        await asyncio.sleep(0.2)
        return 0
    except asyncio.TimeoutError:
        emit({"event": "error", "error": "timed out gathering candidates or waiting for the other agent's"})
        return 2
    except (ValueError, KeyError) as error:
        emit({"event": "error", "error": f"bad input: {error}"})
        return 2
    finally:
        await connection.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stun", required=True, help="STUN server IP:PORT (the lab's 198.51.100.1:3478)")
    parser.add_argument("--role", required=True, choices=["controlling", "controlled"])
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds for connect() (default 10)")
    parser.add_argument("--gather-timeout", type=float, default=8.0, help="seconds for gathering (default 8)")
    parser.add_argument("--exchange-timeout", type=float, default=20.0, help="seconds to wait for the other agent's line (default 20)")
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
