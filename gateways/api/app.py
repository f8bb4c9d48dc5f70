"""The REST gateway's FastAPI application: endpoints, signed-request authentication, rate limits
and RFC 9457 problem details carrying the exchange's numbered reject codes.

`Gateway` holds what the requests share (the authenticator, the rate limiters, one
`TraderSession` per trader, the reference data, the tick store); `build_app(gateway, books)` makes
the ASGI app. Orders and account endpoints are signed (`authenticated`, per-key rate limit); market
data is public (`public`, rate-limited per client address). The order commands (place, cancel,
replace, mass cancel) and the account queries are ``async``: they hand the command to the trader's
session on the event loop and await its answer (at most ``api.request_timeout_s``), so no thread
waits for the TES and any number of orders can be in flight. The endpoints that read files or the
database (instruments, trades, bars) are plain ``def``: FastAPI runs them on its thread pool.
"""

import asyncio
import datetime
import logging
import threading
import time
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import AwareDatetime, BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from clients.client import ClientError, RequestRejected, RequestTimeout, SessionEnded
from clients.terminal import clock
from config.settings import ApiKeyConfig, Config, InstrumentConfig, StpMode, stp_mode
from engine.types import OrderFlags, OrderType, RejectReason, SelfTradePrevention, Side, TimeInForce
from gateways.api.auth import Authenticator, AuthError, RateLimiter, retry_after
from gateways.api.traders import RequestTimedOut, TraderSession
from servers import service
from servers.protocol import (
    CancelOrder,
    CancelRejected,
    EnterOrder,
    MassCancel,
    OrderAccepted,
    OrderRejected,
    OrderReplaced,
    ReplaceOrder,
    ReplaceRejected,
)

log = logging.getLogger("api")

PROBLEM = "application/problem+json"
REJECT_CODES_PATH = "/v1/reject-codes"
MAX_INT = 2**63 - 1
SYMBOL = r"^[A-Za-z0-9._-]{1,16}$"
INSTRUMENTS_TTL_S = 5.0
"""How long the public instrument list is served before the reference data is read again."""
TAG = r"^[A-Za-z0-9._:-]{1,36}$"


# ------------------------------------------------------------------ problems (RFC 9457)


class ApiProblem(Exception):
    """An error answered as problem details: HTTP ``status``, a short ``title``, the ``detail`` and,
    when the exchange has one, its numbered reject ``code`` (`engine.types.RejectReason`)."""

    def __init__(self, status: int, title: str, detail: str, code: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.code, self.headers = status, title, detail, code, headers


def problem_response(request: Request, status: int, title: str, detail: str, code: int | None = None,
                     headers: dict[str, str] | None = None, **extra) -> JSONResponse:
    body = {"type": f"{REJECT_CODES_PATH}#{code}" if code is not None else "about:blank", "title": title,
            "status": status, "detail": detail, "instance": request.url.path}
    if code is not None:
        body["code"] = code
        try:
            body["reason"] = RejectReason(code).name
        except ValueError:
            pass
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def status_of(reason: RejectReason) -> int:
    """The HTTP status of an exchange reject."""
    if reason in (RejectReason.MESSAGE_RATE_LIMIT, RejectReason.QUERY_RATE_LIMIT):
        return 429
    if reason == RejectReason.UNKNOWN_ORDER:
        return 404
    if reason in (RejectReason.NOT_LOGGED_ON, RejectReason.BAD_CREDENTIALS):
        return 401
    if reason == RejectReason.NOT_AUTHORIZED:
        return 403
    if reason >= 6000:
        return 503
    return 422


def rejected(reason: RejectReason, text: str) -> ApiProblem:
    return ApiProblem(status_of(reason), reason.name.replace("_", " ").capitalize(), text, int(reason),
                      {"Retry-After": "1"} if status_of(reason) == 429 else None)


# ------------------------------------------------------------------ models


SideName = Literal["buy", "sell"]
TypeName = Literal["limit", "market", "stop", "stop_limit"]
TifName = Literal["gtc", "ioc", "fok", "day", "gtd"]
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def nanoseconds(moment: int | datetime.datetime) -> int:
    """An ``expire_at`` as ns since the epoch: as given (an int), or an ISO 8601 time with its offset."""
    if isinstance(moment, int):
        return moment
    return (moment - EPOCH) // datetime.timedelta(microseconds=1) * 1000


def stp_name(mode: SelfTradePrevention) -> str:
    """A self-trade prevention mode as the configuration and the trader CLI spell it (``cancel-maker``)."""
    return mode.name.lower().replace("_", "-")


class NewOrder(BaseModel):
    model_config = {"extra": "forbid"}

    symbol: str = Field(pattern=SYMBOL, examples=["ACME"])
    side: SideName
    type: TypeName = Field("limit", description=(
        "stop: held until a trade prints at stop_price (a buy at or above it, a sell at or below it), then a "
        "market order (immediate or cancel); stop_limit: then a limit order at price"))
    time_in_force: TifName = Field("gtc", description="gtd: good till expire_at (a stop's is always gtc)")
    price: int = Field(0, ge=0, le=MAX_INT, description="In ticks; 0 for a market or stop order")
    quantity: int = Field(ge=1, le=MAX_INT, description="In lots")
    stop_price: int = Field(0, ge=0, le=MAX_INT, description="stop and stop_limit: the trigger price, in ticks")
    display_quantity: int = Field(0, ge=0, le=MAX_INT, description=(
        "An iceberg (a limit order): the most of it shown in the book at once, in lots; 0 shows all of it"))
    post_only: bool = Field(False, description="Refused (2003) if it would trade on arrival: only ever a maker")
    stp: StpMode | None = Field(None, description=(
        "Self-trade prevention against the resting orders of the trader's account; absent: the trader's default"))
    expire_at: Annotated[int, Field(ge=1, le=MAX_INT)] | AwareDatetime | None = Field(None, description=(
        "time_in_force gtd: when the order expires, as nanoseconds since the epoch (UTC) or an ISO 8601 time "
        "with its offset (2026-12-03T17:30:00Z)"), examples=[1_796_000_000_000_000_000, "2026-12-03T17:30:00Z"])
    tag: str | None = Field(None, pattern=TAG, description=(
        "The client's own text, echoed in the answer: to match answers to orders, and to tell two "
        "otherwise identical orders signed in the same millisecond apart (else the second is a replay)"))


class Amend(BaseModel):
    """A replace changes an order's price and open quantity only (the TES's ReplaceOrder): its type,
    stop price, display quantity, post-only, self-trade prevention and expiry stay; a held stop
    cannot be replaced (2005)."""

    model_config = {"extra": "forbid"}

    price: int = Field(ge=0, le=MAX_INT, description="The new price, in ticks")
    quantity: int = Field(ge=1, le=MAX_INT, description="The new open quantity, in lots")


class Order(BaseModel):
    order_id: int
    client_order_id: int
    symbol: str
    side: SideName | None = None
    type: TypeName | None = None
    time_in_force: TifName | None = None
    price: int
    quantity: int
    status: str | None = None
    filled: int = 0
    leaves: int = 0
    average_price: float = 0.0
    time: int = 0
    stop_price: int = 0
    display_quantity: int = 0
    post_only: bool = False
    stp: StpMode | None = Field(None, description="The self-trade prevention mode in force")
    expire_at: int = Field(0, description="GTD: the expiry, nanoseconds since the epoch (0: none)")
    tag: str | None = None


class CancelResult(BaseModel):
    order_id: int
    client_order_id: int
    symbol: str
    canceled_quantity: int
    status: str | None = None
    filled: int = 0


class MassCancelResult(BaseModel):
    symbol: str
    canceled: int


class OpenOrderModel(BaseModel):
    order_id: int
    client_order_id: int
    symbol: str
    side: SideName
    type: TypeName
    time_in_force: TifName
    price: int
    quantity: int = Field(description="Open quantity (an iceberg's hidden part included)")
    filled: int
    stop_price: int = 0
    display_quantity: int = 0
    post_only: bool = False
    stp: StpMode
    expire_at: int = 0
    held: bool = Field(False, description="A stop not triggered yet (outside the book, waiting for its stop price)")


class FillModel(BaseModel):
    time: int
    symbol: str
    trade_id: int
    order_id: int
    side: SideName
    price: int
    quantity: int
    aggressor: bool


class PositionModel(BaseModel):
    symbol: str
    quantity: int
    average_price: float
    realized_pnl: int
    unrealized_pnl: int
    last_price: int


class PositionsModel(BaseModel):
    cash: int
    positions: list[PositionModel]


PhaseName = Literal["continuous", "call", "halted"]


class BookModel(BaseModel):
    symbol: str
    bids: list[tuple[int, int, int]] = Field(description="[price, quantity, orders], best first")
    asks: list[tuple[int, int, int]]
    last_price: int | None
    sequence: int
    phase: PhaseName = "continuous"
    indicative_price: int = Field(0, description="In a call or a halt: the price the book would uncross at now")
    indicative_volume: int = Field(0, description="...and the volume (0 and 0: nothing would trade)")


class InstrumentModel(BaseModel):
    symbol: str
    tick_size: int
    lot_size: int
    min_quantity: int
    max_quantity: int
    price_band_bps: int
    price_scale: int


class TradeModel(BaseModel):
    time: int = Field(description="Nanoseconds since the epoch")
    symbol: str
    price: float
    size: int
    trade_id: int
    side: str


class BarModel(BaseModel):
    time: int = Field(description="The bar's start, nanoseconds since the epoch")
    open: float
    high: float
    low: float
    close: float
    volume: int
    trades: int


class RejectCode(BaseModel):
    code: int
    reason: str
    http_status: int


class ProblemModel(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str
    code: int | None = None
    reason: str | None = None


def _side(side: Side) -> str:
    return side.name.lower()


def _order(report: OrderAccepted, tag: str | None = None) -> Order:
    return Order(order_id=report.order_id, client_order_id=report.client_order_id, symbol=report.symbol,
                 side=_side(report.side), type=report.order_type.name.lower(),
                 time_in_force=report.time_in_force.name.lower(), price=report.price, quantity=report.quantity,
                 status=report.status.value if report.status else None, filled=report.filled, leaves=report.leaves,
                 average_price=report.average_price, time=report.time, stop_price=report.stop_price,
                 display_quantity=report.display_quantity, post_only=bool(report.flags & OrderFlags.POST_ONLY),
                 stp=stp_name(report.stp), expire_at=report.expire_at, tag=tag)


# ------------------------------------------------------------------ the gateway's shared state


class Gateway:
    """What every request shares: keys, limits, the traders' sessions, the stores."""

    def __init__(self, config: Config, secrets_by_key: dict[str, str], server_key: bytes | None) -> None:
        self.config = config
        self.api = config.api
        self.auth = Authenticator(self.api, secrets_by_key)
        self.limiter = RateLimiter(self.api.rate_limit_per_s, self.api.rate_limit_burst)
        self.public_limiter = RateLimiter(self.api.rate_limit_per_s, self.api.rate_limit_burst,
                                          max_keys=self.api.rate_limit_addresses)
        """Public requests, per client address."""
        self._instruments: tuple[float, list[InstrumentConfig]] | None = None
        self._instruments_lock = threading.Lock()
        self.server_key = server_key
        self.sessions: dict[str, TraderSession] = {}
        self._lock = threading.Lock()
        self._database = None
        self._ticks = None
        self._ticks_lock = threading.Lock()
        self.listeners: list = []
        """Callables ``(trader_id, report)`` told of every report (the private streams)."""
        self.bad_requests = service.Occurrences(log, "refused requests: %s (%d so far)", every=5.0)
        self.reference_unread = service.Occurrences(
            log, "instruments served from the configuration: the database's reference data cannot be read (%s; "
            "%d times so far)", every=30.0)

    def session(self, key: ApiKeyConfig) -> TraderSession:
        with self._lock:
            session = self.sessions.get(key.trader_id)
            if session is None:
                session = self.sessions[key.trader_id] = TraderSession(self.config, key, self.server_key,
                                                                       self._report)
        return session

    def _report(self, trader_id: str, report) -> None:
        for listener in list(self.listeners):
            listener(trader_id, report)

    def database(self):
        if self._database is None:
            from database.store import open_database

            self._database = open_database(self.config)
        return self._database

    def instruments(self) -> list[InstrumentConfig]:
        """The tradable instruments as the TES has them: the transactional database's reference data
        (the configuration's if it cannot be read), those a book server owns, read again after
        ``INSTRUMENTS_TTL_S``."""
        with self._instruments_lock:
            if self._instruments is not None and time.monotonic() - self._instruments[0] < INSTRUMENTS_TTL_S:
                return self._instruments[1]
            try:
                from database.reference import load_reference
                from database.store import transaction

                with transaction(self.database(), write=False) as connection:
                    found, _traders = load_reference(connection)
            except Exception as exc:  # noqa: BLE001 - the configuration's reference data stands in
                self.reference_unread(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                found = list(self.config.instruments)
            served = {symbol for shard in self.config.shards for symbol in shard.symbols}
            listed = [instrument for instrument in found if instrument.symbol in served]
            self._instruments = (time.monotonic(), listed)
            return listed

    def tick_query(self, ask):
        with self._ticks_lock:
            if self._ticks is None:
                from database.ticks.queries import TickHistory

                self._ticks = TickHistory(self.config.ticks.root)
            return ask(self._ticks)

    def close(self) -> None:
        for session in list(self.sessions.values()):
            try:
                session.close()
            except Exception as exc:  # noqa: BLE001 - closing what is left; one line each
                log.warning("%s: closing the TES session: %s", session.trader_id, exc)
        if self._ticks is not None:
            self._ticks.close()
        if self._database is not None:
            self._database.dispose()


# ------------------------------------------------------------------ the application


def build_app(gateway: Gateway, books) -> FastAPI:
    """The ASGI app of ``gateway``; ``books`` serves the public book (`gateways.api.streams.Streams.book`)."""
    api = gateway.api
    app = FastAPI(
        title="Exchange REST gateway",
        version="1.0",
        description=(
            "Order entry, account queries and market data of the exchange. Market data (instruments, book, "
            "trades, bars) is public, rate-limited per client address. Orders and account endpoints are signed: "
            "`X-API-KEY` (the key id), `X-API-TIMESTAMP` (ms since the epoch) and `X-API-SIGNATURE` = hex "
            "HMAC-SHA256(secret, timestamp + METHOD + path?query + body). Errors are RFC 9457 problem details "
            f"whose `code` is the exchange's reject code (see `{REJECT_CODES_PATH}`). Prices are in ticks, "
            "quantities in lots. WebSocket streams: `/v1/ws`."
        ),
    )
    problem = {"model": ProblemModel, "content": {PROBLEM: {}}}
    errors = {status: problem for status in (400, 401, 404, 422, 429)}
    public_errors = {status: answer for status, answer in errors.items() if status != 401}

    @app.exception_handler(ApiProblem)
    async def _problem(request: Request, exc: ApiProblem):
        return problem_response(request, exc.status, exc.title, exc.detail, exc.code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors_list = exc.errors()
        malformed = any(error.get("type") == "json_invalid" for error in errors_list)
        gateway.bad_requests("malformed JSON" if malformed else "invalid fields")
        details = [{"location": list(map(str, error.get("loc", ()))), "message": error.get("msg", "")}
                   for error in errors_list][:20]
        if malformed:
            return problem_response(request, 400, "Malformed JSON", "the body is not valid JSON",
                                    int(RejectReason.MALFORMED_MESSAGE), errors=details)
        return problem_response(request, 422, "Invalid request", "; ".join(
            f"{'.'.join(d['location'])}: {d['message']}" for d in details), int(RejectReason.MALFORMED_MESSAGE),
            errors=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return problem_response(request, exc.status_code, str(exc.detail), str(exc.detail),
                                headers=getattr(exc, "headers", None))

    @app.exception_handler(ClientError)
    async def _client(request: Request, exc: ClientError):
        if isinstance(exc, RequestRejected):
            problem = rejected(exc.reason, exc.text)
            return problem_response(request, problem.status, problem.title, problem.detail, problem.code,
                                    problem.headers)
        if isinstance(exc, RequestTimeout):
            return problem_response(request, 504, "Exchange timeout", str(exc))
        if isinstance(exc, SessionEnded):
            return problem_response(request, 503, "Exchange session ended", str(exc))
        reason = getattr(exc, "reason", None)
        return problem_response(request, 503, "Exchange unavailable", str(exc),
                                int(reason) if reason is not None else None)

    @app.exception_handler(RequestTimedOut)
    async def _timed_out(request: Request, exc: RequestTimedOut):
        return problem_response(request, 504, "Exchange timeout", str(exc))

    signed_headers = {
        "key": ("X-API-KEY", "The key id"),
        "timestamp": ("X-API-TIMESTAMP", "Milliseconds since the epoch"),
        "signature": ("X-API-SIGNATURE", "hex HMAC-SHA256(secret, timestamp + METHOD + path?query + body)"),
    }

    async def authenticated(request: Request) -> ApiKeyConfig:
        """The signed request's key (the three headers are read, with the raw body, from the request;
        `openapi` declares them, rather than three sub-dependencies that each request would solve)."""
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > api.max_body_bytes):
            raise ApiProblem(413, "Body too large", f"a body may have at most {api.max_body_bytes} bytes",
                             int(RejectReason.FRAME_TOO_LARGE))
        body = await request.body()
        if len(body) > api.max_body_bytes:
            raise ApiProblem(413, "Body too large", f"a body may have at most {api.max_body_bytes} bytes",
                             int(RejectReason.FRAME_TOO_LARGE))
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        headers = request.headers
        try:
            key = gateway.auth.check(headers.get("x-api-key"), headers.get("x-api-timestamp"),
                                     headers.get("x-api-signature"), request.method, path, body)
        except AuthError as exc:
            gateway.bad_requests(exc.title.lower())
            raise ApiProblem(401, exc.title, exc.detail, exc.code, {"WWW-Authenticate": "HMAC-SHA256"}) from None
        wait = gateway.limiter.take(key.key_id)
        if wait > 0:
            gateway.bad_requests("rate limited")
            raise ApiProblem(429, "Too many requests", f"more than {api.rate_limit_per_s} requests a second for "
                             f"this key (bursts of {api.rate_limit_burst})", int(RejectReason.MESSAGE_RATE_LIMIT),
                             {"Retry-After": retry_after(wait)})
        return key

    Key = Annotated[ApiKeyConfig, Depends(authenticated)]

    async def public(request: Request) -> None:
        """A public request: rate-limited per client address (as the gateway sees it)."""
        address = request.client.host if request.client is not None else ""
        wait = gateway.public_limiter.take(address)
        if wait > 0:
            gateway.bad_requests("rate limited (public)")
            raise ApiProblem(429, "Too many requests", f"more than {api.rate_limit_per_s} public requests a second "
                             f"from this address (bursts of {api.rate_limit_burst})",
                             int(RejectReason.MESSAGE_RATE_LIMIT), {"Retry-After": retry_after(wait)})

    Public = Depends(public)
    SymbolPath = Annotated[str, Path(pattern=SYMBOL)]

    @app.get("/v1/health", tags=["public"], summary="Liveness")
    def health() -> dict:
        return {"status": "ok", "time": time.time_ns()}

    @app.get(REJECT_CODES_PATH, tags=["public"], summary="The exchange's numbered reject codes")
    def reject_codes() -> list[RejectCode]:
        return [RejectCode(code=int(r), reason=r.name, http_status=status_of(r)) for r in RejectReason]

    # -------------------------------------------------------------- orders

    @app.post("/v1/orders", tags=["orders"], status_code=201, responses=errors, summary="Place an order")
    async def place(order: NewOrder, key: Key) -> Order:
        kind = OrderType[order.type.upper()]
        tif = TimeInForce[order.time_in_force.upper()]
        if kind in (OrderType.MARKET, OrderType.STOP) and order.price != 0:
            raise ApiProblem(422, "Invalid price", f"a {order.type} order has price 0", int(RejectReason.INVALID_PRICE))
        if kind not in (OrderType.STOP, OrderType.STOP_LIMIT) and order.stop_price != 0:
            raise ApiProblem(422, "Invalid stop price", "only stop and stop_limit orders have a stop price",
                             int(RejectReason.INVALID_STOP_PRICE))
        if tif == TimeInForce.GTD and order.expire_at is None:
            raise ApiProblem(422, "Invalid expiry", "time in force gtd needs expire_at",
                             int(RejectReason.EXPIRE_TIME_PASSED))
        if tif != TimeInForce.GTD and order.expire_at is not None:
            raise ApiProblem(422, "Invalid expiry", "expire_at is for time in force gtd only",
                             int(RejectReason.MALFORMED_MESSAGE))
        expire_at = nanoseconds(order.expire_at) if order.expire_at is not None else 0
        if not -MAX_INT <= expire_at <= MAX_INT:
            raise ApiProblem(422, "Invalid expiry", "expire_at is beyond the 64-bit nanosecond range (year 2262)",
                             int(RejectReason.VALUE_OUT_OF_RANGE))
        stp = stp_mode(order.stp) if order.stp is not None else None
        flags = int(OrderFlags.POST_ONLY) if order.post_only else 0
        report = await gateway.session(key).submit(lambda cid: EnterOrder(
            cid, order.symbol, Side[order.side.upper()], kind, tif, order.price, order.quantity, order.stop_price,
            order.display_quantity, flags, stp, expire_at))
        if isinstance(report, OrderRejected):
            raise rejected(report.reason, report.text)
        if not isinstance(report, OrderAccepted):
            raise ApiProblem(502, "Unexpected answer", f"the exchange answered {type(report).__name__}")
        return _order(report, order.tag)

    @app.get("/v1/orders", tags=["orders"], responses=errors, summary="My open orders")
    async def open_orders(key: Key,
                          symbol: Annotated[str | None, Query(pattern=SYMBOL)] = None) -> list[OpenOrderModel]:
        orders = await gateway.session(key).query(lambda client, timeout: client.open_orders(timeout))
        return [OpenOrderModel(order_id=o.order_id, client_order_id=o.client_order_id, symbol=o.symbol,
                               side=_side(o.side), type=o.order_type.name.lower(),
                               time_in_force=o.time_in_force.name.lower(), price=o.price, quantity=o.quantity,
                               filled=o.filled, stop_price=o.stop_price, display_quantity=o.display_quantity,
                               post_only=bool(o.flags & OrderFlags.POST_ONLY), stp=stp_name(o.stp),
                               expire_at=o.expire_at, held=o.held)
                for o in orders if symbol is None or o.symbol == symbol]

    @app.delete("/v1/orders/{order_id}", tags=["orders"], responses=errors, summary="Cancel an order")
    async def cancel(order_id: Annotated[int, Path(ge=1, le=MAX_INT)], key: Key) -> CancelResult:
        report = await gateway.session(key).submit(lambda cid: CancelOrder(cid, order_id))
        if isinstance(report, CancelRejected):
            raise rejected(report.reason, report.text)
        return CancelResult(order_id=report.order_id, client_order_id=report.client_order_id,
                            symbol=getattr(report, "symbol", ""), canceled_quantity=getattr(report, "quantity", 0),
                            status=report.status.value if report.status else None, filled=report.filled)

    @app.put("/v1/orders/{order_id}", tags=["orders"], responses=errors,
             summary="Replace an order: a new price and open quantity")
    async def replace(order_id: Annotated[int, Path(ge=1, le=MAX_INT)], amend: Amend, key: Key) -> Order:
        report = await gateway.session(key).submit(
            lambda cid: ReplaceOrder(cid, order_id, amend.price, amend.quantity))
        if isinstance(report, ReplaceRejected):
            raise rejected(report.reason, report.text)
        if not isinstance(report, OrderReplaced):
            raise ApiProblem(502, "Unexpected answer", f"the exchange answered {type(report).__name__}")
        return Order(order_id=report.order_id, client_order_id=report.client_order_id, symbol=report.symbol,
                     price=report.price, quantity=report.quantity,
                     status=report.status.value if report.status else None, filled=report.filled,
                     leaves=report.leaves, average_price=report.average_price, time=report.time)

    @app.delete("/v1/orders", tags=["orders"], responses=errors,
                summary="Mass cancel: every open order of mine (in one symbol, or all)")
    async def mass_cancel(key: Key, symbol: Annotated[str | None, Query(pattern=SYMBOL)] = None) -> MassCancelResult:
        done = await gateway.session(key).submit(MassCancel(symbol or ""))
        return MassCancelResult(symbol=done.symbol, canceled=done.canceled)

    # -------------------------------------------------------------- account

    def recorded_fills(trader_id: str, symbol: str | None) -> dict[tuple[int, int], FillModel]:
        """The trader's executions in the transactional database (none if it cannot be read)."""
        found: dict[tuple[int, int], FillModel] = {}
        try:
            from database import queries

            with gateway.database().connect() as connection:
                for record in queries.executions(connection, trader_id, 0, MAX_INT, symbol):
                    found[(record.trade_id, record.order_id)] = FillModel(
                        time=record.time, symbol=record.symbol, trade_id=record.trade_id, order_id=record.order_id,
                        side=_side(record.side), price=record.price, quantity=record.quantity,
                        aggressor=record.aggressor)
        except Exception as exc:  # noqa: BLE001 - the database is optional here: the session's fills still count
            log.warning("fills of %s: the database is unavailable (%s); the session's fills only", trader_id, exc)
        return found

    @app.get("/v1/fills", tags=["account"], responses=errors,
             summary="My fills: the database's history plus this gateway's session, oldest first")
    async def fills(key: Key, symbol: Annotated[str | None, Query(pattern=SYMBOL)] = None,
                    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[FillModel]:
        session = gateway.session(key)
        if not session.started:
            await session.start()
        found = await asyncio.to_thread(recorded_fills, key.trader_id, symbol)
        for fill in list(session.fills):
            if symbol is None or fill.symbol == symbol:
                found.setdefault((fill.trade_id, fill.order_id), FillModel(
                    time=fill.time, symbol=fill.symbol, trade_id=fill.trade_id, order_id=fill.order_id,
                    side=_side(fill.side), price=fill.price, quantity=fill.quantity, aggressor=fill.aggressor))
        ordered = sorted(found.values(), key=lambda f: (f.time, f.trade_id, f.order_id))
        return ordered[-limit:]

    @app.get("/v1/positions", tags=["account"], responses=errors, summary="My positions and cash")
    async def positions(key: Key) -> PositionsModel:
        answer = await gateway.session(key).query(lambda client, timeout: client.positions(timeout))
        return PositionsModel(cash=answer.cash, positions=[
            PositionModel(symbol=p.symbol, quantity=p.quantity, average_price=p.average_price,
                          realized_pnl=p.realized_pnl, unrealized_pnl=p.unrealized_pnl, last_price=p.last_price)
            for p in answer.positions])

    # -------------------------------------------------------------- market data

    def _known(symbol: str) -> None:
        if gateway.config.instrument(symbol) is None:
            raise ApiProblem(404, "Unknown symbol", f"no instrument {symbol!r}", int(RejectReason.UNKNOWN_SYMBOL))

    @app.get("/v1/instruments", tags=["market data"], responses=public_errors, dependencies=[Public],
             summary="The instruments (public)")
    def instruments() -> list[InstrumentModel]:
        return [InstrumentModel(**{name: getattr(i, name) for name in InstrumentModel.model_fields})
                for i in gateway.instruments()]

    @app.get("/v1/book/{symbol}", tags=["market data"], responses=public_errors | {503: problem, 504: problem},
             dependencies=[Public], summary="The book's depth (public), from the book server's market data")
    async def book(symbol: SymbolPath, levels: Annotated[int, Query(ge=1, le=1000)] = 10) -> BookModel:
        _known(symbol)
        found = await books.book(symbol, levels, api.request_timeout_s)
        if found is None and (lost_at := books.feed(symbol).lost_at()) is not None:
            raise ApiProblem(503, "Market data lost", f"the connection to the book server of {symbol} was lost at "
                             f"{clock(lost_at)} UTC: its book is served again once the connection is back and the "
                             "book rebuilt", int(RejectReason.BOOK_UNAVAILABLE))
        if found is None:
            raise ApiProblem(504, "No market data", f"the book server's market data for {symbol} did not answer "
                             f"within {api.request_timeout_s:g}s", int(RejectReason.BOOK_UNAVAILABLE))
        return BookModel(**found)

    @app.get("/v1/trades/{symbol}", tags=["market data"], responses=public_errors, dependencies=[Public],
             summary="Recent trades, from the tick store (latest last; public)")
    def trades(symbol: SymbolPath, limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
               start: Annotated[int | None, Query(ge=0, le=MAX_INT, description="ns since the epoch")] = None,
               end: Annotated[int | None, Query(ge=0, le=MAX_INT)] = None) -> list[TradeModel]:
        _known(symbol)
        rows = gateway.tick_query(lambda ticks: ticks.ticks("trade", symbol, start, end).to_pylist())
        return [TradeModel(time=_ns(row["time"]), symbol=row["sym"], price=row["price"], size=row["size"],
                           trade_id=row["trade_id"], side=row["side"]) for row in rows[-limit:]]

    @app.get("/v1/bars/{symbol}", tags=["market data"], responses=public_errors, dependencies=[Public],
             summary="OHLCV bars from the tick store (intervals with trades only; public)")
    def bars(symbol: SymbolPath, interval_s: Annotated[int, Query(ge=1, le=86_400)] = 60,
             limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
             start: Annotated[int | None, Query(ge=0, le=MAX_INT)] = None,
             end: Annotated[int | None, Query(ge=0, le=MAX_INT)] = None) -> list[BarModel]:
        _known(symbol)
        rows = gateway.tick_query(
            lambda ticks: ticks.bars(symbol, interval_s * 1_000_000_000, start, end).to_pylist())
        return [BarModel(time=_ns(row["time"]), open=row["open"], high=row["high"], low=row["low"],
                         close=row["close"], volume=row["volume"], trades=row["trades"]) for row in rows[-limit:]]

    plain_openapi = app.openapi

    def openapi() -> dict:
        """FastAPI's document, plus the signature's three headers as security schemes that every private
        operation (those depending on `authenticated`) requires together; public ones require none."""
        if app.openapi_schema is None:
            schema = plain_openapi()
            schema.setdefault("components", {})["securitySchemes"] = {
                name: {"type": "apiKey", "in": "header", "name": header, "description": description}
                for name, (header, description) in signed_headers.items()}
            for route in app.routes:
                if isinstance(route, APIRoute) and any(d.call is authenticated for d in route.dependant.dependencies):
                    for method in route.methods:
                        schema["paths"][route.path_format][method.lower()]["security"] = [
                            {name: [] for name in signed_headers}]
        return app.openapi_schema

    app.openapi = openapi
    return app


def _ns(value) -> int:
    """Nanoseconds since the epoch of a tick store time (an int, a pandas or datetime timestamp)."""
    if isinstance(value, int):
        return value
    if hasattr(value, "value"):
        return int(value.value)
    return int(value.timestamp() * 1_000_000_000)
