"""The machine and its processes: machine facts, CPU and RSS read from /proc, a free port, the
server run as a subprocess, and the once-a-second `Sampler` of server and client processes."""

from __future__ import annotations

import asyncio
import datetime as _dt
import os
import platform
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from voxline.bench.children import spawn

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_info() -> dict[str, Any]:
    """Cores, CPU model (/proc/cpuinfo), RAM (/proc/meminfo), load, kernel, Python, date."""
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = None
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
        ram_gb = round(kb / 1024 / 1024, 1)
    except (OSError, AttributeError, ValueError):
        pass
    return {"cores": os.cpu_count(), "cpu_model": cpu_model, "ram_gb": ram_gb,
            "loadavg_start": round(os.getloadavg()[0], 2), "kernel": platform.release(),
            "python": platform.python_version(),
            "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}


def proc_sample(pid: int) -> tuple[float, float] | None:
    """(CPU seconds user+system, RSS MB) of `pid` from /proc, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields_ = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields_[11]) + int(fields_[12])) / CLK_TCK  # utime, stime (fields 14, 15)
    m = re.search(r"VmRSS:\s+(\d+)", status)
    return cpu, (int(m.group(1)) / 1024 if m else 0.0)


def system_cpu() -> tuple[float, float] | None:
    """(busy seconds, idle seconds) of the whole machine, summed over cores, from /proc/stat."""
    try:
        parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)  # idle + iowait
    busy = sum(parts[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / CLK_TCK, idle / CLK_TCK


def machine_busy_pct(a: tuple[float, float] | None, b: tuple[float, float] | None) -> float | None:
    """Machine CPU busy between two `system_cpu()` readings, in % of one core (cores x 100 = all)."""
    if a is None or b is None:
        return None
    busy, idle = b[0] - a[0], b[1] - a[1]
    total = busy + idle
    return round(busy / total * 100 * (os.cpu_count() or 1), 1) if total > 0 else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """A server run as a subprocess with its output in a log file; stopped with SIGTERM (and with the benchmark)."""

    cmd: list[str]
    log_path: Path
    url: str
    proc: subprocess.Popen[bytes] | None = None
    ready_path: str = "/healthz"  # a model service: /readyz (200 once its model has warmed)

    async def start(self, timeout: float = 180.0) -> None:
        import aiohttp

        with open(self.log_path, "wb") as log:
            self.proc = spawn(self.cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log_path}")
                try:
                    async with http.get(self.url + self.ready_path) as resp:
                        if resp.status == 200:
                            return
                except (TimeoutError, aiohttp.ClientError, OSError):
                    pass
                await asyncio.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server not healthy within {timeout:.0f} s; see {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


def _metric(text: str, name: str) -> float | None:
    """The unlabelled sample `name` of a /metrics text, read with prometheus-client's parser."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return float(sample.value)
    return None


class Sampler:
    """Once a second: CPU seconds and RSS of the server and client processes, and server /metrics.

    With several server processes (one per core), their CPU, RSS and counters are summed.
    """

    def __init__(self, server_urls: list[str], server_pids: list[int], client_pids: list[int]) -> None:
        self.server_urls = server_urls
        self.server_pids = server_pids
        self.client_pids = client_pids
        self.samples: list[dict[str, Any]] = []

    async def sample(self, http: Any) -> dict[str, Any]:
        row: dict[str, Any] = {"t": time.time(), "system": system_cpu(), "conductor": proc_sample(os.getpid())}
        if self.server_pids:
            each = [proc_sample(p) for p in self.server_pids]
            row["server"] = None if None in each else (sum(e[0] for e in each if e), sum(e[1] for e in each if e))
        row["clients"] = [proc_sample(p) for p in self.client_pids]
        late: float | None = 0.0
        active: float | None = 0.0
        limited: float | None = 0.0
        for url in self.server_urls:
            try:
                async with http.get(url + "/metrics") as resp:
                    text = await resp.text()
                one_late = _metric(text, "voxline_playout_frames_late_total")
                one_active = _metric(text, "voxline_sessions_active")
                one_limited = _metric(text, "voxline_inbound_rtp_limited_total")
            except Exception:  # noqa: BLE001 - a busy server may miss a scrape; that is recorded
                one_late = one_active = one_limited = None
            late = None if late is None or one_late is None else late + one_late
            active = None if active is None or one_active is None else active + one_active
            limited = None if limited is None or one_limited is None else limited + one_limited
        # Callers' packets or frames the server's input bounds dropped (live sessions' counts).
        row["frames_late"], row["active"], row["inbound_limited"] = late, active, limited
        self.samples.append(row)
        return row

    async def run(self, until: float, stop: asyncio.Event) -> None:
        import aiohttp

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while time.time() < until and not stop.is_set():
                await self.sample(http)
                try:
                    async with asyncio.timeout(1.0):
                        await stop.wait()
                except TimeoutError:
                    pass

    def window(self, t0: float, t1: float) -> list[dict[str, Any]]:
        return [s for s in self.samples if t0 <= s["t"] <= t1]
