#!/usr/bin/env python3
"""Writes the fuzz seed corpus from the Twitch simulator's own payloads.

Starts the simulator binary (argument 1: its path), subscribes a local
receiver by webhook to the types ChatPulse uses, makes the simulator send
chat (plain, emote, cheer, mention), stream online/offline, a revocation and
an authorization revoke, and opens its EventSub WebSocket for the welcome
and keepalive frames. Every captured webhook delivery becomes a `webhook`
seed (timestamp and signature replaced by the target's placeholders `NOW`
and `sha256=SIGN`) and, wrapped in the WebSocket envelope, an `eventsub_ws`
seed. Standard library only. Usage (what `make fuzz-seeds` runs):

    fuzz/seeds/capture.py target/debug/twitch-sim fuzz/seeds
"""
import base64
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

SIM, OUT = sys.argv[1], sys.argv[2]
captured = []  # (headers: list of (name, value)), body bytes
lock = threading.Lock()


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        kind = self.headers.get("Twitch-Eventsub-Message-Type", "")
        with lock:
            captured.append(([(k, v) for k, v in self.headers.items()], body))
        if kind == "webhook_callback_verification":
            challenge = json.loads(body)["challenge"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(challenge)))
            self.end_headers()
            self.wfile.write(challenge)
        else:
            self.send_response(204)
            self.end_headers()

    def log_message(self, *args):
        pass


def call(base, method, path, body=None, token=None, form=None):
    data, headers = None, {}
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if token:
        headers["Authorization"] = f"Bearer {token}"
        headers["Client-Id"] = CLIENT_ID
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read()
        return json.loads(text) if text else None


def ws_frames(port, count, within):
    """The first `count` text frames of the simulator's EventSub WebSocket."""
    s = socket.create_connection(("127.0.0.1", port), timeout=within)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws?keepalive_timeout_seconds=10 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    buf = buf.split(b"\r\n\r\n", 1)[1]
    frames = []

    def need(n):
        nonlocal buf
        while len(buf) < n:
            chunk = s.recv(65536)
            if not chunk:
                raise EOFError
            buf += chunk

    while len(frames) < count:
        need(2)
        opcode, length = buf[0] & 0x0F, buf[1] & 0x7F
        at = 2
        if length == 126:
            need(4)
            length, at = int.from_bytes(buf[2:4], "big"), 4
        elif length == 127:
            need(10)
            length, at = int.from_bytes(buf[2:10], "big"), 10
        need(at + length)
        payload, buf = buf[at:at + length], buf[at + length:]
        if opcode == 1:
            frames.append(payload.decode())
    s.close()
    return frames


sim = subprocess.Popen([SIM, "--port", "0"], stdout=subprocess.PIPE, text=True)
try:
    banner = ""
    while "chat page" not in banner:
        line = sim.stdout.readline()
        if not line:
            sys.exit("the simulator did not start")
        banner += line
    BASE = re.search(r"http://localhost:(\d+)", banner).group(0)
    PORT = int(BASE.rsplit(":", 1)[1])
    CLIENT_ID = re.search(r"TWITCH_CLIENT_ID=(\S+)", banner).group(1)
    SECRET = re.search(r"TWITCH_CLIENT_SECRET=(\S+)", banner).group(1)
    BOT = re.search(r"BOT_USER_ID=(\d+)", banner).group(1)
    STREAMER = re.search(r"channel: \S+ (\d+)", banner).group(1)

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    callback = f"http://127.0.0.1:{receiver.server_address[1]}/webhooks/eventsub"

    token = call(BASE, "POST", "/oauth2/token",
                 form={"client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "client_credentials"})["access_token"]
    transport = {"method": "webhook", "callback": callback, "secret": "fuzz-seed-secret-0123456789"}
    subs = {}
    for kind, condition in [
        ("channel.chat.message", {"broadcaster_user_id": STREAMER, "user_id": BOT}),
        ("stream.online", {"broadcaster_user_id": STREAMER}),
        ("stream.offline", {"broadcaster_user_id": STREAMER}),
        ("user.authorization.revoke", {"client_id": CLIENT_ID}),
    ]:
        made = call(BASE, "POST", "/helix/eventsub/subscriptions", token=token,
                    body={"type": kind, "version": "1", "condition": condition, "transport": transport})
        subs[kind] = made["data"][0]["id"]

    def wait_for(n, within=10.0):
        end = time.time() + within
        while time.time() < end:
            with lock:
                if len(captured) >= n:
                    return
            time.sleep(0.05)
        sys.exit(f"only {len(captured)} of {n} deliveries arrived")

    expected = len(subs)  # the challenges
    wait_for(expected)
    for text in ["yes", "no no NO", "Cheer100 YES", "Kappa yes LUL", "@demo_streamer yes", "ｙｅｓ 🎉"]:
        call(BASE, "POST", "/sim/chat", body={"broadcaster_user_id": STREAMER, "chatter_login": "seed_viewer", "text": text})
        expected += 1
    call(BASE, "POST", f"/sim/streams/{STREAMER}/online")
    call(BASE, "POST", f"/sim/streams/{STREAMER}/offline")
    expected += 2
    wait_for(expected)
    call(BASE, "POST", f"/sim/subscriptions/{subs['channel.chat.message']}/revoke", body={"status": "version_removed"})
    expected += 1
    wait_for(expected)
    viewer = call(BASE, "POST", "/sim/users", body={"login": "seed_leaver"})
    call(BASE, "POST", "/sim/grants", body={"user_id": viewer["id"], "scopes": ["user:read:chat"]})
    call(BASE, "POST", f"/sim/users/{viewer['id']}/disconnect")
    expected += 1
    wait_for(expected)
    frames = ws_frames(PORT, 2, 30)
finally:
    sim.terminate()
    sim.wait()

for target in ("webhook", "eventsub_ws"):
    os.makedirs(os.path.join(OUT, target), exist_ok=True)
for n, (headers, body) in enumerate(captured):
    lines = []
    for name, value in headers:
        if name.lower() == "twitch-eventsub-message-timestamp":
            value = "NOW"
        elif name.lower() == "twitch-eventsub-message-signature":
            value = "sha256=SIGN"
        lines.append(f"{name}: {value}")
    with open(os.path.join(OUT, "webhook", f"sim-{n:02}"), "wb") as f:
        f.write("\n".join(lines).encode() + b"\n\n" + body)
    message_type = dict((k.lower(), v) for k, v in headers)["twitch-eventsub-message-type"]
    if message_type in ("notification", "revocation"):
        meta = {k.lower(): v for k, v in headers}
        envelope = (f'{{"metadata":{{"message_id":{json.dumps(meta["twitch-eventsub-message-id"])},'
                    f'"message_type":"{message_type}","message_timestamp":"2026-03-14T19:20:31.055381920Z",'
                    f'"subscription_type":{json.dumps(meta.get("twitch-eventsub-subscription-type"))},'
                    f'"subscription_version":"1"}},"payload":').encode() + body + b"}"
        with open(os.path.join(OUT, "eventsub_ws", f"sim-{n:02}"), "wb") as f:
            f.write(envelope)
for n, frame in enumerate(frames):
    with open(os.path.join(OUT, "eventsub_ws", f"sim-ws-{n:02}"), "w") as f:
        f.write(frame)
print(f"{len(captured)} webhook deliveries and {len(frames)} WebSocket frames written under {OUT}")
