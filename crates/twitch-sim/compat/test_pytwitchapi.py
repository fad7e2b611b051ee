"""pyTwitchAPI against the Twitch simulator, through the library's public options only.

Usage: test_pytwitchapi.py <path to the twitch-sim binary>

Starts the simulator on a free port and drives it the way an application
written for the real Twitch would: an app token, Get Users, a user token from
the authorization-code flow, an EventSub WebSocket with a plain chat
subscription (typed callback, 409 on a duplicate, a reconnect, a token
refresh), Get Streams, clips, stream markers, and an EventSub webhook
receiver (challenge, signed deliveries, a bad signature refused). The only
things done outside the library are what a person or Twitch itself would do:
typing in chat, going live, approving the consent page, advancing the
simulator's clock, and the tunnel that stands in for ngrok in front of the
webhook receiver. Exits non-zero on the first failed check.
"""

import asyncio
import json
import logging
import socket
import subprocess
import sys
import time
import urllib.request

import aiohttp

from twitchAPI.eventsub.webhook import EventSubWebhook
from twitchAPI.eventsub.websocket import EventSubWebsocket
from twitchAPI.helper import first
from twitchAPI.oauth import UserAuthenticator
from twitchAPI.twitch import Twitch
from twitchAPI.type import AuthScope, AuthType, EventSubSubscriptionConflict

CLIENT_ID = "chatpulsesimclient0000000000000"
CLIENT_SECRET = "chatpulsesimsecret000000000000"
SCOPES = [AuthScope.USER_READ_CHAT, AuthScope.CHANNEL_MANAGE_BROADCAST, AuthScope.USER_READ_BROADCAST,
          AuthScope.CLIPS_EDIT]
HOOK_ORIGIN = "https://compat-hooks.example"
WAIT = 10.0

calls: list[tuple[str, str]] = []


def record(call: str, result: str) -> None:
    calls.append((call, result))
    print(f"  ok  {call}: {result}", flush=True)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_simulator(binary: str, redirect_uri: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [binary, "--port", "0", "--redirect-uri", redirect_uri],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    prefix = "Twitch simulator on "
    if not line.startswith(prefix):
        process.kill()
        raise AssertionError(f"the simulator did not start: {line!r}")
    base = line[len(prefix):].split(";")[0].strip()
    return process, base


class Sim:
    """The simulator's own controls (/sim/*): what people and Twitch do."""

    def __init__(self, base: str):
        self.base = base

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request) as response:
            text = response.read().decode()
        return json.loads(text) if text else {}

    def post(self, path: str, body: dict | None = None) -> dict:
        return self.call("POST", path, body or {})

    def state(self) -> dict:
        return self.call("GET", "/sim/state")


async def wait_for(event: asyncio.Event, what: str) -> None:
    try:
        await asyncio.wait_for(event.wait(), WAIT)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def eventually(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def user_token(twitch: Twitch, sim_base: str, auth_port: int, login: str) -> tuple[str, str]:
    """The library's own authorization-code flow; the "person" approving the
    consent page is the simulator's sim_auto_approve shortcut."""
    authenticator = UserAuthenticator(
        twitch, SCOPES, url=f"http://localhost:{auth_port}", host="127.0.0.1", port=auth_port,
        auth_base_url=f"{sim_base}/oauth2/",
    )

    async def approve(url: str) -> None:
        # Follows Twitch's redirect to the library's own callback server.
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}&sim_auto_approve={login}") as response:
                check(response.status == 200, f"consent redirect ended in {response.status}")

    token, refresh = await authenticator.authenticate(use_browser=False, auth_url_callback=approve)
    return token, refresh


async def stop_webhook(webhook: EventSubWebhook) -> None:
    """EventSubWebhook.stop() shuts its aiohttp runner down from the caller's
    event loop, but the runner lives on the listener thread's own loop: with
    aiohttp 3.14 that raises "attached to a different loop" (a library-side
    issue, whatever it listens to). The listener thread has ended by then."""
    webhook.unsubscribe_on_stop = False
    try:
        await webhook.stop()
    except RuntimeError as error:
        if "different loop" not in str(error):
            raise


async def run(binary: str) -> None:
    auth_port = free_port()
    process, base = start_simulator(binary, f"http://localhost:{auth_port}")
    sim = Sim(base)
    loop = asyncio.get_running_loop()
    twitch = None
    websocket = None
    webhook = None
    try:
        print(f"pyTwitchAPI against the simulator at {base}", flush=True)

        # App token (client credentials) and Get Users.
        twitch = await Twitch(CLIENT_ID, CLIENT_SECRET, base_url=f"{base}/helix/", auth_base_url=f"{base}/oauth2/")
        check(twitch.get_app_token() is not None, "no app token")
        record("Twitch(app_id, app_secret, base_url, auth_base_url)", "app token (client credentials)")
        users = [u async for u in twitch.get_users(logins=["demo_streamer", "chatpulse_bot"])]
        check(sorted(u.login for u in users) == ["chatpulse_bot", "demo_streamer"], f"users: {users}")
        streamer = next(u for u in users if u.login == "demo_streamer")
        record("get_users(logins=[...]) (app token)", f"{len(users)} users, ids are strings: {streamer.id!r}")

        # A user token from the authorization-code flow, as the streamer.
        token, refresh = await user_token(twitch, base, auth_port, "demo_streamer")
        await twitch.set_user_authentication(token, SCOPES, refresh)
        record("UserAuthenticator(..., auth_base_url).authenticate(use_browser=False)", "user token + refresh token")
        record("set_user_authentication(token, scopes, refresh)", "validated (login, user_id, client_id, scopes)")
        me = await first(twitch.get_users())
        check(me is not None and me.id == streamer.id, f"me: {me}")
        record("get_users() (user token)", f"the token's user {me.login}")

        # EventSub over a WebSocket: a plain chat subscription with a typed callback.
        messages: list = []
        got_message = asyncio.Event()

        # Callbacks run on the listener's own thread and loop (the default);
        # they wake this loop thread-safely.
        async def on_chat(event) -> None:
            messages.append(event)
            loop.call_soon_threadsafe(got_message.set)

        websocket = EventSubWebsocket(twitch, connection_url=f"{base.replace('http://', 'ws://')}/ws")
        websocket.start()
        first_session = websocket.active_session.id
        record("EventSubWebsocket(twitch, connection_url=...).start()", f"welcomed, session {first_session[:12]}…")
        sub_id = await websocket.listen_channel_chat_message(streamer.id, me.id, on_chat)
        record("listen_channel_chat_message(broadcaster, user, callback)", "202, websocket transport")
        try:
            await websocket.listen_channel_chat_message(streamer.id, me.id, on_chat)
            raise AssertionError("a duplicate subscription was accepted")
        except EventSubSubscriptionConflict:
            record("listen_channel_chat_message(...) again", "EventSubSubscriptionConflict (409)")

        sim.post("/sim/chat", {"broadcaster_user_id": streamer.id, "chatter_login": "mossy_owl",
                               "text": "Cheer100 yes @demo_streamer LUL", "color": "#1E90FF",
                               "badges": [{"set_id": "subscriber", "id": "3012", "info": "14"}]})
        await wait_for(got_message, "the chat notification")
        chat = messages[0]
        check(chat.metadata.message_type == "notification", f"metadata: {chat.metadata.to_dict()}")
        check(chat.subscription.id == sub_id, "the notification names the subscription")
        data = chat.event
        check(data.chatter_user_login == "mossy_owl", f"chatter: {data.chatter_user_login}")
        check(data.message.text == "Cheer100 yes @demo_streamer LUL", f"text: {data.message.text}")
        kinds = [f.type for f in data.message.fragments]
        check(kinds == ["cheermote", "text", "mention", "text", "emote"], f"fragments: {kinds}")
        check(data.cheer is not None and data.cheer.bits == 100, "cheer")
        check(data.badges[0].set_id == "subscriber" and data.badges[0].info == "14", "badges")
        record("POST /sim/chat → on_chat(ChannelChatMessageEvent)",
               "fragments cheermote/text/mention/text/emote, cheer 100, badges, colour")

        subs = await twitch.get_eventsub_subscriptions(target_token=AuthType.USER)
        listed = [s async for s in subs]
        check([s.id for s in listed] == [sub_id], f"listed: {[s.to_dict() for s in listed]}")
        check(listed[0].transport["method"] == "websocket", "transport")
        check(subs.max_total_cost == 10, f"max_total_cost {subs.max_total_cost}")
        record("get_eventsub_subscriptions(target_token=USER)", "1 subscription, max_total_cost 10")

        # Twitch asks the client to reconnect; the subscription moves along.
        sim.post(f"/sim/websocket/{first_session}/reconnect")
        await eventually(lambda: websocket.active_session.id != first_session, "the reconnect")
        got_message.clear()
        sim.post("/sim/chat", {"broadcaster_user_id": streamer.id, "chatter_login": "mossy_owl", "text": "no"})
        await wait_for(got_message, "chat after the reconnect")
        check(messages[-1].event.message.text == "no", "the second message")
        check(messages[-1].subscription.transport["session_id"] == websocket.active_session.id, "new session")
        record("session_reconnect (POST /sim/websocket/{id}/reconnect)", "library switched; chat keeps flowing")

        # Hours later the user token has expired: the library refreshes it on the 401.
        sim.post("/sim/clock", {"advance_seconds": 5 * 3600})
        refreshed = await first(twitch.get_users())
        check(refreshed is not None and refreshed.id == me.id, "get_users after the refresh")
        check(twitch.get_user_auth_token() != token, "the token was refreshed")
        record("get_users() after the token expired (clock +5 h)", "401 → refresh_token grant → retried")

        # Live: Get Streams, a clip, a stream marker.
        live = sim.post(f"/sim/streams/{streamer.id}/online")
        streams = [s async for s in twitch.get_streams(user_id=[streamer.id])]
        check(len(streams) == 1 and streams[0].id == live["stream_id"], f"streams: {streams}")
        record("get_streams(user_id=[...])", f"live, stream id {streams[0].id}")
        clip = await twitch.create_clip(streamer.id)
        check(clip.edit_url.endswith(f"/clip/{clip.id}"), f"clip: {clip.to_dict()}")
        check([c async for c in twitch.get_clips(clip_id=[clip.id])] == [], "visible before processing")
        sim.post("/sim/clock", {"advance_seconds": 5})
        clips = [c async for c in twitch.get_clips(clip_id=[clip.id])]
        check(len(clips) == 1 and clips[0].broadcaster_id == streamer.id, f"clips: {clips}")
        record("create_clip(broadcaster_id) + get_clips(clip_id=[...])", "202, visible once processed")
        sim.post("/sim/clock", {"advance_seconds": 120})
        marker = await twitch.create_stream_marker(streamer.id, "chat swung to YES")
        check(marker.position_seconds >= 125 and marker.description == "chat swung to YES", f"{marker.to_dict()}")
        groups = [g async for g in twitch.get_stream_markers(streamer.id, None)]
        markers = groups[0].videos[0].markers
        check(markers[0].id == marker.id and "twitch.tv/videos/" in markers[0].URL, f"{groups[0].to_dict()}")
        record("create_stream_marker(user_id, description) + get_stream_markers(user_id, None)",
               f"position {marker.position_seconds} s, URL {markers[0].URL}")

        # EventSub over a webhook: the library's own receiver behind a tunnel.
        hook_port = free_port()
        sim.post("/sim/tunnels", {"public_url": HOOK_ORIGIN, "local_url": f"http://127.0.0.1:{hook_port}"})
        online_events: list = []
        offline_events: list = []
        got_online, got_offline = asyncio.Event(), asyncio.Event()

        async def on_online(event) -> None:
            online_events.append(event)
            loop.call_soon_threadsafe(got_online.set)

        async def on_offline(event) -> None:
            offline_events.append(event)
            loop.call_soon_threadsafe(got_offline.set)

        webhook = EventSubWebhook(HOOK_ORIGIN, hook_port, twitch, host_binding="127.0.0.1")
        webhook.start()
        online_id = await webhook.listen_stream_online(streamer.id, on_online)
        record("EventSubWebhook(callback_url, port, twitch).listen_stream_online(...)",
               "challenge verified by the library (HMAC), subscription enabled")
        try:
            await webhook.listen_stream_online(streamer.id, on_online)
            raise AssertionError("a duplicate webhook subscription was accepted")
        except EventSubSubscriptionConflict:
            record("listen_stream_online(...) again", "EventSubSubscriptionConflict (409)")
        await webhook.listen_stream_offline(streamer.id, on_offline)

        # Going offline and live again: one delivery with a bad first signature.
        sim.post("/sim/delivery-faults", {"fault": "bad_signature"})
        sim.post(f"/sim/streams/{streamer.id}/offline")
        await wait_for(got_offline, "stream.offline through the webhook")
        again = sim.post(f"/sim/streams/{streamer.id}/online")
        await wait_for(got_online, "stream.online through the webhook")
        event = online_events[0].event
        check(event.id == again["stream_id"] and event.type == "live", f"{online_events[0].to_dict()}")
        check(online_events[0].subscription.id == online_id, "the online subscription")
        check(len(offline_events) == 1, f"offline delivered {len(offline_events)} times")
        log = [d for d in sim.state()["deliveries"] if d["subscription_type"] == "stream.offline"
               and d["message_type"] == "notification"]
        statuses = [d["status"] for d in log]
        check(statuses == [403, 200], f"offline attempts: {statuses}")
        record("webhook notifications (POST /sim/streams/{id}/offline|online)",
               "typed StreamOnlineEvent/StreamOfflineEvent; a bad signature got 403, the retry 200")

        await webhook.unsubscribe_all_known()
        left = [s async for s in await twitch.get_eventsub_subscriptions()]
        check(left == [], f"webhook subscriptions left: {[s.to_dict() for s in left]}")
        record("EventSubWebhook.unsubscribe_all_known() (app token)", "deleted")
        await stop_webhook(webhook)
        webhook = None
        await websocket.unsubscribe_all()
        left = [s async for s in await twitch.get_eventsub_subscriptions(target_token=AuthType.USER)]
        check(left == [], "websocket subscriptions left")
        record("EventSubWebsocket.unsubscribe_all() (user token)", "deleted")
        await websocket.stop()
        websocket = None
        print(f"pyTwitchAPI compatibility: {len(calls)} checks passed", flush=True)
    finally:
        if webhook is not None:
            await stop_webhook(webhook)
        if websocket is not None:
            await websocket.stop()
        if twitch is not None:
            await twitch.close()
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="  log %(name)s: %(message)s")
    started = time.monotonic()
    try:
        asyncio.run(run(sys.argv[1]))
    except Exception as error:  # any failed check or library error fails the run
        print(f"FAILED: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        return 1
    print(f"({time.monotonic() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
