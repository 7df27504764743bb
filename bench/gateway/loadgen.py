"""A minimal keep-alive HTTP/1.1 load generator (asyncio streams), so the client costs little CPU.

Each virtual client holds one connection and sends requests back to back; it measures the time to
the whole response and, for streamed (chunked) answers, the time to the first body chunk.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Sample:
    latency: float
    first_chunk: float
    status: int


@dataclass
class Result:
    samples: list[Sample] = field(default_factory=list)
    wall: float = 0.0


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, url: str) -> Connection:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer, f"{parts.hostname}:{parts.port}")

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Sample:
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"Content-Length: {len(body)}\r\n\r\n"
        start = time.perf_counter()
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length, chunked = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding" and "chunked" in value:
                chunked = True
        first = 0.0
        if chunked:
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                if not first:
                    first = time.perf_counter() - start
                if size == 0:
                    await self.reader.readline()
                    break
                await self.reader.readexactly(size + 2)
        else:
            await self.reader.readexactly(length)
            first = time.perf_counter() - start
        return Sample(time.perf_counter() - start, first, status)

    def close(self) -> None:
        self.writer.close()


async def run_load(
    url: str, path: str, payload: dict[str, object], headers: dict[str, str], clients: int, requests: int
) -> Result:
    body = json.dumps(payload).encode()
    connections = [await Connection.open(url) for _ in range(clients)]
    result = Result()
    remaining = requests

    async def worker(connection: Connection) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            result.samples.append(await connection.post(path, body, headers))

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in connections))
    result.wall = time.perf_counter() - start
    for connection in connections:
        connection.close()
    return result
