"""
Rate limits on the REST actions an abuser repeats: sign-ups, logins, and the creation of
matches and arenas.  Each is a L{gameproto.limits.Rate} per client address and, once there
is an account, per account; over it the request is answered C{429} with C{Retry-After}
and a JSON body, before any work is done.

The tables live in the node's memory: with several nodes each counts its own requests.
"""

from __future__ import annotations

import ipaddress
import math
from typing import Callable, Iterable

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from gameproto.rest import ApiError
from gameproto.limits import Rate, RateTable


@attrs.frozen
class RequestLimits:
    """The rates of the throttled REST actions; C{None} turns one off."""

    sign_ups_per_address: Rate | None = Rate(10, 3600)
    logins_per_address: Rate | None = Rate(30, 60)
    # Counts failed logins only: a right password gives its token back.
    failed_logins_per_account: Rate | None = Rate(10, 600)
    # Matches and arenas together.
    creations_per_account: Rate | None = Rate(20, 600)
    creations_per_address: Rate | None = Rate(60, 600)


class TooManyRequests(ApiError):
    """C{429 {"error", "retry_after"}} with C{Retry-After}, in whole seconds."""

    def __init__(self, wait: float) -> None:
        seconds = max(1, math.ceil(wait))
        super().__init__(
            429, f"too many requests: try again in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )
        self.retry_after = seconds

    def body(self) -> dict[str, object]:  # type: ignore[override]
        return {**super().body(), "retry_after": self.retry_after}


def address_key(host: str) -> str:
    """
    Who a client is, for the per-address limits: its IPv4 address, or the /64 network of
    its IPv6 address (one subscriber commonly holds a whole /64).
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an IP address: a UNIX socket, an in-memory transport
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def client_address(request: IRequest) -> str:
    return address_key(getattr(request.getClientAddress(), "host", "local"))


class Throttle:
    """
    The REST rate limits of one node.  Each method charges one request to its tables, or
    raises L{TooManyRequests} (charging nothing) when any of them is exhausted.
    """

    def __init__(self, limits: RequestLimits, clock: IReactorTime) -> None:
        def table(rate: Rate | None) -> RateTable | None:
            return None if rate is None else RateTable(rate, clock)

        self.limits = limits
        self._sign_ups = table(limits.sign_ups_per_address)
        self._logins = table(limits.logins_per_address)
        self._failed_logins = table(limits.failed_logins_per_account)
        self._creations_by_account = table(limits.creations_per_account)
        self._creations_by_address = table(limits.creations_per_address)

    def sign_up(self, request: IRequest) -> None:
        self._charge([(self._sign_ups, client_address(request))])

    def login_attempt(self, request: IRequest) -> None:
        """Before the body is read: the client's address pays for every attempt."""
        self._charge([(self._logins, client_address(request))])

    def login(self, username: str) -> Callable[[], None]:
        """
        Charge a login to C{username}'s account (the name as typed, ignoring case).

        @return: a function that gives the charge back, for a login that did not fail
            on wrong credentials: only failures count.
        """
        table, key = self._failed_logins, username.casefold()
        self._charge([(table, key)])

        def forgive() -> None:
            if table is not None:
                table.give_back(key)

        return forgive

    def creation(self, request: IRequest, username: str) -> None:
        """A new match or arena, charged to the user and to the client's address."""
        self._charge([
            (self._creations_by_account, username.casefold()),
            (self._creations_by_address, client_address(request)),
        ])

    @staticmethod
    def _charge(charges: Iterable[tuple[RateTable | None, str]]) -> None:
        taken: list[tuple[RateTable, str]] = []
        for table, key in charges:
            if table is None:
                continue
            if not table.take(key):
                for done, done_key in taken:
                    done.give_back(done_key)
                raise TooManyRequests(table.wait(key))
            taken.append((table, key))
