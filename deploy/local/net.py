"""Loopback helpers shared by local mode and its tests: ports and the bind warning."""

from __future__ import annotations

import ipaddress
import random
import socket


def port_open(host: str, port: int) -> bool:
    """Whether something accepts connections on ``host:port`` (tests assert servers stopped)."""
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, port)) == 0


def free_ports(
    count: int = 1, host: str = "127.0.0.1", span: tuple[int, int] | None = None
) -> list[int]:
    """``count`` distinct free ports on ``host``: any the OS offers, or drawn from ``span``."""
    chooser = random.SystemRandom()
    ports: list[int] = []
    for _ in range(500):
        with socket.socket() as probe:
            try:
                probe.bind((host, chooser.randint(*span) if span else 0))
            except OSError:
                continue
            port = probe.getsockname()[1]
        if port not in ports:
            ports.append(port)
        if len(ports) == count:
            return ports
    where = f" in {span[0]}-{span[1]}" if span else ""
    raise OSError(f"no free port on {host}{where}")


def free_port(host: str = "127.0.0.1") -> int:
    """One free port on ``host``."""
    return free_ports(1, host)[0]


def bind_warning(host: str) -> str | None:
    """A warning when ``host`` is not a loopback address: the endpoint has no authentication."""
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return (
        f"binding to {host}: anyone who can reach this address can call the model (the local "
        "server has no authentication); use the default 127.0.0.1 unless you mean it"
    )
