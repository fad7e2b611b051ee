#!/usr/bin/env bash
# Sends one signed EventSub `channel.chat.message` notification to a running
# ChatPulse, exactly as Twitch would deliver it through the conduit.
#
#   scripts/send-chat.sh <broadcaster_user_id> <text> [chatter_user_id]
#
# Environment: CHATPULSE_URL (default http://localhost:8080) and
# WEBHOOK_SECRET (default: the development secret).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 <broadcaster_user_id> <text> [chatter_user_id]" >&2
  exit 64
fi
broadcaster=$1
text=$2
chatter=${3:-$((RANDOM * 32768 + RANDOM))}
url=${CHATPULSE_URL:-http://localhost:8080}
secret=${WEBHOOK_SECRET:-chatpulse-dev-webhook-secret}
id=$(cat /proc/sys/kernel/random/uuid)
timestamp=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
# JSON-escape the text (backslashes and double quotes).
escaped=$(printf '%s' "$text" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')
body=$(printf '{"subscription":{"id":"local-test","status":"enabled","type":"channel.chat.message","version":"1","condition":{"broadcaster_user_id":"%s","user_id":"0"},"transport":{"method":"conduit","conduit_id":"local"},"created_at":"%s","cost":0},"event":{"broadcaster_user_id":"%s","broadcaster_user_login":"streamer","broadcaster_user_name":"Streamer","chatter_user_id":"%s","chatter_user_login":"viewer%s","chatter_user_name":"Viewer","message_id":"%s","message":{"text":"%s","fragments":[{"type":"text","text":"%s","cheermote":null,"emote":null,"mention":null}]},"message_type":"text","badges":[],"cheer":null,"color":"","reply":null,"channel_points_custom_reward_id":null,"source_broadcaster_user_id":null,"source_broadcaster_user_login":null,"source_broadcaster_user_name":null,"source_message_id":null,"source_badges":null}}' \
  "$broadcaster" "$timestamp" "$broadcaster" "$chatter" "$chatter" "$id" "$escaped" "$escaped")
signature="sha256=$(printf '%s%s%s' "$id" "$timestamp" "$body" | openssl dgst -sha256 -hmac "$secret" | sed 's/^.*= //')"
curl -sS -o /dev/null -w '%{http_code}\n' -X POST "$url/webhooks/eventsub" \
  -H 'Content-Type: application/json' \
  -H "Twitch-Eventsub-Message-Id: $id" \
  -H 'Twitch-Eventsub-Message-Retry: 0' \
  -H 'Twitch-Eventsub-Message-Type: notification' \
  -H "Twitch-Eventsub-Message-Signature: $signature" \
  -H "Twitch-Eventsub-Message-Timestamp: $timestamp" \
  -H 'Twitch-Eventsub-Subscription-Type: channel.chat.message' \
  -H 'Twitch-Eventsub-Subscription-Version: 1' \
  --data-binary "$body"
