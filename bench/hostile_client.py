"""Hostile clients for bench/hostile.sh, on raw sockets (asyncio, standard library only).

    hostile_client.py slow HOST PORT COUNT HOLD_S
        COUNT connections that send a request head one byte a second for HOLD_S seconds; reports
        how many the server closed, and when.
    hostile_client.py bodies HOST PORT KEY COUNT BYTES SEND_S
        COUNT concurrent POST /v1/chat/completions whose BYTES-byte JSON bodies (no 'messages':
        each is buffered, parsed and refused with a 400) are each sent over SEND_S seconds;
        reports the answers by status.
    hostile_client.py hugename HOST PORT KEY NAME_BYTES
        one upload whose filename is NAME_BYTES long; reports the status.
    hostile_client.py lists HOST PORT KEY COUNT CONCURRENCY
        COUNT GET /v1/files calls, CONCURRENCY at a time; reports statuses and bytes read.

Prints one JSON object on stdout.
"""

import asyncio
import json
import sys
import time
from collections import Counter


async def read_answer(reader, timeout):
    """Status and bytes of one response read to the end of the connection."""
    data = await asyncio.wait_for(reader.read(), timeout)
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, len(data)


async def slow(host, port, count, hold_s):
    started = time.monotonic()
    closed_after = []

    async def one():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            return "refused"
        head = b"GET /v1/files HTTP/1.1\r\nHost: prism\r\nX-Slow: " + b"a" * 10_000
        for byte in head[: int(hold_s)]:
            if reader.at_eof():
                break
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except OSError:
                break
            try:
                if await asyncio.wait_for(reader.read(1 << 16), 1.0) == b"":
                    break
            except asyncio.TimeoutError:
                pass
        closed = reader.at_eof()
        closed_after.append(time.monotonic() - started)
        writer.close()
        return "closed by server" if closed else "still open"

    outcomes = Counter(await asyncio.gather(*(one() for _ in range(count))))
    return {"connections": count, "outcomes": outcomes,
            "max_seconds_open": round(max(closed_after, default=0), 1)}


async def bodies(host, port, key, count, size, send_s):
    filler = b"x" * (size - 40)
    body = b'{"model":"bench","input":"' + filler + b'"}'
    chunk = 64 * 1024
    pause = send_s / max(1, len(body) // chunk)

    async def one():
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: prism\r\n"
                + b"Authorization: Bearer " + key.encode() + b"\r\n"
                + b"Content-Type: application/json\r\nConnection: close\r\n"
                + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
            for at in range(0, len(body), chunk):
                writer.write(body[at:at + chunk])
                await writer.drain()
                await asyncio.sleep(pause)
            status, _ = await read_answer(reader, 120)
            writer.close()
            return status
        except (OSError, asyncio.TimeoutError, ConnectionError):
            # A 503 is answered before the body is read; the server may close while we write.
            try:
                status, _ = await read_answer(reader, 5)
                return status
            except Exception:  # noqa: BLE001 - any failure here is a broken connection
                return "broken"

    started = time.monotonic()
    statuses = Counter(str(s) for s in await asyncio.gather(*(one() for _ in range(count))))
    return {"requests": count, "body_bytes": len(body), "statuses": statuses,
            "seconds": round(time.monotonic() - started, 1)}


async def lists(host, port, key, count, concurrency):
    gate = asyncio.Semaphore(concurrency)
    total = 0

    async def one():
        nonlocal total
        async with gate:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET /v1/files HTTP/1.1\r\nHost: prism\r\nConnection: close\r\n"
                         + b"Authorization: Bearer " + key.encode() + b"\r\n\r\n")
            status, length = await read_answer(reader, 120)
            total += length
            writer.close()
            return status

    started = time.monotonic()
    statuses = Counter(str(s) for s in await asyncio.gather(*(one() for _ in range(count))))
    return {"calls": count, "statuses": statuses, "bytes_per_call": total // max(1, count),
            "seconds": round(time.monotonic() - started, 1)}


async def hugename(host, port, key, name_bytes):
    boundary = b"hostile-boundary"
    body = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            + b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="'
            + b"x" * name_bytes + b'"\r\n\r\n{"a":1}\n\r\n--' + boundary + b"--\r\n")
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST /v1/files HTTP/1.1\r\nHost: prism\r\nConnection: close\r\n"
                 + b"Authorization: Bearer " + key.encode() + b"\r\n"
                 + b"Content-Type: multipart/form-data; boundary=" + boundary + b"\r\n"
                 + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    await writer.drain()
    status, _ = await read_answer(reader, 60)
    writer.close()
    return {"filename_bytes": name_bytes, "status": status}


def main(argv):
    mode, host, port = argv[1], argv[2], int(argv[3])
    if mode == "slow":
        result = asyncio.run(slow(host, port, int(argv[4]), float(argv[5])))
    elif mode == "bodies":
        result = asyncio.run(bodies(host, port, argv[4], int(argv[5]), int(argv[6]),
                                    float(argv[7])))
    elif mode == "hugename":
        result = asyncio.run(hugename(host, port, argv[4], int(argv[5])))
    elif mode == "lists":
        result = asyncio.run(lists(host, port, argv[4], int(argv[5]), int(argv[6])))
    else:
        sys.exit(f"unknown mode {mode}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv)
