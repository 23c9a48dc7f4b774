"""A fake Telegram Bot API server (aiohttp on 127.0.0.1, an ephemeral port) for tests and the
benchmark: the real PTB stack talks HTTP to it through `base_url`.

It implements what the bot uses: getMe, getUpdates (long polling with `offset`, `limit` and
`timeout`), sendMessage, sendDocument (a multipart upload: the file's bytes are kept in
`documents`), sendChatAction, editMessageReplyMarkup, answerCallbackQuery,
setMyCommands, deleteWebhook, setWebhook, getWebhookInfo. Requests are parsed as PTB sends them:
`application/x-www-form-urlencoded` (or multipart) with every non-string value JSON-encoded, and
also plain JSON bodies and query strings, as other clients send them.

Tests push updates (`push`, or the `say`/`press`/... helpers), then await what the bot did
(`wait_for`, `wait_for_message`), without sleeping: every call notifies a condition. Faults are
injected per method (and optionally per chat): an HTTP error (`fail`: 429 with `retry_after`,
500, 403, ...), a 200 whose body is not JSON (`garble`) or a slow response (`slow`), for the
next N calls; `hold` keeps a method's calls waiting, not carried out, until `release`.

Updates wait in one queue until confirmed, as on Telegram: by getUpdates' `offset` (polling), or
in webhook mode (`route_webhook`: where the webhook URL is served locally) by a 200 answer to
the POST that delivers them. Like Telegram, the fake POSTs a chat's updates one at a time and in
order, and sends an update again (after a short pause) when the POST fails: an error status, a
refused connection, a process killed mid-request, no answer within `webhook_timeout_seconds`.
With several local URLs (replicas behind a load balancer) the POSTs take turns among them, and a
re-sent update goes to the next one (`webhook_posts` records who got which).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.support.fake_telegram import updates
from tests.support.fake_telegram.updates import JSON

DEFAULT_TOKEN = "123456789:AAHfakeTOKENfakeTOKENfakeTOKEN_abc-9"
_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Parameters that are strings on the wire even when they look like JSON ("42", "true", "[1]").
_STRING_PARAMS = frozenset(
    {"text", "caption", "secret_token", "url", "callback_query_id", "action", "parse_mode"}
)


@dataclass(frozen=True)
class ApiCall:
    method: str
    params: JSON
    status: int  # the HTTP status we answered with
    at: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class Upload:
    """A file sent in a multipart request, as the server received it."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class SentDocument:
    """A document the bot sent (sendDocument), its bytes as uploaded."""

    chat_id: int
    filename: str
    data: bytes
    caption: str | None
    message: JSON  # what sendDocument answered


@dataclass
class _Fault:
    status: int
    description: str
    retry_after: int | None
    times: int
    chat_id: int | None = None  # only calls to this chat (None: any call)
    garbage: bool = False  # a 200 whose body is not JSON


# Webhook redelivery: pauses after a failed POST, doubled from the first up to the last.
REDELIVER_FIRST_SECONDS = 0.05
REDELIVER_MAX_SECONDS = 0.5
# A webhook POST not answered within this long counts as failed and is sent again.
WEBHOOK_TIMEOUT_SECONDS = 60.0


class FakeTelegram:
    def __init__(
        self, token: str = DEFAULT_TOKEN, bot_username: str = "tiny_test_bot", bot_id: int = 4242
    ) -> None:
        self.token = token
        self.bot = {
            "id": bot_id,
            "is_bot": True,
            "first_name": "Tiny",
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": True,
            "supports_inline_queries": False,
        }
        self.calls: list[ApiCall] = []
        self.listeners: list[Callable[[ApiCall], None]] = []  # told of every call (benchmarks)
        self.commands: dict[str, list[JSON]] = {}  # scope (JSON text) -> commands
        self.webhook: JSON | None = None
        self.chats: dict[int, JSON] = {}
        self.messages: dict[tuple[int, int], JSON] = {}  # (chat id, message id) -> message
        self.documents: list[SentDocument] = []  # sendDocument's uploads, in order
        self._pending: deque[JSON] = deque()
        self._next_update_id = 1
        self._confirmed = 0  # the highest update id getUpdates' offset acknowledged
        self._message_ids: dict[int, itertools.count[int]] = defaultdict(lambda: itertools.count(1))
        self._callback_ids = itertools.count(1)
        self._faults: dict[str, deque[_Fault]] = defaultdict(deque)
        self._delays: dict[str, deque[float]] = defaultdict(deque)
        self._held: dict[str, asyncio.Event] = {}
        self._webhook_target: str | None = None  # where the webhook URL is served locally
        self._webhook_targets: list[str] = []  # ... by each replica (taking turns)
        self._webhook_turns = itertools.count()
        self._webhook_task: asyncio.Task[None] | None = None
        self._posting: set[int] = set()  # update ids with a webhook POST in flight
        self._chats_of: dict[int, int | None] = {}  # update id -> its chat id, if any
        self._redeliver_at: dict[int, float] = {}  # update id -> when to POST it again
        self._post_failures: dict[int, int] = defaultdict(int)
        self.webhook_statuses: list[int] = []  # what the bot answered each POST (0: no answer)
        self.webhook_posts: list[tuple[int, str, int]] = []  # (update id, target, status)
        self.webhook_timeout_seconds = WEBHOOK_TIMEOUT_SECONDS
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        # handler_cancellation: a long poll the client abandons ends here too, as on Telegram.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server) and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            await asyncio.gather(self._webhook_task, return_exceptions=True)
            self._webhook_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """What CHATBOT_TELEGRAM_BASE_URL points at: PTB appends the token and the method."""
        return f"http://127.0.0.1:{self.port}/bot"

    # ---- faults ---------------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        status: int = 500,
        *,
        times: int = 1,
        retry_after: int | None = None,
        description: str | None = None,
        chat_id: int | None = None,
    ) -> None:
        """Answer the next `times` calls of `method` (to `chat_id` only, if given) with HTTP
        `status` (429: with retry_after)."""
        if status == 429 and retry_after is None:
            retry_after = 1
        text = description or {
            403: "Forbidden: bot was blocked by the user",
            429: f"Too Many Requests: retry after {retry_after}",
            500: "Internal Server Error",
            502: "Bad Gateway",
        }.get(status, f"Error {status}")
        self._faults[method].append(_Fault(status, text, retry_after, times, chat_id))

    def clear_faults(self) -> None:
        """Forget every fault still waiting to be injected (`fail`, `garble`, `slow`)."""
        self._faults.clear()
        self._delays.clear()

    def garble(self, method: str, *, times: int = 1) -> None:
        """Answer the next `times` calls of `method` with a 200 whose body is not JSON (a broken
        proxy); the call is not carried out."""
        self._faults[method].append(_Fault(200, "", None, times, garbage=True))

    def hold(self, method: str) -> None:
        """Keep calls of `method` waiting, not carried out, until `release(method)`; one whose
        client goes away meanwhile (a killed process) is never carried out (status 499)."""
        self._held.setdefault(method, asyncio.Event())

    def release(self, method: str) -> None:
        held = self._held.pop(method, None)
        if held is not None:
            held.set()

    def slow(self, method: str, seconds: float, *, times: int = 1) -> None:
        """Delay the next `times` calls of `method` by `seconds`; one whose client timed out
        meanwhile is dropped (recorded with status 499), not carried out."""
        self._delays[method].extend([seconds] * times)

    # ---- updates in -----------------------------------------------------------------------------

    def push(self, update: JSON) -> JSON:
        """Queue an update for getUpdates, or for the webhook once one is routed (an
        `update_id` is assigned if missing)."""
        self._pending.append(self._register(update))
        self._notify()
        return update

    @property
    def unconfirmed(self) -> list[JSON]:
        """Updates pushed and not yet confirmed (by getUpdates' offset or a 200 to the POST)."""
        return list(self._pending)

    def _register(self, update: JSON) -> JSON:
        update.setdefault("update_id", self._next_update_id)
        self._next_update_id = max(self._next_update_id, update["update_id"]) + 1
        for value in update.values():
            if isinstance(value, dict) and "chat" in value:
                self._remember(value)
        return update

    def next_message_id(self, chat_id: int) -> int:
        """Message ids count up per chat, shared by people's and the bot's messages."""
        return next(self._message_ids[chat_id])

    def new_message(self, chat: JSON, sender: JSON | None, **kwargs: Any) -> JSON:
        return updates.message(self.next_message_id(chat["id"]), chat, sender, **kwargs)

    def say(
        self, sender: JSON, text: str, *, chat: JSON | None = None, reply_to: JSON | None = None
    ) -> JSON:
        """`sender` writes `text` (in a private chat with the bot unless `chat` is given)."""
        chat = chat or updates.private_chat(sender)
        message = self.new_message(chat, sender, text=text, reply_to=reply_to)
        return self.push({"message": message})

    def send_content(
        self, sender: JSON, kind: str, *, chat: JSON | None = None, reply_to: JSON | None = None
    ) -> JSON:
        """A sticker, photo, voice message, document or location (see `updates.NOT_TEXT`)."""
        chat = chat or updates.private_chat(sender)
        content = updates.NOT_TEXT[kind]
        return self.push({"message": self.new_message(chat, sender, reply_to=reply_to, **content)})

    def press(self, sender: JSON, on_message: JSON, data: str) -> JSON:
        """`sender` presses the inline button with `data` under the bot's message `on_message`."""
        query_id = f"cbq-{next(self._callback_ids)}"
        return self.push(
            {"callback_query": updates.callback_query(query_id, sender, on_message, data)}
        )

    # ---- what the bot did -----------------------------------------------------------------------

    def calls_to(self, method: str, *, ok: bool | None = True) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method and (ok is None or c.ok == ok)]

    def sent(self, chat_id: int | None = None) -> list[JSON]:
        """The messages the bot sent successfully (as stored here, with `message_id`)."""
        return [
            m
            for (cid, _), m in self.messages.items()
            if m.get("from", {}).get("id") == self.bot["id"] and (chat_id is None or cid == chat_id)
        ]

    async def wait_for(
        self,
        method: str,
        count: int = 1,
        *,
        where: Callable[[ApiCall], bool] = lambda call: True,
        ok: bool | None = True,
        timeout: float = 10.0,
    ) -> list[ApiCall]:
        """The first `count` calls of `method` matching `where`, once there are that many."""

        def matching() -> list[ApiCall]:
            return [c for c in self.calls_to(method, ok=ok) if where(c)]

        await self._wait(lambda: len(matching()) >= count, timeout, f"{count} x {method}")
        return matching()[:count]

    async def wait_for_message(
        self, chat_id: int, count: int = 1, *, timeout: float = 10.0
    ) -> list[JSON]:
        """The first `count` messages the bot sent to `chat_id`, once there are that many."""
        await self._wait(
            lambda: len(self.sent(chat_id)) >= count, timeout, f"{count} message(s) to {chat_id}"
        )
        return self.sent(chat_id)[:count]

    async def wait_until_fetched(
        self, update: JSON | None = None, *, timeout: float = 10.0
    ) -> None:
        """Until `update` (default: every update pushed so far) is confirmed: by getUpdates'
        offset, or by a 200 to its webhook POST. The bot confirms an update once it stored it."""
        target = update["update_id"] if update is not None else self._next_update_id - 1

        def confirmed() -> bool:
            return all(pending["update_id"] > target for pending in self._pending)

        await self._wait(confirmed, timeout, f"updates up to {target} confirmed")

    def set_webhook(self, url: str, secret_token: str | None = None) -> None:
        """The webhook as `setWebhook` sets it, set by the test: replicas that leave the call to a
        one-time setup step do not make it when they start."""
        self.webhook = {"url": url, **({"secret_token": secret_token} if secret_token else {})}
        self._notify()

    def route_webhook(self, local_url: str, *more: str) -> None:
        """Deliver pushed updates to the webhook, which is served at `local_url` (the URL given
        in setWebhook is a public one), as Telegram does: see the module docstring. With `more`
        URLs, POSTs take turns among them, as behind a load balancer in front of replicas."""
        self._webhook_target = local_url
        self._webhook_targets = [local_url, *more]
        if self._webhook_task is None:
            self._webhook_task = asyncio.get_running_loop().create_task(self._deliver_webhooks())
        self._notify()

    async def _deliver_webhooks(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                ready: list[JSON] = []

                def found() -> bool:
                    nonlocal ready
                    ready = self._ready_for_webhook()
                    return bool(ready)

                async with self._changed:
                    await self._changed.wait_for(found)
                for update in ready:
                    self._posting.add(update["update_id"])
                    asyncio.get_running_loop().create_task(self._post_update(session, update))

    def _ready_for_webhook(self) -> list[JSON]:
        """The first unconfirmed update of each chat, unless it is being POSTed or waits for its
        next try; updates that belong to no chat all at once."""
        if self.webhook is None or self._webhook_target is None:
            return []
        now = time.monotonic()
        ready: list[JSON] = []
        chats_seen: set[int] = set()
        for update in self._pending:
            # Looked up once per update: this runs on every change, over every pending update.
            if update["update_id"] not in self._chats_of:
                self._chats_of[update["update_id"]] = _chat_of(update)
            chat = self._chats_of[update["update_id"]]
            if chat is not None:
                if chat in chats_seen:
                    continue
                chats_seen.add(chat)
            update_id = update["update_id"]
            if update_id in self._posting or self._redeliver_at.get(update_id, 0.0) > now:
                continue
            ready.append(update)
        return ready

    async def _post_update(self, session: aiohttp.ClientSession, update: JSON) -> None:
        assert self.webhook is not None and self._webhook_target is not None
        update_id = update["update_id"]
        headers = {"Content-Type": "application/json"}
        if self.webhook.get("secret_token"):
            headers[_SECRET_HEADER] = self.webhook["secret_token"]
        targets = self._webhook_targets
        target = targets[next(self._webhook_turns) % len(targets)]
        timeout = aiohttp.ClientTimeout(total=self.webhook_timeout_seconds)
        try:
            async with session.post(
                target, data=json.dumps(update), headers=headers, timeout=timeout
            ) as response:
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError):
            status = 0
        self.webhook_statuses.append(status)
        self.webhook_posts.append((update_id, target, status))
        self._posting.discard(update_id)
        if status == 200:
            self._pending = deque(u for u in self._pending if u["update_id"] != update_id)
            self._redeliver_at.pop(update_id, None)
        else:
            failures = self._post_failures[update_id]
            self._post_failures[update_id] += 1
            pause = min(REDELIVER_FIRST_SECONDS * 2**failures, REDELIVER_MAX_SECONDS)
            self._redeliver_at[update_id] = time.monotonic() + pause
            asyncio.get_running_loop().call_later(pause, self._notify)
        self._notify()

    async def deliver_to_webhook(
        self, update: JSON, *, url: str | None = None, secret: str | None = None
    ) -> int:
        """POST `update` to the URL given in setWebhook (or `url`: where it is served locally)
        with the secret token given there (or `secret`); the HTTP status the bot answered."""
        assert self.webhook is not None, "no webhook set"
        headers = {"Content-Type": "application/json"}
        token = secret if secret is not None else self.webhook.get("secret_token")
        if token is not None:
            headers[_SECRET_HEADER] = token
        body = json.dumps(self._register(update))
        async with (
            aiohttp.ClientSession() as session,
            session.post(url or self.webhook["url"], data=body, headers=headers) as response,
        ):
            return response.status

    async def _wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(done)
        except TimeoutError:
            raise AssertionError(f"fake Telegram: no {what} within {timeout}s") from None

    def _notify(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.get_running_loop().create_task(notify())

    def _remember(self, message: JSON) -> None:
        """Chats the bot may write to; messages it may edit or that may be replied to."""
        self.chats[message["chat"]["id"]] = message["chat"]
        if "message_id" in message:
            self.messages[(message["chat"]["id"], message["message_id"])] = message

    # ---- HTTP -----------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        params = await _parameters(request)
        held = self._held.get(method)
        if held is not None:
            try:
                await held.wait()
            except asyncio.CancelledError:  # the client went away: never carried out
                self.calls.append(ApiCall(method, params, 499))
                self._notify()
                raise
        delays = self._delays.get(method)
        if delays:
            try:
                await asyncio.sleep(delays.popleft())
            except asyncio.CancelledError:
                # The client gave up waiting (aiohttp cancels the handler): like a server slow to
                # *start* on it, the call is not carried out. 499: nginx's "client closed request".
                self.calls.append(ApiCall(method, params, 499))
                self._notify()
                raise
        response = self._injected_fault(method, params) or await self._dispatch(method, params)
        call = ApiCall(method, params, response.status)
        self.calls.append(call)
        for listener in self.listeners:
            listener(call)
        self._notify()
        return response

    def _injected_fault(self, method: str, params: JSON) -> web.Response | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        chat_id = _int(params.get("chat_id"))
        fault = next((f for f in queue if f.chat_id is None or f.chat_id == chat_id), None)
        if fault is None:
            return None
        fault.times -= 1
        if fault.times <= 0:
            queue.remove(fault)
        if fault.garbage:
            return web.Response(status=200, text="<html>502 Bad Gateway</html>")
        parameters = {"retry_after": fault.retry_after} if fault.retry_after is not None else None
        return _error(fault.status, fault.description, parameters)

    async def _dispatch(self, method: str, params: JSON) -> web.Response:
        handler = getattr(self, f"_api_{method.lower()}", None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        return await handler(params)

    # ---- the Bot API methods --------------------------------------------------------------------

    async def _api_getme(self, params: JSON) -> web.Response:
        return _ok(self.bot)

    async def _api_getupdates(self, params: JSON) -> web.Response:
        if self.webhook is not None:
            return _error(409, "Conflict: can't use getUpdates method while webhook is active")
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        timeout = float(params.get("timeout") or 0)
        if offset:
            self._confirmed = max(self._confirmed, offset - 1)
            while self._pending and self._pending[0]["update_id"] < offset:
                self._pending.popleft()
            self._notify()
        if not self._pending and timeout > 0:
            try:
                async with asyncio.timeout(timeout), self._changed:
                    await self._changed.wait_for(lambda: bool(self._pending))
            except TimeoutError:
                pass
        return _ok(list(itertools.islice(self._pending, limit)))

    async def _api_sendmessage(self, params: JSON) -> web.Response:
        chat_id = _int(params.get("chat_id"))
        chat = None if chat_id is None else self.chats.get(chat_id)
        text = params.get("text")
        if chat is None:
            return _error(400, "Bad Request: chat not found")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > 4096:
            return _error(400, "Bad Request: message is too long")
        sent: JSON = {
            "message_id": self.next_message_id(chat["id"]),
            "date": int(time.time()),
            "chat": chat,
            "from": {k: self.bot[k] for k in ("id", "is_bot", "first_name", "username")},
            "text": text,
        }
        if params.get("reply_markup"):
            sent["reply_markup"] = params["reply_markup"]
        reply = params.get("reply_parameters")
        if isinstance(reply, dict) and (chat["id"], reply.get("message_id")) in self.messages:
            sent["reply_to_message"] = self.messages[(chat["id"], reply["message_id"])]
        self._remember(sent)
        return _ok(sent)

    async def _api_senddocument(self, params: JSON) -> web.Response:
        chat_id = _int(params.get("chat_id"))
        chat = None if chat_id is None else self.chats.get(chat_id)
        document = params.get("document")
        if chat is None:
            return _error(400, "Bad Request: chat not found")
        if not isinstance(document, Upload):  # a file_id or a URL: no file of ours to keep
            return _error(400, "Bad Request: wrong file identifier/HTTP URL specified")
        if not document.data:
            return _error(400, "Bad Request: file must be non-empty")
        caption = params.get("caption")
        sent: JSON = {
            "message_id": self.next_message_id(chat["id"]),
            "date": int(time.time()),
            "chat": chat,
            "from": {k: self.bot[k] for k in ("id", "is_bot", "first_name", "username")},
            "document": {
                "file_id": f"doc-{len(self.documents) + 1}",
                "file_unique_id": f"udoc-{len(self.documents) + 1}",
                "file_name": document.filename,
                "mime_type": document.content_type,
                "file_size": len(document.data),
            },
        }
        if isinstance(caption, str) and caption:
            sent["caption"] = caption
        self._remember(sent)
        self.documents.append(
            SentDocument(chat["id"], document.filename, document.data, caption, sent)
        )
        return _ok(sent)

    async def _api_sendchataction(self, params: JSON) -> web.Response:
        if _int(params.get("chat_id")) not in self.chats:
            return _error(400, "Bad Request: chat not found")
        return _ok(True)

    async def _api_editmessagereplymarkup(self, params: JSON) -> web.Response:
        chat_id, message_id = _int(params.get("chat_id")), _int(params.get("message_id"))
        message = None
        if chat_id is not None and message_id is not None:
            message = self.messages.get((chat_id, message_id))
        if message is None:
            return _error(400, "Bad Request: message to edit not found")
        markup = params.get("reply_markup") or None
        if markup == message.get("reply_markup"):
            return _error(400, "Bad Request: message is not modified")
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        return _ok(message)

    async def _api_answercallbackquery(self, params: JSON) -> web.Response:
        if not params.get("callback_query_id"):
            return _error(400, "Bad Request: query is too old or query ID is invalid")
        return _ok(True)

    async def _api_setmycommands(self, params: JSON) -> web.Response:
        scope = params.get("scope") or {"type": "default"}
        if scope.get("type") == "chat" and _int(scope.get("chat_id")) not in self.chats:
            return _error(400, "Bad Request: chat not found")
        self.commands[json.dumps(scope, sort_keys=True)] = list(params.get("commands") or [])
        return _ok(True)

    async def _api_deletewebhook(self, params: JSON) -> web.Response:
        self.webhook = None
        if params.get("drop_pending_updates"):
            self._pending.clear()
        return _ok(True)

    async def _api_setwebhook(self, params: JSON) -> web.Response:
        if not params.get("url"):
            return await self._api_deletewebhook(params)
        self.webhook = dict(params)
        return _ok(True)

    async def _api_getwebhookinfo(self, params: JSON) -> web.Response:
        url = self.webhook["url"] if self.webhook else ""
        return _ok({"url": url, "has_custom_certificate": False, "pending_update_count": 0})


async def _parameters(request: web.Request) -> JSON:
    """The call's parameters, typed: a JSON body as it is; form fields and query strings with each
    value JSON-decoded (PTB JSON-encodes every non-string value) unless it is a string field."""
    params: JSON = {key: _decode(key, value) for key, value in request.query.items()}
    if request.content_type == "application/json":
        body = await request.json()
        if isinstance(body, dict):
            params.update(body)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        for key, value in form.items():
            params[key] = _decode(key, value) if isinstance(value, str) else _upload(value)
    return params


def _upload(field: Any) -> Upload:
    """A multipart file field (aiohttp's `FileField`), read whole."""
    return Upload(field.filename, field.content_type, field.file.read())


def _decode(key: str, value: str) -> Any:
    if key in _STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _chat_of(update: JSON) -> int | None:
    """The chat an update belongs to (its message's, or its button's message's)."""
    for value in update.values():
        if isinstance(value, dict):
            chat = value.get("chat") or (value.get("message") or {}).get("chat")
            if isinstance(chat, dict) and isinstance(chat.get("id"), int):
                return int(chat["id"])
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(status: int, description: str, parameters: JSON | None = None) -> web.Response:
    body: JSON = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)
